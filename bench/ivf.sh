#!/usr/bin/env bash
# The IVF index at catalog scale against FAISS IndexIVFFlat, in one run, on the same threads:
# bench/ivf_bench.c builds a synthetic catalog with planted clusters (N x DIM, default 1,000,000 x
# 384) into an index with --ivf defaults and measures Recall@10 against the exact scan and queries
# per second of both over an nprobe ladder; bench/ivf_faiss.py runs FAISS at the same nlist, k-means
# sample and iterations over the same ladder. Prints JSON lines and a markdown table (OUT/ivf.md).
# Usage: bench/ivf.sh PATH/TO/vlm4rec OUT_DIR [N_ITEMS [DIM [N_QUERIES [THREADS]]]]
set -euo pipefail
bin=$(readlink -f "$1"); out=$2; n=${3:-1000000}; dim=${4:-384}; nq=${5:-1000}; threads=${6:-$(nproc)}
here=$(cd "$(dirname "$0")" && pwd)
build=$(dirname "$bin")
py=/usr/bin/python3   # Debian's python3-faiss
mkdir -p "$out/ivf"
[ -f "$build/libv4r.a" ] || { echo "bench: no $build/libv4r.a (build first)" >&2; exit 1; }
libs=$(pkg-config --libs openblas jansson libutf8proc libcurl libcrypto libmicrohttpd libpng libjpeg libwebp sqlite3 fftw3f)
cc -O2 -march=x86-64-v3 -fopenmp -I"$here/../include" "$here/ivf_bench.c" "$build/libv4r.a" $libs -lm \
  -o "$out/ivf_bench"
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads VLM4REC_LOG=warn
/usr/bin/time -f "%e %M" -o "$out/ivf/c.time" "$out/ivf_bench" "$out/ivf" "$n" "$dim" "$nq" "$threads" \
  | tee "$out/ivf/c.jsonl"
nlist=$($py -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1])][0]['nlist'])" "$out/ivf/c.jsonl")
/usr/bin/time -f "%e %M" -o "$out/ivf/f.time" $py "$here/ivf_faiss.py" "$out/ivf" "$nlist" "$threads" \
  | tee "$out/ivf/f.jsonl"
$py - "$out/ivf" "$threads" > "$out/ivf.md" <<'PY'
import json, sys
d, threads = sys.argv[1], sys.argv[2]
c = [json.loads(l) for l in open(f"{d}/c.jsonl")]
f = [json.loads(l) for l in open(f"{d}/f.jsonl")]
b, ex = c[0], c[1]
c_rss = int(open(f"{d}/c.time").read().split()[1]) / 1024
f_rss = int(open(f"{d}/f.time").read().split()[1]) / 1024
fb = f[0]
print(f"# IVF: {b['items']:,} x {b['dim']} ({b['clusters']:,} planted clusters), nlist {b['nlist']}, {threads} threads")
print()
print(f"vlm4rec build {b['build_s']} s (k-means and lists {b['ivf_s']} s), file {b['file_bytes'] / 2**20:.0f} MiB, "
      f"peak RSS {c_rss:.0f} MiB; default nprobe {b['nprobe']} (build check: recall {b['recall_check']}). "
      f"FAISS build (train + add) {fb['build_s']} s, peak RSS {f_rss:.0f} MiB. "
      f"Exact scan: {ex['qps']} queries/s (batches of 64).")
print()
print("| nprobe | vlm4rec Recall@10 | vlm4rec q/s (batch 64) | x exact | vlm4rec q/s (1 at a time) "
      "| FAISS Recall@10 | FAISS q/s (batch 64) | FAISS q/s (1 at a time) |")
print("|---|---|---|---|---|---|---|---|")
fi = {r["nprobe"]: r for r in f if r["part"] == "faiss_ivf"}
for r in c[2:]:
    g = fi.get(r["nprobe"], {})
    tag = " (default)" if r["default"] else ""
    print(f"| {r['nprobe']}{tag} | {r['recall']:.4f} | {r['qps']:.0f} | {r['speedup']:.1f}x | {r['qps_batch1']:.0f} "
          f"| {g.get('recall', '')} | {g.get('qps', '')} | {g.get('qps_batch1', '')} |")
PY
cat "$out/ivf.md"
