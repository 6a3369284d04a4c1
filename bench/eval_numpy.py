#!/usr/bin/python3
"""The comparison side of `make bench`: the same evaluation protocol as `vlm4rec eval` in numpy.

Default protocol: history = train (last L=10 by timestamp, ties by file order), truth = valid,
every train item masked, candidates = all items, top-K by (score desc, item index asc), metrics
Recall/NDCG/Hit/Precision/MAP at 5, 10, 20 averaged over users with a history and a truth.

  --mode vectorized   batched: one float32 matrix product per batch of users, argpartition,
                      vectorized metrics (what a careful researcher writes)
  --mode loop         the method's published evaluation: per user one cosine call over the
                      catalog and a full sort; timed on --sample users and extrapolated
Prints one JSON object: metric means, users, seconds.
"""
import argparse
import json
import sys
import time

import numpy as np

KS = (5, 10, 20)


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [line.rstrip("\n").split("\t") for line in f]
    return header, rows


def load(dataset):
    _, items = read_tsv(f"{dataset}/items.tsv")
    _, users = read_tsv(f"{dataset}/users.tsv")
    item_index = {r[0]: i for i, r in enumerate(items)}
    user_index = {r[0]: u for u, r in enumerate(users)}
    n_users = len(users)

    def split(name):
        _, rows = read_tsv(f"{dataset}/{name}.tsv")
        u = np.fromiter((user_index[r[0]] for r in rows), np.int64, len(rows))
        i = np.fromiter((item_index[r[1]] for r in rows), np.int64, len(rows))
        t = np.fromiter((int(r[2]) if len(r) > 2 and r[2] else np.iinfo(np.int64).min for r in rows),
                        np.int64, len(rows))
        return u, i, t

    tu, ti, tt = split("train")
    vu, vi, _ = split("valid")
    order = np.lexsort((np.arange(len(tu)), tt, tu))  # user, then time, then file order
    tu, ti = tu[order], ti[order]
    starts = np.searchsorted(tu, np.arange(n_users + 1))
    hist = [ti[starts[u]:starts[u + 1]] for u in range(n_users)]
    vorder = np.argsort(vu, kind="stable")
    vu, vi = vu[vorder], vi[vorder]
    vstarts = np.searchsorted(vu, np.arange(n_users + 1))
    truth = [np.unique(vi[vstarts[u]:vstarts[u + 1]]) for u in range(n_users)]
    return len(items), hist, truth


def normalize(e):
    n = np.linalg.norm(e, axis=1, keepdims=True)
    return e / n


def profiles(E, hist, users, L):
    idx = np.zeros((len(users), L), np.int64)
    w = np.zeros((len(users), L), np.float32)
    for r, u in enumerate(users):
        h = hist[u][-L:]
        idx[r, :len(h)] = h
        w[r, :len(h)] = 1
    P = np.einsum("bl,bld->bd", w, E[idx])
    return P / np.linalg.norm(P, axis=1, keepdims=True)


def metrics_from_hits(hits, n_truth):
    """hits: (users, Kmax) bool; returns dict of per-user arrays."""
    out = {}
    disc = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    cum = np.cumsum(hits, axis=1)
    for k in KS:
        h = hits[:, :k]
        nh = h.sum(1)
        ideal = np.minimum(n_truth, k)
        idcg = np.cumsum(disc)[ideal - 1]
        prec_at = cum[:, :k] / np.arange(1, k + 1)
        out[f"recall@{k}"] = nh / n_truth
        out[f"ndcg@{k}"] = (h * disc[:k]).sum(1) / idcg
        out[f"hit@{k}"] = (nh > 0).astype(np.float64)
        out[f"precision@{k}"] = nh / k
        out[f"map@{k}"] = (prec_at * h).sum(1) / ideal
    return out


def topk_exact(S, K):
    part = np.argpartition(-S, K - 1, axis=1)[:, :K]
    vals = np.take_along_axis(S, part, 1)
    order = np.lexsort((part, -vals), axis=1)  # score desc, then item index asc
    return np.take_along_axis(part, order, 1)


def vectorized(E, hist, truth, users, L, batch):
    kmax = max(KS)
    n_items = E.shape[0]
    sums = {}
    for b0 in range(0, len(users), batch):
        bu = users[b0:b0 + batch]
        P = profiles(E, hist, bu, L)
        S = P @ E.T
        rows = np.concatenate([np.full(len(hist[u]), r) for r, u in enumerate(bu)])
        cols = np.concatenate([hist[u] for u in bu])
        S[rows, cols] = -np.inf
        top = topk_exact(S, kmax)
        tr_rows = np.concatenate([np.full(len(truth[u]), r) for r, u in enumerate(bu)])
        tr_keys = np.sort(tr_rows * n_items + np.concatenate([truth[u] for u in bu]))
        keys = np.arange(len(bu))[:, None] * n_items + top
        pos = np.minimum(np.searchsorted(tr_keys, keys), len(tr_keys) - 1)
        hits = tr_keys[pos] == keys
        n_truth = np.array([len(truth[u]) for u in bu])
        for name, v in metrics_from_hits(hits, n_truth).items():
            sums[name] = sums.get(name, 0.0) + float(v.sum())
    return {k: v / len(users) for k, v in sums.items()}


def loop(E_raw, hist, truth, users, L):
    """Per user: cosine against the raw catalog, a full argsort, drop history, take the top."""
    kmax = max(KS)
    En = normalize(E_raw)
    rows = []
    for u in users:
        p = En[hist[u][-L:]].mean(0)
        sims = (E_raw @ p) / (np.linalg.norm(E_raw, axis=1) * np.linalg.norm(p))  # cosine_similarity
        order = np.argsort(-sims, kind="stable")
        order = order[~np.isin(order, hist[u])][:kmax]
        rows.append(np.isin(order, truth[u]))
    n_truth = np.array([len(truth[u]) for u in users])
    return {k: float(v.mean()) for k, v in metrics_from_hits(np.array(rows), n_truth).items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--vectors", required=True)
    ap.add_argument("--mode", choices=("vectorized", "loop"), default="vectorized")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--sample", type=int, default=500)
    ap.add_argument("--history-length", type=int, default=10)
    a = ap.parse_args()
    t0 = time.perf_counter()
    n_items, hist, truth = load(a.dataset)
    E_raw = np.load(a.vectors).astype(np.float32, copy=False)
    assert E_raw.shape[0] == n_items
    users = [u for u in range(len(hist)) if len(hist[u]) and len(truth[u])]
    if a.mode == "vectorized":
        res = vectorized(normalize(E_raw), hist, truth, users, a.history_length, a.batch)
        evaluated = len(users)
    else:
        users = users[:a.sample]
        t1 = time.perf_counter()
        res = loop(E_raw, hist, truth, users, a.history_length)
        evaluated = len(users)
        res["loop_seconds"] = time.perf_counter() - t1
    res["users"] = evaluated
    res["seconds"] = time.perf_counter() - t0
    json.dump(res, sys.stdout)
    print()


if __name__ == "__main__":
    main()
