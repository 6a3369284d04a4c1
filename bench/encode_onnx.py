#!/usr/bin/env python3
"""The ONNX Runtime side of `make bench` for the encoder: the model exported to ONNX, run by ORT.

Usage: python bench/encode_onnx.py --model DIR --tokens TOKENS.jsonl --onnx FILE.onnx --threads N [--out V.npy]

Exports (once: skipped when FILE.onnx exists) transformers' BertModel of DIR (a Hugging Face BERT
directory, weights computed in float32) followed by mean pooling over the attention mask and L2
normalization, with torch.onnx.export (dynamic batch and sequence axes). Then runs it with ONNX
Runtime (graph optimizations ORT_ENABLE_ALL, intra_op_num_threads = --threads, one inter-op thread,
sequential execution) on the token ids of TOKENS.jsonl (the output of `vlm4rec tokenize`) in
batches of --batch-size sorted by length, padded to each batch's longest. Prints one JSON object:
seconds (session creation + forward; export and tokenizing excluded), sentences per second,
sentences, tokens, threads, the onnxruntime version; --out writes the vectors in input order.
Needs torch, transformers, onnx, onnxscript, onnxruntime (bench/pyenv_bench.sh installs them).
"""
import argparse
import json
import os
import sys
import time

import numpy as np


def export(model_dir, path):
    import torch
    from transformers import BertModel

    class Pooled(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            x = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    bert = BertModel.from_pretrained(model_dir, dtype=torch.float32, add_pooling_layer=False,
                                     attn_implementation="eager").eval()
    ids = torch.ones(2, 8, dtype=torch.long)
    mask = torch.ones(2, 8, dtype=torch.long)
    tmp = path + ".tmp"
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "vector": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(Pooled(bert), (ids, mask), tmp, input_names=["input_ids", "attention_mask"],
                          output_names=["vector"], dynamic_axes=axes, opset_version=17, dynamo=False)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out")
    a = ap.parse_args()
    if not os.path.exists(a.onnx):
        export(a.model, a.onnx)
    import onnxruntime as ort

    seqs = [json.loads(line)["ids"] for line in open(a.tokens)]
    t0 = time.perf_counter()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(a.onnx, so, providers=["CPUExecutionProvider"])
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = None
    for b in range(0, len(order), a.batch_size):
        idx = order[b:b + a.batch_size]
        T = max(len(seqs[i]) for i in idx)
        ids = np.zeros((len(idx), T), np.int64)
        mask = np.zeros((len(idx), T), np.int64)
        for r, i in enumerate(idx):
            ids[r, :len(seqs[i])] = seqs[i]
            mask[r, :len(seqs[i])] = 1
        v = sess.run(["vector"], {"input_ids": ids, "attention_mask": mask})[0]
        if out is None:
            out = np.empty((len(seqs), v.shape[1]), np.float32)
        out[idx] = v
    secs = time.perf_counter() - t0
    if a.out:
        np.save(a.out, out)
    json.dump({"seconds": secs, "sentences_per_s": len(seqs) / secs, "sentences": len(seqs),
               "tokens": sum(len(s) for s in seqs), "threads": a.threads, "onnxruntime": ort.__version__},
              sys.stdout)
    print()


if __name__ == "__main__":
    main()
