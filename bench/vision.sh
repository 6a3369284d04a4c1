#!/usr/bin/env bash
# make bench, part 3: images per second of the CLIP vision encoder at the ViT-B/32 shape (random
# weights) against the same forward pass in PyTorch on the same preprocessed inputs, at 1 and 2
# threads; decoding and preprocessing timed apart from the model; `vlm4rec embed-images` end to end.
# Usage: bench/vision.sh PATH/TO/vlm4rec OUT_DIR   (BENCH_VISION_IMAGES=N images, default 64)
set -euo pipefail
bin=$(readlink -f "$1"); out=$2
here=$(cd "$(dirname "$0")" && pwd)
build=$(dirname "$bin")
images=$(readlink -f "$here/../../shared/fixtures/images")
n=${BENCH_VISION_IMAGES:-64}; batch=16
py=/usr/bin/python3
export VLM4REC_LOG=warn
mkdir -p "$out"
[ -f "$build/libv4r.a" ] || { echo "bench: no $build/libv4r.a (build first)" >&2; exit 1; }

model="$out/clip-vit-b32-random"
[ -f "$model/model.safetensors" ] || $py "$here/vision_torch.py" make "$model"
libs=$(pkg-config --libs openblas jansson libutf8proc libcurl libcrypto libmicrohttpd libpng libjpeg libwebp sqlite3)
cc -O2 -march=x86-64-v3 -fopenmp -I"$here/../include" "$here/vision_bench.c" "$build/libv4r.a" $libs -lm \
  -o "$out/vision_bench"
[ -x "$out/peak_flops" ] || cc -O2 -march=x86-64-v3 -fopenmp "$here/peak_flops.c" -o "$out/peak_flops"

# n images cycling over the 12 decodable fixtures (JPEG/PNG, 97x61 to 1000x150 to 800x600), as a
# list for the bench program and as a dataset for embed-images
ds="$out/vision-ds"
mkdir -p "$ds"
names=$(cd "$images" && ls | grep -v -e corrupt -e not_an_image | sort)
: > "$out/vision-list.txt"
printf 'item\ttitle\timage\n' > "$ds/items.tsv"
i=0
while [ $i -lt "$n" ]; do
  for f in $names; do
    [ $i -lt "$n" ] || break
    echo "$images/$f" >> "$out/vision-list.txt"
    printf 'img%d\t\t%s\n' $i "$images/$f" >> "$ds/items.tsv"
    i=$((i + 1))
  done
done
printf 'user\nu\n' > "$ds/users.tsv"
printf 'user\titem\ttimestamp\nu\timg0\t1\n' > "$ds/train.tsv"
printf 'user\titem\ttimestamp\n' > "$ds/valid.tsv"
printf 'user\titem\ttimestamp\n' > "$ds/test.tsv"

report="$out/vision.md"
{
  echo "# vlm4rec vision encoder vs PyTorch $($py -c 'import torch; print(torch.__version__)'): ViT-B/32 shape, $n images, batch $batch, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "| threads | decode + preprocess images/s | vlm4rec model images/s | PyTorch model images/s | ratio | vlm4rec GFLOP/s | share of peak | embed-images end to end images/s | max abs diff |"
  echo "|---|---|---|---|---|---|---|---|---|"
} > "$report"
for t in 1 2; do
  OMP_NUM_THREADS=$t "$out/vision_bench" "$model" "$out/vision-list.txt" "$out" $batch > "$out/vision-c-$t.json"
  OMP_NUM_THREADS=$t $py "$here/vision_torch.py" run --model "$model" --pixels "$out/pixels.npy" --threads $t \
    --batch $batch --out "$out/embeds-torch.npy" > "$out/vision-t-$t.json"
  OMP_NUM_THREADS=$t /usr/bin/time -f "%e" -o "$out/embed.time" \
    "$bin" embed-images -q --model "$model" --dataset "$ds" -o "$out/vision.npy" --threads $t --batch-size $batch
  peak=$(OMP_NUM_THREADS=$t "$out/peak_flops")
  # a busy machine can make the measured peak of t threads fall short of t x one thread's: take the larger
  [ "$t" = 1 ] && peak1=$peak
  peak=$(awk -v p="$peak" -v p1="${peak1:-0}" -v t="$t" 'BEGIN { print (p > t * p1) ? p : t * p1 }')
  $py - "$model" "$out" "$t" "$(cat "$out/embed.time")" "$peak" >> "$report" <<'PY'
import json, sys
import numpy as np
model, out, t, e2e_s, peak = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
cfg = json.load(open(f"{model}/config.json"))
D, I, L, P, S = (cfg[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "patch_size", "image_size"))
T = 1 + (S // P) ** 2
flops = L * (2 * T * (4 * D * D + 2 * D * I) + 4 * T * T * D) + 2 * (T - 1) * 3 * P * P * D + 2 * D * cfg["projection_dim"]
c = json.load(open(f"{out}/vision-c-{t}.json"))
tr = json.load(open(f"{out}/vision-t-{t}.json"))
a, b = np.load(f"{out}/embeds-vlm4rec.npy"), np.load(f"{out}/embeds-torch.npy")
e2e = np.load(f"{out}/vision.npy")
diff = float(np.abs(a - b).max())
rate = c["model_per_s"]
print(f"| {t} | {c['prep_per_s']:.0f} | {rate:.1f} | {tr['model_per_s']:.1f} | {rate / tr['model_per_s']:.2f}x "
      f"| {flops * rate / 1e9:.0f} | {100 * flops * rate / (peak * 1e9):.0f}% | {len(e2e) / e2e_s:.1f} | {diff:.1e} |")
if diff > 1e-4 * max(1.0, float(np.abs(b).max())) or not np.array_equal(e2e, a):
    sys.exit("bench: vlm4rec and PyTorch (or embed-images and the bench program) disagree")
PY
done
{
  echo
  echo "Random weights at the shape of openai/clip-vit-base-patch32 (224 px, patch 32, hidden 768, 12 layers,"
  echo "12 heads, MLP 3072, projection 512, quick_gelu; $(( 1 + (224 / 32) ** 2 )) tokens), written by bench/vision_torch.py make."
  echo "Images: the 12 decodable fixture images (97x61 to 1000x150, JPEG and PNG) in turn. Decode +"
  echo "preprocess: bench/vision_bench.c, reading, decoding, resizing, cropping and normalizing every image,"
  echo "images in parallel. Model: the forward pass alone over the preprocessed images in batches of $batch,"
  echo "the better of two passes after one warm-up batch, vlm4rec (bench/vision_bench.c, v4r_vision_forward) and PyTorch"
  echo "(bench/vision_torch.py: transformers' CLIPVisionModelWithProjection forward, eager attention,"
  echo "torch.set_num_threads) on the same pixel values. End to end: the whole \`vlm4rec embed-images\` command"
  echo "(model load, decode, preprocess, forward, checkpoint, outputs). GFLOP/s counts the linear layers, the"
  echo "patch embedding and the attention products; peak: bench/peak_flops.c on as many threads."
} >> "$report"
cat "$report"
