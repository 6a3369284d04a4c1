#!/usr/bin/env bash
# make bench, part live: items added to a running service. Serves the description vectors of the
# dataset (default: the synthetic catalog at the method's shape, 38,493 x 384; --ivf when
# BENCH_LIVE_IVF=1), then (1) unloaded: for each of N rounds adds a twin item and then an item with
# the same random vector, and asks the twin's similar list at once: the time of the POST's answer,
# of the similar answer, and whether the added item was in the first answer after its POST; (2)
# the same rounds while wrk drives POST /v1/recommend at BENCH_LIVE_RATE (500) requests/s, with
# the p99 of that load beside the p99 of the same load without writes.
# Usage: bench/live.sh PATH/TO/vlm4rec DATASET_DIR OUT_DIR
set -euo pipefail
bin=$(readlink -f "$1"); ds=$2; out=$3
here=$(cd "$(dirname "$0")" && pwd)
threads=${BENCH_THREADS:-$(nproc)}
rate=${BENCH_LIVE_RATE:-500}
seconds=${BENCH_LIVE_SECONDS:-15}
rounds=${BENCH_LIVE_ROUNDS:-50}
export VLM4REC_LOG=warn OMP_NUM_THREADS=$threads
dir=$out/live
mkdir -p "$dir"
rm -f "$dir/items.idx" "$dir/items.idx.log"
cut -f1 "$ds/users.tsv" | tail -n +2 > "$dir/users.txt"
ivf=(); [ "${BENCH_LIVE_IVF:-0}" = 1 ] && ivf=(--ivf)
"$bin" index build --dataset "$ds" --vectors "$ds/features/description.npy" -o "$dir/items.idx" -q "${ivf[@]}"

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  server_pid=""
}
trap stop_server EXIT
rm -f "$dir/port"
"$bin" serve --index "$dir/items.idx" --port 0 --port-file "$dir/port" --threads "$threads" 2> "$dir/server.log" &
server_pid=$!
for _ in $(seq 1 300); do [ -s "$dir/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$dir/port")"
items=$(curl -sf "$url/healthz" | sed 's/.*"items":\([0-9]*\).*/\1/')
dim=$(curl -sf "$url/healthz" | sed 's/.*"dim":\([0-9]*\).*/\1/')

# rounds TAG N: prints "post_ms similar_ms found" per round
rounds() {
  for i in $(seq 1 "$2"); do
    vec=$(awk -v d="$dim" -v s="$RANDOM$i" 'BEGIN{srand(s); printf "["; for(k=0;k<d;k++) printf "%s%.6f", (k?",":""), rand()-0.5; printf "]"}')
    curl -sf "$url/v1/items" -H 'Content-Type: application/json' -d "{\"item\":\"twin-$1-$i\",\"vector\":$vec}" > /dev/null
    post=$(curl -s -o /dev/null -w '%{time_total}' "$url/v1/items" -H 'Content-Type: application/json' \
           -d "{\"item\":\"new-$1-$i\",\"vector\":$vec}")
    sim=$(curl -s -w ' %{time_total}' "$url/v1/items/twin-$1-$i/similar?k=1")
    found=0; [[ "$sim" == *"\"new-$1-$i\""* ]] && found=1
    echo "$post ${sim##* } $found"
  done
}

summary() { # summary FILE: median and max of the POST and similar times (ms), share found at once
  local n p50 pmax s50 smax found
  n=$(wc -l < "$1")
  p50=$(awk '{print $1*1000}' "$1" | sort -g | sed -n "$(( (n + 1) / 2 ))p"); pmax=$(awk '{print $1*1000}' "$1" | sort -g | tail -1)
  s50=$(awk '{print $2*1000}' "$1" | sort -g | sed -n "$(( (n + 1) / 2 ))p"); smax=$(awk '{print $2*1000}' "$1" | sort -g | tail -1)
  found=$(awk '{f+=$3} END {printf "%.3f", f/NR}' "$1")
  echo "{\"rounds\":$n,\"post_ms_p50\":$p50,\"post_ms_max\":$pmax,\"similar_ms_p50\":$s50,\"similar_ms_max\":$smax,\"found_first_query\":$found}"
}

load() { # load: one paced wrk run of POST /v1/recommend, its BENCH json
  wrk -t1 -c32 -d "${seconds}s" --timeout 2s -s "$here/wrk_recommend.lua" "$url" -- "$dir/users.txt" "$rate" 32 1 10 |
    sed -n 's/^BENCH //p'
}

rounds idle "$rounds" > "$dir/idle.txt"
idle=$(summary "$dir/idle.txt")
if ! command -v wrk > /dev/null; then
  echo "# live additions: $items items x $dim, ${ivf[*]:-exact}, $threads threads (no wrk: unloaded only)" | tee "$out/live.md"
  echo "unloaded rounds: $idle" | tee -a "$out/live.md"
  exit 0
fi
base=$(load)
load > "$dir/loaded.wrk" &
wrk_pid=$!
sleep 2
rounds loaded "$rounds" > "$dir/loaded.txt"
wait "$wrk_pid"
loaded=$(summary "$dir/loaded.txt")
{
  echo "# live additions: $(date -u +%Y-%m-%dT%H:%MZ), $items items x $dim, ${ivf[*]:-exact}, $threads threads"
  echo
  echo "unloaded rounds: $idle"
  echo "wrk at $rate/s without writes: $base"
  echo "rounds during wrk at $rate/s: $loaded"
  echo "wrk at $rate/s with those writes: $(cat "$dir/loaded.wrk")"
  echo "log: $(stat -c %s "$dir/items.idx.log") bytes, $(curl -sf "$url/metrics" | grep '^vlm4rec_live_items')"
} | tee "$out/live.md"
