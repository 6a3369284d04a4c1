"""bench/ivf.sh's yardstick: FAISS IndexIVFFlat (inner product, Debian's python3-faiss) on the items
and queries bench/ivf_bench.c wrote, at the same nlist, k-means sample (64 vectors per list) and
iterations (10), over the same nprobe ladder: Recall@10 against vlm4rec's exact lists, queries per
second in batches of 64 and one at a time, build (train + add) seconds and memory.
Usage: python3 bench/ivf_faiss.py DIR NLIST THREADS   (prints one JSON object a line)"""
import json
import resource
import sys
import time

import faiss
import numpy as np


def recall(got, exact):
    return float(np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got.tolist(), exact.tolist())]))


def main():
    d, nlist, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    faiss.omp_set_num_threads(threads)
    xb = np.load(f"{d}/items.npy")
    xq = np.load(f"{d}/queries.npy")
    exact = np.load(f"{d}/exact.npy").astype(np.int64)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    t0 = time.perf_counter()
    quantizer = faiss.IndexFlatIP(xb.shape[1])
    index = faiss.IndexIVFFlat(quantizer, xb.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    index.cp.max_points_per_centroid = 64
    index.cp.spherical = True
    index.train(xb)
    index.add(xb)
    build_s = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"part": "faiss_build", "nlist": nlist, "build_s": round(build_s, 1),
                      "peak_rss_mib": round(rss)}), flush=True)
    for nprobe in (1, 2, 4, 8, 16, 32, 64, 128):
        index.nprobe = nprobe
        t0 = time.perf_counter()
        ids = np.concatenate([index.search(xq[b:b + 64], 10)[1] for b in range(0, len(xq), 64)])
        qps = len(xq) / (time.perf_counter() - t0)
        n1 = min(len(xq), 200)
        t0 = time.perf_counter()
        for i in range(n1):
            index.search(xq[i:i + 1], 10)
        qps1 = n1 / (time.perf_counter() - t0)
        print(json.dumps({"part": "faiss_ivf", "nprobe": nprobe, "recall": round(recall(ids, exact), 4),
                          "qps": round(qps, 1), "qps_batch1": round(qps1, 1)}), flush=True)


if __name__ == "__main__":
    main()
