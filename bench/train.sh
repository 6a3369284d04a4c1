#!/usr/bin/env bash
# make bench, part 3: one training epoch of attention fusion and of SMORE at the method's data shape,
# `vlm4rec train` against the same model in PyTorch (bench/train_torch.py) on the same data and
# threads, with peak memory. Usage: bench/train.sh PATH/TO/vlm4rec DATASET_DIR OUT_DIR
set -euo pipefail
bin=$(readlink -f "$1"); ds=$2; out=$3
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3   # Debian's python3-torch
threads=${BENCH_THREADS:-$(nproc)}
export VLM4REC_LOG=warn OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
text=$ds/features/description.npy
vision=$ds/features/visual.npy

report="$out/train.md"
{
  echo "# vlm4rec train vs PyTorch $($py -c 'import torch; print(torch.__version__)'): one epoch, $(date -u +%Y-%m-%dT%H:%MZ), $threads threads"
  echo
  echo "| model | steps | vlm4rec epoch s | PyTorch epoch s | speed-up | vlm4rec CPU s | PyTorch CPU s | vlm4rec setup s | PyTorch setup s | vlm4rec peak MiB | PyTorch peak MiB | epoch loss vlm4rec / PyTorch |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$report"
for model in attention smore; do
  /usr/bin/time -f "%e %M" -o "$out/train-c.time" "$bin" train "$model" -q --dataset "$ds" --text "$text" \
    --vision "$vision" -o "$out/train-$model.npy" --epochs 1 --no-recall --threads "$threads"
  read -r _ c_kb < "$out/train-c.time"
  /usr/bin/time -f "%e %M" -o "$out/train-t.time" $py "$here/train_torch.py" "$model" --dataset "$ds" \
    --text "$text" --vision "$vision" --threads "$threads" > "$out/train-torch-$model.json"
  read -r _ t_kb < "$out/train-t.time"
  $py - "$out/train-$model.log.json" "$out/train-torch-$model.json" "$c_kb" "$t_kb" "$model" >> "$report" <<'PY'
import json, sys
c, t = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
c_kb, t_kb, model = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
e = c["epochs"][0]
if e["steps"] != t["steps"]:
    sys.exit(f"bench: {model}: {e['steps']} steps in vlm4rec, {t['steps']} in PyTorch")
print(f"| {model} | {e['steps']} | {e['seconds']:.1f} | {t['epoch_s']:.1f} | {t['epoch_s'] / e['seconds']:.2f}x "
      f"| {e['cpu_seconds']:.1f} | {t['epoch_cpu_s']:.1f} | {c['timing']['setup_s']:.1f} | {t['setup_s']:.1f} | {c_kb / 1024:.0f} | {t_kb / 1024:.0f} "
      f"| {e['train_loss']:.4f} / {t['loss']:.4f} |")
PY
done
{
  echo
  echo "The dataset's description (384-d) and visual (768-d) vectors; default hyperparameters (attention:"
  echo "hidden and output 512, batch 256 + 256 sampled negatives, clip 1.0; SMORE: 64-d, batch 2048, kNN 10,"
  echo "2 layers, full-graph forward every step). Epoch s: the training steps only (sampling, forward,"
  echo "backward, clipping, Adam), from \`vlm4rec train\`'s log and from bench/train_torch.py's timer; CPU s: the"
  echo "CPU time of all the process's threads over the same steps (steadier than wall time on a shared machine); setup:"
  echo "pairs, graphs (SMORE's cosine kNN over all items) and the validation set. Peak: the whole process"
  echo "(/usr/bin/time), loading and validation included. Both sides on OpenBLAS with the same thread count."
} >> "$report"
cat "$report"
