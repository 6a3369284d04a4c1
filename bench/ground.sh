#!/usr/bin/env bash
# make bench, grounding: `vlm4rec ground` against the stand-in server with a fixed service time and a
# concurrency cap; items per second as a share of the server's capacity (cap / service time) and the
# client's CPU cost per request. Usage: bench/ground.sh PATH/TO/vlm4rec OUT_DIR
set -euo pipefail
bin=$(readlink -f "${1:?usage: bench/ground.sh PATH/TO/vlm4rec OUT_DIR}")
out=${2:-build/bench}
mkdir -p "$out"
export VLM4REC_LOG=warn
work="$out/ground"
rm -rf "$work"
mkdir -p "$work"
items=${BENCH_GROUND_ITEMS:-2000}
latency=0.2
"$bin" dataset synth -o "$work/data" --users 1000 --items "$items" --interactions 5000 --images > /dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done; }
trap cleanup EXIT

standin() { # standin NAME CAP: starts a stand-in, prints its URL
  "$bin" standin --port 0 --port-file "$work/$1.port" --latency "$latency" --cap "$2" > /dev/null 2> "$work/$1.log" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$work/$1.port" ] && break; sleep 0.05; done
  echo "http://127.0.0.1:$(cat "$work/$1.port")/v1"
}

report="$out/ground.md"
{
  echo "# vlm4rec ground vs the stand-in's capacity: $(date -u +%Y-%m-%dT%H:%MZ), $items items (64x64 PNG)"
  echo
  echo "| setup | capacity items/s | reached items/s | share | client CPU ms/request | wall s |"
  echo "|---|---|---|---|---|---|"
} > "$report"

run() { # run LABEL CAPACITY ARGS...
  local label=$1 capacity=$2
  shift 2
  rm -f "$work/cache.sqlite"*
  "$bin" ground --dataset "$work/data" --cache "$work/cache.sqlite" --model standin "$@" > "$work/run.txt"
  # "ground: N requests (R retries) in S s (X items/s); client CPU C ms per request"
  python3 - "$work/run.txt" "$capacity" "$label" >> "$report" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"in ([0-9.]+) s \(([0-9.]+) items/s\); client CPU ([0-9.]+) ms per request", text)
done = re.search(r"ground: (\d+) described, (\d+) failed", text)
secs, rate, cpu = map(float, m.groups())
cap = float(sys.argv[2])
print(f"| {sys.argv[3]} | {cap:.0f} | {rate:.1f} | {100 * rate / cap:.1f}% | {cpu:.3f} | {secs:.2f} |")
if int(done.group(2)) or 100 * rate / cap < 95:
    print(f"bench: {sys.argv[3]}: {rate:.1f} items/s is under 95% of {cap:.0f}", file=sys.stderr)
PY
}

one=$(standin one 16)
run "1 endpoint, cap 16, 200 ms" 80 --endpoint "$one" --concurrency 16
a=$(standin a 8)
b=$(standin b 8)
run "2 endpoints, cap 8 each, 200 ms" 80 --endpoint "$a" --endpoint "$b" --concurrency 8
{
  echo
  echo "Capacity: the stand-in serves at most CAP requests at once, each held for 200 ms (so CAP / 0.2"
  echo "items per second); the client runs with --concurrency equal to the cap. Reached: items finished"
  echo "divided by the whole run's wall time (start-up and the last requests included). Client CPU: user +"
  echo "system time of the vlm4rec process divided by its requests (reading, hashing, checking and"
  echo "base64-encoding each image, the JSON, HTTP, and the SQLite cache)."
} >> "$report"
cat "$report"
