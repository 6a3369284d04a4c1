#!/usr/bin/env bash
# The serving index's search speed on one thread: queries per second of v4r_index_search at
# 38,493 x 384 (random unit vectors) for float32, float16 and int8 and batches of 1, 8, 32, 64,
# beside single-threaded OpenBLAS products over the same rows (bench/index_bench.c).
# Usage: bench/index.sh PATH/TO/vlm4rec OUT_DIR [SECONDS_PER_CASE [THREADS]]   (prints JSON lines;
# THREADS > 1 adds the scan split over 2..THREADS threads)
set -euo pipefail
bin=$(readlink -f "$1"); out=$2; secs=${3:-2}; threads=${4:-1}
here=$(cd "$(dirname "$0")" && pwd)
build=$(dirname "$bin")
mkdir -p "$out"
[ -f "$build/libv4r.a" ] || { echo "bench: no $build/libv4r.a (build first)" >&2; exit 1; }
libs=$(pkg-config --libs openblas jansson libutf8proc libcurl libcrypto libmicrohttpd libpng libjpeg libwebp sqlite3 fftw3f)
cc -O2 -march=x86-64-v3 -fopenmp -I"$here/../include" "$here/index_bench.c" "$build/libv4r.a" $libs -lm \
  -o "$out/index_bench"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 VLM4REC_LOG=warn "$out/index_bench" "$out" "$secs" "$threads"
