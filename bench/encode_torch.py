#!/usr/bin/python3
"""The comparison side of `make bench` for the encoder: the same BERT forward pass in PyTorch.

Reads a Hugging Face BERT directory (config.json, model.safetensors or shards with
model.safetensors.index.json; F32/F16/BF16 weights computed in float32), token ids as JSONL (the
output of `vlm4rec tokenize`), and runs embeddings -> encoder layers -> mean pooling -> L2 norm in
batches sorted by length, with torch.set_num_threads(--threads). Prints one JSON object: seconds
(model load + forward, tokenization excluded), sentences per second, tokens, and optionally
writes the vectors (--out) so the two sides can be checked against each other.
"""
import argparse
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] not in DTYPES:  # e.g. the I64 position_ids buffer
            continue
        a, b = meta["data_offsets"]
        raw = data[a:b]
        if meta["dtype"] == "BF16":
            u = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(raw, DTYPES[meta["dtype"]]).astype(np.float32)
        out[name.removeprefix("bert.")] = torch.from_numpy(arr.reshape(meta["shape"]).copy())
    return out


def load_model(d):
    cfg = json.load(open(f"{d}/config.json"))
    try:
        index = json.load(open(f"{d}/model.safetensors.index.json"))
        weights = {}
        for shard in sorted(set(index["weight_map"].values())):
            weights.update(read_safetensors(f"{d}/{shard}"))
    except FileNotFoundError:
        weights = read_safetensors(f"{d}/model.safetensors")
    return cfg, weights


def forward(cfg, w, ids, mask):
    B, T = ids.shape
    H = cfg["num_attention_heads"]
    D = cfg["hidden_size"]
    dh = D // H
    eps = cfg.get("layer_norm_eps", 1e-12)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:T] \
        + w["embeddings.token_type_embeddings.weight"][0]
    x = F.layer_norm(x, (D,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        def lin(name, t):
            return F.linear(t, w[p + name + ".weight"], w[p + name + ".bias"])
        q = lin("attention.self.query", x).view(B, T, H, dh).transpose(1, 2)
        k = lin("attention.self.key", x).view(B, T, H, dh).transpose(1, 2)
        v = lin("attention.self.value", x).view(B, T, H, dh).transpose(1, 2)
        s = q @ k.transpose(-1, -2) / math.sqrt(dh) + bias
        ctx = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = F.layer_norm(lin("attention.output.dense", ctx) + x, (D,), w[p + "attention.output.LayerNorm.weight"],
                         w[p + "attention.output.LayerNorm.bias"], eps)
        h = F.gelu(lin("intermediate.dense", x))
        x = F.layer_norm(lin("output.dense", h) + x, (D,), w[p + "output.LayerNorm.weight"],
                         w[p + "output.LayerNorm.bias"], eps)
    m = mask[..., None].float()
    pooled = (x * m).sum(1) / m.sum(1)
    return F.normalize(pooled, dim=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seqs = [json.loads(line)["ids"] for line in open(a.tokens)]
    t0 = time.perf_counter()
    cfg, w = load_model(a.model)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = torch.empty(len(seqs), cfg["hidden_size"])
    with torch.inference_mode():
        for b in range(0, len(order), a.batch_size):
            idx = order[b:b + a.batch_size]
            T = max(len(seqs[i]) for i in idx)
            ids = torch.zeros(len(idx), T, dtype=torch.long)
            mask = torch.zeros(len(idx), T, dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, :len(seqs[i])] = torch.tensor(seqs[i])
                mask[r, :len(seqs[i])] = 1
            out[idx] = forward(cfg, w, ids, mask)
    secs = time.perf_counter() - t0
    if a.out:
        np.save(a.out, out.numpy())
    tokens = sum(len(s) for s in seqs)
    json.dump({"seconds": secs, "sentences_per_s": len(seqs) / secs, "sentences": len(seqs), "tokens": tokens,
               "threads": a.threads, "torch": torch.__version__}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
