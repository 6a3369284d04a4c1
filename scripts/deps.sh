#!/usr/bin/env bash
# Installs the Debian packages a make target needs, when missing. Usage: scripts/deps.sh build|test|bench
set -euo pipefail
build_pkgs=(gcc make cmake ninja-build pkg-config libopenblas-openmp-dev libjansson-dev libcmocka-dev libutf8proc-dev libcurl4-openssl-dev libssl-dev libmicrohttpd-dev libpng-dev libjpeg62-turbo-dev libwebp-dev libsqlite3-dev libfftw3-dev libzip-dev)
test_pkgs=(chromium)   # the browser test of report.html (skipped when it cannot be installed)
bench_pkgs=(python3 python3-numpy python3-torch python3-faiss hyperfine time wrk curl)
case "${1:-build}" in
  build) want=("${build_pkgs[@]}") ;;
  test) want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench) want=("${build_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "vlm4rec: missing Debian packages: ${missing[*]}" >&2
  echo "vlm4rec: install them as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "vlm4rec: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
