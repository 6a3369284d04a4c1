#!/usr/bin/env bash
# The Python environment of the benchmark anchors: scripts/pyenv.sh's reference stack (torch,
# transformers, ...) plus bench/requirements.txt (ONNX Runtime, onnx, onnxscript), installed once
# into the same environment and stamped. Prints the python path on stdout.
# Usage: bench/pyenv_bench.sh   (V4R_VENV=DIR as for scripts/pyenv.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=$(bash "$here/../scripts/pyenv.sh")
venv=$(dirname "$(dirname "$py")")
stamp="$venv/.vlm4rec-bench-pins"
want=$(grep -v '^#' "$here/requirements.txt" | grep . | tr '\n' ' ')
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "vlm4rec: installing the benchmark anchors into $venv (PyPI, once)" >&2
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q --disable-pip-version-check $want >&2
  printf '%s' "$want" > "$stamp"
fi
echo "$py"
