#!/usr/bin/env bash
# Installs everything samq needs to build and test, from Debian's packages and pinned npm
# packages. Idempotent; run as root on a fresh Debian 12.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

apt_pkgs=(
  build-essential cmake ninja-build pkg-config git
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libpcre2-dev
  libopenblas-openmp-dev libcpp-httplib-dev libssl-dev zlib1g-dev
  prometheus-cpp-dev libspdlog-dev libfmt-dev
  clang-14 libclang-rt-14-dev
)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Node.js 20 with npm comes with the machine image (nodesource); Debian's npm conflicts with it.
if ! command -v npm >/dev/null; then
  missing_node=1; apt-get install -y -qq --no-install-recommends nodejs npm
fi

# llama.cpp (prebuilt, CPU) and the official OpenAI client: independent oracles for tests.
if [ ! -d "$here/tests/node/node_modules/node-llama-cpp" ] || [ ! -d "$here/tests/node/node_modules/openai" ]; then
  (cd "$here/tests/node" && npm install --no-audit --no-fund --omit=optional --loglevel=error)
fi
echo "setup: ok"
