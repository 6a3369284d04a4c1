"""What the reference (sentence-transformers) gives for an empty and a blank text.

Writes tests/data/bert-tiny.empty.npy: float32, one row per text of TEXTS below, as
SentenceTransformer(MODEL).encode(TEXTS) returns them; `vlm4rec encode --empty reference` must
give the same rows (test_encode_cli). Run from the repository root:

    /path/to/venv/bin/python tests/reference/empty_text.py ../shared/fixtures/models/bert-tiny

(the venv of scripts/pyenv.sh: sentence-transformers, numpy).
"""
import sys

import numpy as np
from sentence_transformers import SentenceTransformer

TEXTS = ["", "   ", " \t\n "]  # empty, spaces, mixed blanks: each tokenizes to [CLS] [SEP]


def main():
    model = SentenceTransformer(sys.argv[1], device="cpu")
    vectors = model.encode(TEXTS, batch_size=len(TEXTS), convert_to_numpy=True).astype(np.float32)
    tokens = [model.tokenizer(t)["input_ids"] for t in TEXTS]
    print("token ids:", tokens)
    print("rows equal:", all(np.array_equal(vectors[0], v) for v in vectors))
    np.save("tests/data/bert-tiny.empty.npy", vectors)
    print("wrote tests/data/bert-tiny.empty.npy", vectors.shape, "norm", np.linalg.norm(vectors, axis=1))


if __name__ == "__main__":
    main()
