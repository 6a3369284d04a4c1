#!/usr/bin/env bash
# make bench, part 5: the recommendation service at the method's catalog size (38,493 items, 384-d
# description vectors), loaded with wrk on loopback: latency p50/p99 at fixed request rates and the
# peak rate, per storage type and with micro-batching off; against FAISS exact inner-product search
# of the same vectors (bench/faiss_search.py) in the same run.
# Usage: bench/serve.sh PATH/TO/vlm4rec DATASET_DIR OUT_DIR
set -euo pipefail
bin=$(readlink -f "$1"); ds=$2; out=$3
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3   # Debian's python3-faiss
threads=${BENCH_THREADS:-$(nproc)}
duration=${BENCH_SERVE_SECONDS:-15}
rates=${BENCH_SERVE_RATES:-"250 500 1000 2000"}
export VLM4REC_LOG=warn OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
vec=$ds/features/description.npy
mkdir -p "$out/serve"
cut -f1 "$ds/users.tsv" | tail -n +2 > "$out/serve/users.txt"

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  server_pid=""
}
trap stop_server EXIT

start_server() { # start_server INDEX [serve options]: leaves the URL in $url
  rm -f "$out/serve/port"
  "$bin" serve --index "$1" --port 0 --port-file "$out/serve/port" --threads "$threads" "${@:2}" \
    2> "$out/serve/server.log" &
  server_pid=$!
  for _ in $(seq 1 300); do [ -s "$out/serve/port" ] && break; sleep 0.1; done
  [ -s "$out/serve/port" ] || { cat "$out/serve/server.log" >&2; echo "bench: the server did not start" >&2; exit 1; }
  url="http://127.0.0.1:$(cat "$out/serve/port")"
  curl -sf "$url/healthz" > /dev/null
}

load() { # load RATE CONNECTIONS: one wrk run (rate 0 = as fast as it goes), prints its BENCH json
  wrk -t1 -c "$2" -d "${duration}s" --timeout 2s -s "$here/wrk_recommend.lua" "$url" -- \
    "$out/serve/users.txt" "$1" "$2" 1 10 | sed -n 's/^BENCH //p'
}

row() { # row LABEL RATE JSON
  $py - "$@" <<'PY'
import json, sys
label, rate, r = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
errors = r["errors_status"] + r["errors_connect"] + r["errors_read"] + r["errors_write"] + r["errors_timeout"]
print(f"| {label} | {rate} | {r['rate']:.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['requests']} | {errors} |")
PY
}

report="$out/serve.md"
{
  echo "# vlm4rec serve under wrk: $(date -u +%Y-%m-%dT%H:%MZ), $threads search threads, ${duration} s a run"
  echo
  echo "| index / setting | target rate/s | achieved rate/s | p50 ms | p90 ms | p99 ms | requests | errors |"
  echo "|---|---|---|---|---|---|---|---|"
} > "$report"

for dtype in float32 float16 int8; do
  idx="$out/serve/items-$dtype.idx"
  "$bin" index build --dataset "$ds" --vectors "$vec" --dtype "$dtype" -o "$idx" > "$out/serve/build-$dtype.txt"
  start_server "$idx"
  load 200 16 > /dev/null   # warm-up: page the index in
  for rate in $rates; do
    row "$dtype" "$rate" "$(load "$rate" 32)" >> "$report"
  done
  row "$dtype" "peak" "$(load 0 64)" >> "$report"
  stop_server
done
start_server "$out/serve/items-float32.idx" --max-batch 1
row "float32, --max-batch 1 (no micro-batching)" "peak" "$(load 0 64)" >> "$report"
stop_server

$py "$here/faiss_search.py" --vectors "$vec" --threads "$threads" > "$out/serve/faiss.json"
"$here/index.sh" "$bin" "$out/serve/index" 2 "$threads" > "$out/serve/index.jsonl"
$py - "$out/serve/faiss.json" "$out/serve/index.jsonl" "$out"/serve/build-*.txt >> "$report" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))
print()
print(f"FAISS {f['faiss']} IndexFlatIP over the same {f['items']} x {f['dim']} vectors, in process, one request at a")
print("time (profile of 10 history vectors, search k + 10, history dropped):")
print()
print("| FAISS threads | p50 ms | p99 ms | requests/s |")
print("|---|---|---|---|")
for key in sorted(k for k in f if k.startswith("t") and k[1:].isdigit()):
    t = f[key]
    print(f"| {key[1:]} | {t['p50_ms']:.2f} | {t['p99_ms']:.2f} | {t['requests_per_s']:.0f} |")
print()
print(f"FAISS batched (all queries in one search call): {f['batched_queries_per_s']:.0f} queries/s.")
print()
print("vlm4rec's search in process (bench/index.sh: v4r_index_search on one thread and split over the")
print("threads, random unit vectors of the same shape; OpenBLAS: the scores alone as one sgemm/sgemv on one thread):")
print()
rows = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
batches = sorted({r["nq"] for r in rows})
print("| search | " + " | ".join(f"batch {b} queries/s" for b in batches) + " | batch 1 ms/query |")
print("|---|" + "---|" * (len(batches) + 1))
for what, dtype in sorted({(r["what"], r["dtype"]) for r in rows}):
    qps = {r["nq"]: r["queries_per_s"] for r in rows if r["what"] == what and r["dtype"] == dtype}
    one = f"{1e3 / qps[1]:.2f}" if 1 in qps else ""
    print(f"| {what} {dtype} | " + " | ".join(f"{qps[b]:.0f}" if b in qps else "" for b in batches) + f" | {one} |")
print()
print("Index builds (`vlm4rec index build`):")
print()
for path in sys.argv[3:]:
    print("    " + open(path).read().strip().replace("\n", "\n    "))
PY
{
  echo
  echo "wrk 1 thread on loopback, POST /v1/recommend {\"user\": U, \"k\": 10} for users drawn at random;"
  echo "fixed rates paced by exponential gaps over 32 connections (achieved rate shown), peak unpaced over 64."
  echo "Latency is wrk's: request written to response read, HTTP and JSON included. Targets: p99 under"
  echo "5 ms at 500 requests/s, peak above 2,000 requests/s. The load generator shares the machine's cores."
} >> "$report"
cat "$report"
