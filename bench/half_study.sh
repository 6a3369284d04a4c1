#!/usr/bin/env bash
# make bench, parts bf16 and fp16: what `[encoder] precision = PREC` (bf16 or fp16) does to the demo
# study's Table 1.
# Runs `vlm4rec run` on the embedded demo config (`vlm4rec run --print-default`, configs/demo.conf)
# with the real all-MiniLM-L6-v2 from the model cache as [encoder] model (fallback = none, pull = no:
# the TF-IDF fallback cannot stand in for it), each run into its own run directory:
#   fp32    [encoder] precision = fp32
#   PREC    [encoder] precision = PREC
#   seedS   precision = fp32, every [fusion] trained with seed S (`--seed S` in its options; the
#           fusions' default is 0), for each S of BENCH_HALF_SEEDS: the training noise
# PREC and seedS start from a copy of fp32's run directory, so the pipeline reruns only what their
# change touches: PREC encodes every text again (the precision is in the step's settings and in
# encode's row keys; the script checks that no row was reused and that the vectors differ), then
# trains and evaluates; seedS trains and evaluates. Then it prints, per Table 1 row
# (representation) and protocol, the largest absolute difference over the Table 1 metrics
# (recall@5/10/20, ndcg@10/20, hit@10) of PREC from fp32 and of the seed runs from fp32 (the
# largest over the seeds), and a verdict, and writes the same to OUT_DIR/PREC.md. It exits 1 when a
# representation without training (text only, vision, concat, average: any spec without
# `fusion:`) moves by more than 0.002 under PREC: that part precision alone decides. A trained
# fusion above 0.002 is set beside the seed change: within it, it is at the level of training noise.
# Usage: bench/half_study.sh PATH/TO/vlm4rec OUT_DIR   (run directories under OUT_DIR/PREC/)
#   BENCH_PRECISION     PREC: bf16 (default) or fp16
#   BENCH_HALF_THREADS  OMP_NUM_THREADS of the runs (default 1, which leaves the other core of a
#                       2-core machine alone; raise it where cores are free: the numbers stay the same)
#   BENCH_HALF_MODEL    the encoder (default sentence-transformers/all-MiniLM-L6-v2, resolved from
#                       the model cache without the network; or a model directory)
#   BENCH_HALF_SEEDS    the training seeds of the seed runs (default "1 2 3", about 15 s each; one
#                       seed's change alone understates the training noise)
#   VLM4REC_BF16, VLM4REC_FP16  the engine, as for encode (docs/text.md); `none` skips the study
# Needs the built binary, the model in the model cache (`vlm4rec pull
# sentence-transformers/all-MiniLM-L6-v2`), python3 (json only) and a CPU with the instructions
# (bf16: AVX512_BF16 or AMX-BF16; fp16: AVX512_FP16): without them, PREC runs fp32, and the script
# says so and skips.
set -euo pipefail
bin=$(readlink -f "${1:?usage: bench/half_study.sh PATH/TO/vlm4rec OUT_DIR}")
out=${2:?usage: bench/half_study.sh PATH/TO/vlm4rec OUT_DIR}
threads=${BENCH_HALF_THREADS:-1}
seeds=${BENCH_HALF_SEEDS:-1 2 3}
model=${BENCH_HALF_MODEL:-sentence-transformers/all-MiniLM-L6-v2}
prec=${BENCH_PRECISION:-bf16}
case "$prec" in bf16|fp16) ;; *) echo "bench: BENCH_PRECISION must be bf16 or fp16, not '$prec'" >&2; exit 1 ;; esac
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads VLM4REC_LOG=warn
for s in $seeds; do
  [[ "$s" =~ ^[0-9]+$ ]] || { echo "bench $prec: BENCH_HALF_SEEDS: '$s' is not a seed (0, 1, ...)" >&2; exit 1; }
done
[ -n "${seeds// }" ] || { echo "bench $prec: BENCH_HALF_SEEDS is empty" >&2; exit 1; }
mkdir -p "$out"
report="$out/$prec.md"

skip() { # skip REASON: the study cannot show anything here
  echo "# $prec vs fp32 on the demo study: skipped: $1" | tee "$report.tmp"
  mv "$report.tmp" "$report"
  exit 0
}
if [ "$prec" = bf16 ]; then
  flags=$(grep -m1 '^flags' /proc/cpuinfo | grep -ow 'avx512_bf16\|amx_bf16' | sort | tr '\n' ' ' || true)
  [ -n "$flags" ] || skip "this CPU has neither AVX512_BF16 nor AMX-BF16, so --precision bf16 runs fp32"
else
  flags=$(grep -m1 '^flags' /proc/cpuinfo | grep -ow 'avx512_fp16' || true)
  [ -n "$flags" ] || skip "this CPU has no AVX512_FP16, so --precision fp16 runs fp32"
fi
engine_var=VLM4REC_${prec^^}
[ "${!engine_var:-auto}" != none ] || skip "$engine_var=none makes --precision $prec run fp32"

