#!/usr/bin/env bash
# make bench, part 2: sentences per second of `vlm4rec encode` against the same BERT in PyTorch,
# at 1 and 2 threads, on a description-like corpus (~100 tokens a text) from the synthetic catalog.
# Usage: bench/encode.sh PATH/TO/vlm4rec DATASET_DIR OUT_DIR
set -euo pipefail
bin=$(readlink -f "$1"); ds=$2; out=$3
here=$(cd "$(dirname "$0")" && pwd)
model=${BENCH_MODEL:-$here/../../shared/fixtures/models/minilm-l6-shape}
py=/usr/bin/python3
export VLM4REC_LOG=warn
[ -d "$model" ] || { echo "bench: no model at $model (set BENCH_MODEL)" >&2; exit 1; }

# descriptions of the catalog joined until a text has about 75 words (~100 word pieces), the length
# of a detailed LVLM answer
$py - "$ds/descriptions.tsv" "$out/corpus.jsonl" <<'PY'
import json, random, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
rng = random.Random(7)
with open(sys.argv[2], "w") as f:
    for i in range(2000):
        parts = []
        while sum(len(p.split()) for p in parts) < 75:
            parts.append(rng.choice(rows)[1])
        f.write(json.dumps({"item": f"text{i}", "text": " ".join(parts)}) + "\n")
PY
cc -O2 -march=x86-64-v3 -fopenmp "$here/peak_flops.c" -o "$out/peak_flops"
"$bin" tokenize --model "$model" --input "$out/corpus.jsonl" > "$out/tokens.jsonl"

report="$out/encode.md"
{
  echo "# vlm4rec encode vs PyTorch $($py -c 'import torch; print(torch.__version__)'): $(basename "$model"), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "| threads | vlm4rec sentences/s | PyTorch sentences/s | ratio | vlm4rec GFLOP/s | share of peak | vlm4rec peak MiB | PyTorch peak MiB | max abs diff |"
  echo "|---|---|---|---|---|---|---|---|---|"
} > "$report"
for t in 1 2; do
  OMP_NUM_THREADS=$t /usr/bin/time -f "%e %M" -o "$out/enc.time" \
    "$bin" encode -q --model "$model" --input "$out/corpus.jsonl" -o "$out/c.npy" --threads "$t"
  read -r c_s c_kb < "$out/enc.time"
  OMP_NUM_THREADS=$t /usr/bin/time -f "%e %M" -o "$out/torch.time" \
    $py "$here/encode_torch.py" --model "$model" --tokens "$out/tokens.jsonl" --threads "$t" --out "$out/t.npy" \
    > "$out/torch-$t.json"
  read -r _ t_kb < "$out/torch.time"
  peak=$(OMP_NUM_THREADS=$t "$out/peak_flops")
  # a busy machine can make the measured peak of t threads fall short of t x one thread's: take the larger
  [ "$t" = 1 ] && peak1=$peak
  peak=$(awk -v p="$peak" -v p1="${peak1:-0}" -v t="$t" 'BEGIN { print (p > t * p1) ? p : t * p1 }')
  $py - "$model" "$out" "$t" "$c_s" "$c_kb" "$t_kb" "$peak" >> "$report" <<'PY'
import json, sys
import numpy as np
model, out, t, c_s, c_kb, t_kb = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
cfg = json.load(open(f"{model}/config.json"))
D, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
lens = [len(json.loads(l)["ids"]) for l in open(f"{out}/tokens.jsonl")]
flops = sum(L * (2 * n * (4 * D * D + 2 * D * I) + 4 * n * n * D) for n in lens)
peak = float(sys.argv[7]) * 1e9  # measured by bench/peak_flops.c on as many threads
torch_r = json.load(open(f"{out}/torch-{t}.json"))
diff = float(np.abs(np.load(f"{out}/c.npy") - np.load(f"{out}/t.npy")).max())
c_rate = len(lens) / c_s
print(f"| {t} | {c_rate:.0f} | {torch_r['sentences_per_s']:.0f} | {c_rate / torch_r['sentences_per_s']:.2f}x "
      f"| {flops / c_s / 1e9:.0f} | {100 * flops / c_s / peak:.0f}% | {c_kb / 1024:.0f} | {t_kb / 1024:.0f} | {diff:.1e} |")
if diff > 1e-4:
    sys.exit("bench: vlm4rec and PyTorch vectors differ by more than 1e-4")
PY
done
mean=$($py -c "import json,sys; l=[len(json.loads(x)['ids']) for x in open('$out/tokens.jsonl')]; print(f'{sum(l)/len(l):.0f}')")
{
  echo
  echo "2000 texts, mean $mean tokens. vlm4rec: the whole \`vlm4rec encode\` command (model load, tokenizing,"
  echo "forward, writing the .npy). PyTorch: bench/encode_torch.py, model load and forward from the same token"
  echo "ids (tokenizing not counted), batches of 32 sorted by length, torch.set_num_threads. GFLOP/s counts"
  echo "the linear layers and attention products; peak: bench/peak_flops.c, independent AVX-512 FMA chains"
  echo "on the same number of threads, measured just before."
} >> "$report"
cat "$report"
