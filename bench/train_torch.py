#!/usr/bin/env python3
"""make bench, part 3 (comparison side): one training epoch of attention fusion or SMORE in PyTorch,
the same model, objective, batch composition and optimizer as `vlm4rec train`, on the same dataset
and vectors. Prints JSON: setup and epoch seconds (wall and CPU), steps, mean loss, peak memory."""
import argparse
import json
import resource
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_split(path, users, items):
    u, i = [], []
    with open(path) as f:
        next(f)
        for line in f:
            p = line.rstrip("\n").split("\t")
            u.append(users[p[0]])
            i.append(items[p[1]])
    return np.array(u, dtype=np.int64), np.array(i, dtype=np.int64)


def load(ds):
    with open(f"{ds}/items.tsv") as f:
        next(f)
        items = {line.split("\t", 1)[0].rstrip("\n"): k for k, line in enumerate(f)}
    with open(f"{ds}/users.tsv") as f:
        next(f)
        users = {line.rstrip("\n"): k for k, line in enumerate(f)}
    return users, items, read_split(f"{ds}/train.tsv", users, items)


# ---- attention fusion ----

class AttentionFusion(nn.Module):
    def __init__(self, dt, dv, hidden, dim):
        super().__init__()
        self.text_proj = nn.Linear(dt, hidden)
        self.vision_proj = nn.Linear(dv, hidden)
        self.attention = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        self.output = nn.Sequential(nn.Linear(hidden, dim), nn.LayerNorm(dim), nn.ReLU())

    def forward(self, t, v):
        pt, pv = self.text_proj(t), self.vision_proj(v)
        w = torch.softmax(self.attention(torch.cat([pt, pv], dim=1)), dim=1)
        return self.output(w[:, :1] * pt + w[:, 1:] * pv)


def infonce(anchors, cands, temperature):
    logits = F.normalize(anchors, dim=1) @ F.normalize(cands, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(anchors.shape[0]))


def attention_epoch(a, users, items, train):
    t0 = time.time()
    text = torch.from_numpy(np.load(a.text))
    vision = torch.from_numpy(np.load(a.vision))
    n_items = text.shape[0]
    tu, ti = train
    order = np.argsort(tu, kind="stable")
    tu, ti = tu[order], ti[order]
    counts = np.bincount(tu, minlength=len(users))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = counts[tu] >= 2  # anchors: training items of users with two or more
    ex_user, ex_pos = tu[keep], np.arange(len(tu))[keep]
    model = AttentionFusion(text.shape[1], vision.shape[1], a.hidden, a.dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    setup = time.time() - t0
    t1, c1 = time.time(), time.process_time()
    perm = rng.permutation(len(ex_user))
    ex_user, ex_pos = ex_user[perm], ex_pos[perm]
    steps, loss_sum = 0, 0.0
    for b0 in range(0, len(ex_user), a.batch):
        u, p = ex_user[b0:b0 + a.batch], ex_pos[b0:b0 + a.batch]
        n = len(u)
        k = rng.integers(0, counts[u] - 1)  # another position of the same user
        k = k + (starts[u] + k >= p)
        rows = np.concatenate([ti[p], ti[starts[u] + k], rng.integers(0, n_items, a.negatives)])
        idx = torch.from_numpy(rows)
        z = model(text[idx], vision[idx])
        loss = infonce(z[:n], z[n:], 0.07)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        steps += 1
        loss_sum += loss.item()
    return setup, time.time() - t1, time.process_time() - c1, steps, loss_sum / steps


# ---- SMORE ----

def knn_graph(x, k):
    x = F.normalize(x, dim=1)
    vals, cols = [], []
    for r0 in range(0, x.shape[0], 1024):
        v, c = torch.topk(x[r0:r0 + 1024] @ x.T, k, dim=1)
        vals.append(v)
        cols.append(c)
    v, c = torch.cat(vals), torch.cat(cols)
    rows = torch.arange(x.shape[0]).repeat_interleave(k)
    v, c = v.reshape(-1), c.reshape(-1)
    deg = torch.zeros(x.shape[0]).scatter_add_(0, rows, v)
    inv = deg.pow(-0.5)
    inv[torch.isinf(inv)] = 0
    v = inv[rows] * v * inv[c]
    return torch.sparse_coo_tensor(torch.stack([rows, c]), v, (x.shape[0], x.shape[0])).coalesce()


def max_fusion(a, b):
    idx = torch.cat([a.indices(), b.indices()], dim=1)
    idx, inv = torch.unique(idx, dim=1, return_inverse=True)
    va = torch.full((idx.shape[1],), float("-inf"))
    vb = torch.full((idx.shape[1],), float("-inf"))
    va[inv[:a.indices().shape[1]]] = a.values()
    vb[inv[a.indices().shape[1]:]] = b.values()
    return torch.sparse_coo_tensor(idx, torch.maximum(va, vb), a.shape).coalesce()


def ui_graph(tu, ti, n_users, n_items):
    pairs = np.unique(np.stack([tu, ti]), axis=1)
    du = np.bincount(pairs[0], minlength=n_users).astype(np.float32)
    di = np.bincount(pairs[1], minlength=n_items).astype(np.float32)
    w = 1.0 / np.sqrt(du[pairs[0]] * di[pairs[1]])
    r = torch.sparse_coo_tensor(torch.from_numpy(pairs), torch.from_numpy(w), (n_users, n_items)).coalesce()
    rows = np.concatenate([pairs[0], pairs[1] + n_users])
    cols = np.concatenate([pairs[1] + n_users, pairs[0]])
    adj = torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows, cols])), torch.from_numpy(np.concatenate([w, w])),
                                  (n_users + n_items,) * 2).coalesce()
    return adj, r