if [ -d "$model" ]; then model_dir=$(readlink -f "$model")
elif ! model_dir=$("$bin" pull --offline -q "$model" 2> "$out/$prec-pull.log"); then
  cat "$out/$prec-pull.log" >&2
  echo "bench $prec: $model is not in the model cache; run \`vlm4rec pull $model\` with network access first" >&2
  exit 1
fi

work=$out/$prec
rm -rf "$work"   # results of an earlier binary must not pass for up to date
mkdir -p "$work"
"$bin" run --print-default > "$work/default.conf"

# write_conf PRECISION SEED > CONF: the default config with this encoder and precision, and, when
# SEED is not empty, every fusion trained with that seed
write_conf() {
  python3 - "$work/default.conf" "$model_dir" "$1" "$2" <<'PY'
import re, sys
conf, model, precision, seed = sys.argv[1:5]
ENCODER = {"model": model, "fallback": "none", "pull": "no", "precision": precision}
def key(line):
    s = line.strip()
    return None if s.startswith(("#", ";")) or "=" not in s else s.split("=", 1)[0].strip()
def with_seed(options):
    if re.search(r"--seed[ =]\S+", options):
        return re.sub(r"--seed[ =]\S+", f"--seed {seed}", options)
    return f"{options} --seed {seed}".strip()
out, kind, fusions, seeded = [], None, 0, 0
def close_section():   # a fusion without an options line gets one
    global seeded
    if kind == "fusion" and seed and seeded < fusions:
        out.append(f"options = --seed {seed}")
        seeded = fusions
for line in open(conf).read().splitlines():
    s = line.strip()
    if s.startswith("["):
        close_section()
        kind = s[1:-1].split()[0]
        out.append(line)
        if kind == "encoder":
            out.extend(f"{k} = {v}" for k, v in ENCODER.items())
        fusions += kind == "fusion"
        continue
    if kind == "encoder" and key(line) in ENCODER:
        continue
    if kind == "fusion" and seed and key(line) == "options":
        line, seeded = f"options = {with_seed(s.split('=', 1)[1].strip())}", fusions
    out.append(line)
close_section()
if seed and not fusions:
    sys.exit("bench: the default config has no [fusion] section to change the seed of")
print("\n".join(out))
PY
}

# run_study NAME: vlm4rec run of NAME.conf into the run directory NAME, from inside it, so every
# step's arguments (and with them its settings hash) are the same in each run directory
run_study() {
  local t0 t1
  echo "bench $prec: run $1 (OMP_NUM_THREADS=$threads)" >&2
  t0=$(date +%s.%N)
  if ! (cd "$work/$1" && "$bin" run "../$1.conf" -o .) > "$work/$1.log" 2>&1; then
    cat "$work/$1.log" >&2
    echo "bench $prec: vlm4rec run failed for $1 (log above, $work/$1.log)" >&2
    exit 1
  fi
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f\n", b - a}' > "$work/$1.seconds"
}

write_conf fp32 "" > "$work/fp32.conf"
write_conf "$prec" "" > "$work/$prec.conf"
mkdir "$work/fp32"
run_study fp32
cp -a "$work/fp32" "$work/$prec"
run_study "$prec"
if grep -q "falling back to fp32" "$work/$prec.log"; then
  skip "encode says this CPU runs $prec as fp32 ($work/$prec.log)"
fi
for s in $seeds; do
  write_conf fp32 "$s" > "$work/seed$s.conf"
  cp -a "$work/fp32" "$work/seed$s"
  run_study "seed$s"
done

status=0   # 2: the verdict failed (the table is whole); else a check failed (a message, no table)
python3 - "$work" "$seeds" "$threads" "$prec" "$engine_var=${!engine_var:-auto}" "$flags" "$model_dir" > "$report.tmp" <<'PY' || status=$?
import filecmp, glob, json, os, re, sys
from datetime import datetime, timezone
work, seeds, threads, prec, engine, flags, model_dir = sys.argv[1:8]
seeds = seeds.split()
GATE = 0.002
TABLE1 = ["recall@5", "recall@10", "recall@20", "ndcg@10", "ndcg@20", "hit@10"]

def fail(msg):
    sys.exit(f"bench {prec}: {msg}")

specs, section = {}, None     # [model NAME] spec of the fp32 config: trained when it names a fusion
for line in open(os.path.join(work, "fp32.conf")):
    s = line.strip()
    if s.startswith("["):
        m = re.match(r"\[model (.+)\]$", s)
        section = m.group(1) if m else None
    elif section and s.split("=", 1)[0].strip() == "spec":
        specs[section] = s.split("=", 1)[1].strip()
trained = lambda name: "fusion:" in specs.get(name, "")

def load(run, proto):
    r = json.load(open(os.path.join(work, run, "results", proto + ".json")))
    return r, {m["name"]: m for m in r["models"]}

protocols = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(work, "fp32", "results", "*.json")))
if not protocols:
    fail("the fp32 run wrote no results/*.json")
runs = ["fp32", prec] + [f"seed{s}" for s in seeds]
results = {run: {p: load(run, p) for p in protocols} for run in runs}

