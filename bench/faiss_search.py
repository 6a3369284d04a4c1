"""bench/serve.sh's yardstick: exact inner-product search of the same vectors with FAISS (IndexFlatIP,
Debian's python3-faiss), one request at a time the way a service answers it: the profile (normalized
mean of 10 history vectors), one search for k + 10 neighbours, history items dropped, top k kept.
Prints one JSON object: per-request latency percentiles at 1 and THREADS threads, and batched throughput."""
import argparse
import json
import time

import faiss
import numpy as np


def one_request(index, vecs, history, k):
    q = vecs[history].mean(axis=0)
    q /= np.linalg.norm(q)
    _, ids = index.search(q[None, :], k + len(history))
    seen = set(history.tolist())
    return [i for i in ids[0].tolist() if i not in seen][:k]


def latencies(index, vecs, histories, k):
    out = np.empty(len(histories))
    for j, h in enumerate(histories):
        t0 = time.perf_counter()
        one_request(index, vecs, h, k)
        out[j] = time.perf_counter() - t0
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", required=True)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-k", type=int, default=10)
    a = ap.parse_args()
    vecs = np.ascontiguousarray(np.load(a.vectors).astype(np.float32))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    rng = np.random.default_rng(0)
    histories = rng.integers(0, len(vecs), size=(a.queries, 10))
    res = {"items": int(vecs.shape[0]), "dim": int(vecs.shape[1]), "faiss": faiss.__version__, "k": a.k}
    for threads in sorted({1, a.threads}):
        faiss.omp_set_num_threads(threads)
        latencies(index, vecs, histories[:200], a.k)  # warm-up
        lat = latencies(index, vecs, histories, a.k)
        res[f"t{threads}"] = {
            "p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3),
            "requests_per_s": float(len(lat) / lat.sum()),
        }
    faiss.omp_set_num_threads(a.threads)
    q = vecs[histories].mean(axis=1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    t0 = time.perf_counter()
    index.search(q, a.k + 10)
    res["batched_queries_per_s"] = float(len(q) / (time.perf_counter() - t0))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