def gate(d):
    return nn.Sequential(nn.Linear(d, d), nn.Sigmoid())


def query(d):
    return nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d, bias=False))


class Smore(nn.Module):
    def __init__(self, n_users, n_items, text, vision, d):
        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        self.user_embedding = nn.Embedding(n_users, d)
        self.item_id_embedding = nn.Embedding(n_items, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        self.image_embedding = nn.Embedding.from_pretrained(vision, freeze=False)
        self.text_embedding = nn.Embedding.from_pretrained(text, freeze=False)
        self.image_trs, self.text_trs = nn.Linear(vision.shape[1], d), nn.Linear(text.shape[1], d)
        self.query_v, self.query_t = query(d), query(d)
        self.gate_v, self.gate_t, self.gate_f = gate(d), gate(d), gate(d)
        self.gate_image_prefer, self.gate_text_prefer, self.gate_fusion_prefer = gate(d), gate(d), gate(d)
        self.image_complex_weight = nn.Parameter(torch.randn(1, d // 2 + 1, 2))
        self.text_complex_weight = nn.Parameter(torch.randn(1, d // 2 + 1, 2))
        self.fusion_complex_weight = nn.Parameter(torch.randn(1, d // 2 + 1, 2))

    def forward(self, adj, r, image_adj, text_adj, fusion_adj, layers):
        d = self.item_id_embedding.weight.shape[1]
        image_fft = torch.fft.rfft(self.image_trs(self.image_embedding.weight), dim=1, norm="ortho")
        text_fft = torch.fft.rfft(self.text_trs(self.text_embedding.weight), dim=1, norm="ortho")
        wv = torch.view_as_complex(self.image_complex_weight)
        wt = torch.view_as_complex(self.text_complex_weight)
        wf = torch.view_as_complex(self.fusion_complex_weight)
        image_conv = torch.fft.irfft(image_fft * wv, n=d, dim=1, norm="ortho")
        text_conv = torch.fft.irfft(text_fft * wt, n=d, dim=1, norm="ortho")
        fusion_conv = torch.fft.irfft(text_fft * image_fft * wf, n=d, dim=1, norm="ortho")
        item = self.item_id_embedding.weight
        views = []
        for conv, g, graph in ((image_conv, self.gate_v, image_adj), (text_conv, self.gate_t, text_adj),
                               (fusion_conv, self.gate_f, fusion_adj)):
            it = torch.sparse.mm(graph, item * g(conv))
            views.append(torch.cat([torch.sparse.mm(r, it), it], dim=0))
        image, text, fusion = views
        ego = torch.cat([self.user_embedding.weight, item], dim=0)
        outs = [ego]
        for _ in range(layers):
            ego = torch.sparse.mm(adj, ego)
            outs.append(ego)
        content = torch.stack(outs, dim=1).mean(dim=1)
        agg_image = self.gate_image_prefer(content) * (torch.softmax(self.query_v(fusion), dim=-1) * image)
        agg_text = self.gate_text_prefer(content) * (torch.softmax(self.query_t(fusion), dim=-1) * text)
        side = torch.stack([agg_image, agg_text, self.gate_fusion_prefer(content) * fusion]).mean(dim=0)
        return content + side, side, content


def smore_epoch(a, users, items, train):
    t0 = time.time()
    text = torch.from_numpy(np.load(a.text))
    vision = torch.from_numpy(np.load(a.vision))
    nu, ni = len(users), len(items)
    tu, ti = train
    adj, r = ui_graph(tu, ti, nu, ni)
    image_adj, text_adj = knn_graph(vision, 10), knn_graph(text, 10)
    fusion_adj = max_fusion(image_adj, text_adj)
    model = Smore(nu, ni, text, vision, 64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen = [set() for _ in range(nu)]
    for u, i in zip(tu, ti):
        seen[u].add(i)
    pool = np.unique(ti)  # negatives come from the items of the training split
    rng = np.random.default_rng(0)
    setup = time.time() - t0
    t1, c1 = time.time(), time.process_time()
    perm = rng.permutation(len(tu))
    eu, ei = torch.from_numpy(tu[perm]), torch.from_numpy(ti[perm])
    steps, loss_sum, bs = 0, 0.0, 2048
    for b0 in range(0, len(eu), bs):
        u, p = eu[b0:b0 + bs], ei[b0:b0 + bs]
        neg = []
        for uu in u.tolist():  # one negative outside the user's training items
            while True:
                j = int(pool[rng.integers(len(pool))])
                if j not in seen[uu]:
                    neg.append(j)
                    break
        q = torch.tensor(neg)
        all_e, side, content = model(adj, r, image_adj, text_adj, fusion_adj, 2)
        ue, pe, ne = all_e[u], all_e[nu + p], all_e[nu + q]
        bpr = -F.logsigmoid((ue * pe).sum(1) - (ue * ne).sum(1)).mean()
        reg = 1e-5 * 0.5 * ((ue ** 2).sum() + (pe ** 2).sum() + (ne ** 2).sum()) / bs
        cl = infonce(side[nu + p], content[nu + p], 0.2) + infonce(side[u], content[u], 0.2)
        loss = bpr + reg + 0.01 * cl
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        loss_sum += loss.item()
    return setup, time.time() - t1, time.process_time() - c1, steps, loss_sum / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["attention", "smore"])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--vision", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--negatives", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--dim", type=int, default=512)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    users, items, train = load(a.dataset)
    run = attention_epoch if a.model == "attention" else smore_epoch
    setup, epoch, cpu, steps, loss = run(a, users, items, train)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"model": a.model, "setup_s": setup, "epoch_s": epoch, "epoch_cpu_s": cpu, "steps": steps, "loss": loss,
                      "peak_kb": peak, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
