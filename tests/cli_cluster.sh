#!/usr/bin/env bash
# docs/cluster.md's recipe run on one machine: the Slurm array script (scripts/cluster/shard.sbatch)
# for tasks 1..3 of 3 against a stand-in server, then merge.sbatch; the merged vectors, lists and
# cache give what the unsharded commands give. Then shard 2 lost and rerun alone as the docs say
# (--array=2 with SHARDS=3), the Kubernetes Indexed Job's pod script (k8s-jobs.yaml, indexes 0..2)
# and merge script, and the scripts shown in docs/cluster.md equal the files. Usage: $0 VLM4REC
set -euo pipefail
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
fixtures=$repo/../shared/fixtures
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" && ln -s "$bin" "$tmp/bin/vlm4rec"
export PATH="$tmp/bin:$PATH" VLM4REC_LOG=warn
fail() { echo "FAIL: $*"; exit 1; }
same() { cmp -s "$1" "$2" || fail "$1 and $2 differ"; }

vlm4rec dataset synth -o "$tmp/data" --users 40 --items 50 --interactions 200 --images >/dev/null
vlm4rec standin --port 0 --port-file "$tmp/port" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port")
export DATA=$tmp/data WORK=$tmp/work VLM_URL=http://127.0.0.1:$port/v1 VLM_MODEL=standin-vlm
export TEXT_MODEL=$fixtures/models/bert-tiny IMAGE_MODEL=$fixtures/models/clip-vision-tiny-224

# the unsharded commands, for comparison
vlm4rec ground --dataset "$DATA" --endpoint "$VLM_URL" --model "$VLM_MODEL" --cache "$tmp/whole.db" -q
vlm4rec encode --model "$TEXT_MODEL" --offline --dataset "$DATA" --input "$tmp/whole.db" \
  --cache-model "$VLM_MODEL" -o "$tmp/text.npy" -q
vlm4rec embed-images --model "$IMAGE_MODEL" --offline --dataset "$DATA" -o "$tmp/clip.npy" -q

check_merged() {
  same "$DATA/features/text.npy" "$tmp/text.npy"
  same "$DATA/features/text.covered.txt" "$tmp/text.covered.txt"
  same "$DATA/features/clip.npy" "$tmp/clip.npy"
  same "$DATA/features/clip.covered.txt" "$tmp/clip.covered.txt"
  same "$DATA/features/clip.failures.tsv" "$tmp/clip.failures.tsv"
  vlm4rec cache export "$WORK/semantic-cache.sqlite" -o "$tmp/merged.jsonl" >/dev/null
  [ "$(wc -l < "$tmp/merged.jsonl")" = 50 ] || fail "the merged cache lacks descriptions"
  vlm4rec encode --model "$TEXT_MODEL" --offline --dataset "$DATA" --input "$WORK/semantic-cache.sqlite" \
    --cache-model "$VLM_MODEL" -o "$tmp/text-of-merged-cache.npy" -q
  same "$tmp/text-of-merged-cache.npy" "$tmp/text.npy"
}

# Slurm: the array's tasks, then the merge
for i in 1 2 3; do
  SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=3 bash "$repo/scripts/cluster/shard.sbatch"
done
SHARDS=3 bash "$repo/scripts/cluster/merge.sbatch" >/dev/null
check_merged

# shard 2 lost: the merge names it; rerun alone (sbatch --array=2 sets the task count to 1)
rm "$WORK/text-2.npy"
out=$(SHARDS=3 bash "$repo/scripts/cluster/merge.sbatch" 2>&1) && fail "merge without shard 2 succeeded"
grep -q "text-2.npy" <<<"$out" || fail "the merge did not name the lost part: $out"
SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_COUNT=1 SHARDS=3 bash "$repo/scripts/cluster/shard.sbatch"
SHARDS=3 bash "$repo/scripts/cluster/merge.sbatch" >/dev/null
check_merged

# Kubernetes: the pod script of the Indexed Job for indexes 0..2, then the merge Job's script
pod_script() { # the block scalar of the container command in a manifest
  awk '/^            - \|$/ {on=1; next} on && /^          [a-z]/ {on=0} on {sub(/^              /, ""); print}' "$1"
}
pod_script "$repo/scripts/cluster/k8s-jobs.yaml" > "$tmp/pod.sh"
pod_script "$repo/scripts/cluster/k8s-merge.yaml" > "$tmp/merge.sh"
grep -q 'JOB_COMPLETION_INDEX + 1' "$tmp/pod.sh" || fail "no pod script found in k8s-jobs.yaml"
rm -rf "$WORK" "$DATA/features/text"* "$DATA/features/clip"*
for index in 0 1 2; do JOB_COMPLETION_INDEX=$index SHARDS=3 bash "$tmp/pod.sh"; done
SHARDS=3 bash "$tmp/merge.sh" >/dev/null
check_merged

# the scripts docs/cluster.md shows are the files
for f in shard.sbatch merge.sbatch k8s-jobs.yaml k8s-merge.yaml; do
  awk -v f="$f" '$0 == "<!-- scripts/cluster/" f " -->" {on=1; getline; next} on && /^```$/ {exit} on' \
    "$repo/docs/cluster.md" > "$tmp/shown"
  same "$tmp/shown" "$repo/scripts/cluster/$f"
done
echo "ok: the cluster recipe's merged vectors, lists and cache equal the unsharded run's"
