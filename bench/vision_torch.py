#!/usr/bin/python3
"""The comparison side of `make bench` for the vision encoder, and its model maker.

`vision_torch.py make DIR` writes a random-weight CLIP vision model at the ViT-B/32 shape (224 px,
patch 32, hidden 768, 12 layers, 12 heads, MLP 3072, projection 512, quick_gelu) as a Hugging Face
CLIPVisionModelWithProjection directory: config.json, preprocessor_config.json, model.safetensors.

`vision_torch.py run --model DIR --pixels P.npy --threads T --batch B --out E.npy` runs transformers'
CLIPVisionModelWithProjection forward (eager attention) written in PyTorch on preprocessed pixel
values (N x 3*S*S, channels first), with torch.set_num_threads(T), batch B: patch convolution, class
token and positions, pre-LayerNorm, pre-norm layers, post-LayerNorm of the class token, projection.
One warm-up batch, then the better of two timed passes. Prints one JSON object; writes image_embeds to --out.
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

SHAPE = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
             image_size=224, patch_size=32, projection_dim=512)


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name in sorted(tensors):
        a = tensors[name]
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in sorted(tensors):
            f.write(np.ascontiguousarray(tensors[name], dtype="<f4").tobytes())


def make(d):
    import os
    os.makedirs(d, exist_ok=True)
    c = SHAPE
    D, I, P, L = c["hidden_size"], c["intermediate_size"], c["patch_size"], c["num_hidden_layers"]
    T = 1 + (c["image_size"] // P) ** 2
    rng = np.random.default_rng(7)

    def normal(*shape, s=0.02):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    w = {"vision_model.embeddings.class_embedding": normal(D),
         "vision_model.embeddings.patch_embedding.weight": normal(D, 3, P, P),
         "vision_model.embeddings.position_embedding.weight": normal(T, D, s=0.01),
         "vision_model.pre_layrnorm.weight": 1 + normal(D, s=0.1), "vision_model.pre_layrnorm.bias": normal(D),
         "vision_model.post_layernorm.weight": 1 + normal(D, s=0.1), "vision_model.post_layernorm.bias": normal(D),
         "visual_projection.weight": normal(c["projection_dim"], D)}
    for i in range(L):
        p = f"vision_model.encoder.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w[p + f"self_attn.{n}.weight"] = normal(D, D)
            w[p + f"self_attn.{n}.bias"] = normal(D)
        w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"] = normal(I, D), normal(I)
        w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"] = normal(D, I), normal(D)
        for n in ("layer_norm1", "layer_norm2"):
            w[p + n + ".weight"], w[p + n + ".bias"] = 1 + normal(D, s=0.1), normal(D)
    write_safetensors(f"{d}/model.safetensors", w)
    cfg = dict(SHAPE, architectures=["CLIPVisionModelWithProjection"], model_type="clip_vision_model",
               hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3)
    json.dump(cfg, open(f"{d}/config.json", "w"), indent=2)
    pre = {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
           "do_normalize": True, "do_rescale": True, "do_resize": True,
           "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
           "image_processor_type": "CLIPImageProcessor", "resample": 3, "rescale_factor": 1 / 255,
           "size": {"shortest_edge": 224}}
    json.dump(pre, open(f"{d}/preprocessor_config.json", "w"), indent=2)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        arr = np.frombuffer(data[a:b], {"F32": np.float32, "F16": np.float16}[meta["dtype"]]).astype(np.float32)
        out[name] = torch.from_numpy(arr.reshape(meta["shape"]).copy())
    return out


def forward(cfg, w, px):
    B = px.shape[0]
    D, H, P = cfg["hidden_size"], cfg["num_attention_heads"], cfg["patch_size"]
    dh, eps = D // H, cfg.get("layer_norm_eps", 1e-5)
    x = F.conv2d(px, w["vision_model.embeddings.patch_embedding.weight"], stride=P).flatten(2).transpose(1, 2)
    cls = w["vision_model.embeddings.class_embedding"].expand(B, 1, D)
    x = torch.cat([cls, x], dim=1) + w["vision_model.embeddings.position_embedding.weight"]
    x = F.layer_norm(x, (D,), w["vision_model.pre_layrnorm.weight"], w["vision_model.pre_layrnorm.bias"], eps)
    T = x.shape[1]
    for i in range(cfg["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{i}."

        def lin(name, t):
            return F.linear(t, w[p + name + ".weight"], w[p + name + ".bias"])
        h = F.layer_norm(x, (D,), w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"], eps)
        q = lin("self_attn.q_proj", h).view(B, T, H, dh).transpose(1, 2)
        k = lin("self_attn.k_proj", h).view(B, T, H, dh).transpose(1, 2)
        v = lin("self_attn.v_proj", h).view(B, T, H, dh).transpose(1, 2)
        s = (q @ k.transpose(-1, -2)) * dh ** -0.5
        ctx = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + lin("self_attn.out_proj", ctx)
        h = F.layer_norm(x, (D,), w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"], eps)
        h = lin("mlp.fc1", h)
        h = h * torch.sigmoid(1.702 * h) if cfg.get("hidden_act", "quick_gelu") == "quick_gelu" else F.gelu(h)
        x = x + lin("mlp.fc2", h)
    pooled = F.layer_norm(x[:, 0], (D,), w["vision_model.post_layernorm.weight"],
                          w["vision_model.post_layernorm.bias"], eps)
    return F.linear(pooled, w["visual_projection.weight"])


def run(a):
    torch.set_num_threads(a.threads)
    cfg = json.load(open(f"{a.model}/config.json"))
    w = read_safetensors(f"{a.model}/model.safetensors")
    S = cfg["image_size"]
    px = torch.from_numpy(np.load(a.pixels)).reshape(-1, 3, S, S)
    n, out = px.shape[0], []
    with torch.inference_mode():
        forward(cfg, w, px[:a.batch])  # warm-up
        secs = math.inf
        for _ in range(2):  # the better of two passes
            out, t0 = [], time.perf_counter()
            for b in range(0, n, a.batch):
                out.append(forward(cfg, w, px[b:b + a.batch]))
            secs = min(secs, time.perf_counter() - t0)
    np.save(a.out, torch.cat(out).numpy())
    print(json.dumps({"images": n, "threads": torch.get_num_threads(), "model_s": secs, "model_per_s": n / secs,
                      "torch": torch.__version__}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("dir")
    r = sub.add_parser("run")
    r.add_argument("--model", required=True)
    r.add_argument("--pixels", required=True)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--out", required=True)
    a = ap.parse_args()
    make(a.dir) if a.cmd == "make" else run(a)


if __name__ == "__main__":
    sys.exit(main())