# the encoder was the model, not the TF-IDF fallback, and the PREC run encoded every row anew
for run in results:
    for proto, (r, models) in results[run].items():
        for m in models.values():
            if "tfidf" in (m.get("encoder") or ""):
                fail(f"{run}/{proto}: {m['name']} was encoded by the TF-IDF fallback ({m['encoder']}); "
                     "precision is not exercised")
items = results[prec][protocols[0]][0].get("run", {}).get("items", {})
encodes = {k: v for k, v in items.items() if k.startswith("encode.")}
if not encodes:
    fail(f"the {prec} run encoded nothing (no encode step ran)")
for step, counts in encodes.items():
    if not re.search(r"\b0 reused\b", counts):
        fail(f"the {prec} run reused fp32 rows in {step}: {counts}")
    npy = os.path.join("vectors", step[len("encode."):] + ".npy")
    if filecmp.cmp(os.path.join(work, "fp32", npy), os.path.join(work, prec, npy), shallow=False):
        fail(f"{npy} is the same bytes in fp32 and {prec}: {prec} did not run")

def max_diff(run, proto, name):   # (largest |difference| from fp32, its metric)
    a, b = results[run][proto][1][name]["metrics"], results["fp32"][proto][1][name]["metrics"]
    return max((abs(a[k]["mean"] - b[k]["mean"]), k) for k in TABLE1 if k in b)

rows = []   # (name, trained, {proto: ((prec diff, metric), (largest seed diff, metric))})
for name in results["fp32"][protocols[0]][1]:
    rows.append((name, trained(name), {p: (max_diff(prec, p, name),
                                           max(max_diff(f"seed{s}", p, name) for s in seeds))
                                       for p in protocols}))

def reused(run):   # the steps this run found up to date
    log = open(os.path.join(work, run + ".log")).read()
    return ", ".join(re.findall(r"^\[\s*\d+/\d+\] (\S+)\s+up to date$", log, re.M)) or "nothing"
secs = {run: open(os.path.join(work, run + ".seconds")).read().strip() for run in runs}
seed_label = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {','.join(seeds)}"
when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
print(f"# {prec} vs fp32 on the demo study's Table 1: {when}, OMP_NUM_THREADS={threads}, "
      f"{engine}, CPU: {flags.strip()}")
print()
print(f"Largest absolute difference from the fp32 run over {', '.join(TABLE1)}: `{prec}` = "
      f"`[encoder] precision = {prec}`; `{seed_label}` = fp32 with every fusion trained with "
      f"`--seed S` instead of 0 (training noise{'; the largest over the seeds' if len(seeds) > 1 else ''}).")
print()
head = " | ".join(f"{p}: {prec} | {p}: {seed_label}" for p in protocols)
print(f"| representation | trained | {head} |")
print("|---|---|" + "---|---|" * len(protocols))
for name, tr, d in rows:
    cells = " | ".join(f"{d[p][0][0]:.4f} | {d[p][1][0]:.4f}" for p in protocols)
    print(f"| {name} | {'yes' if tr else 'no'} | {cells} |")
print()
for p in protocols:
    r = results["fp32"][p][0]
    n = r["users"]["evaluated"]
    print(f"- {p}: {r.get('label', p)}; {n} users evaluated (one user's hit moves a hit metric by {1 / n:.4f})")
print(f"- wall s: fp32 {secs['fp32']}, {prec} {secs[prec]} (up to date from fp32: {reused(prec)}), "
      + ", ".join(f"seed{s} {secs[f'seed{s}']}" for s in seeds) + f" (up to date: {reused(runs[-1])})")
print(f"- encoder: {model_dir}; run directories: {work}/{{{','.join(runs)}}}")
print()
pairs = [(name, tr, p, *d[p]) for name, tr, d in rows for p in protocols]
untrained = [x for x in pairs if not x[1]]
print(f"Verdict: {sum(1 for x in pairs if x[3][0] <= GATE)} of {len(pairs)} row/protocol pairs within "
      f"{GATE} of fp32 under {prec} ({sum(1 for x in untrained if x[3][0] <= GATE)} of the "
      f"{len(untrained)} untrained ones); above it:")
bad = []
for name, tr, p, (b, bk), (s, sk) in pairs:
    if b <= GATE:
        continue
    if not tr:
        bad.append(f"{name} ({p})")
        print(f"- {name} ({p}): {prec} {b:.4f} ({bk}), untrained: FAIL")
    else:
        noise = "within the seed change (training noise)" if b <= s else "ABOVE the seed change"
        print(f"- {name} ({p}): {prec} {b:.4f} ({bk}), {seed_label} {s:.4f} ({sk}): {noise}")
if bad:
    print(f"\nFAIL: untrained rows moved by more than {GATE} under {prec}: {', '.join(bad)}")
    sys.exit(2)
PY
if [ "$status" != 0 ] && [ "$status" != 2 ]; then rm -f "$report.tmp"; exit 1; fi
cat "$report.tmp"
mv "$report.tmp" "$report"
[ "$status" = 0 ]
