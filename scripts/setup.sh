#!/usr/bin/env bash
# Installs everything samq needs to build and test, from Debian's packages and pinned npm
# packages. Idempotent; run as root on a fresh Debian 12.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Node.js >= 20 with npm (node-llama-cpp 3 needs it) comes with the machine image (nodesource).
# Debian 12's own nodejs is 18 and its npm conflicts with nodesource's, so none is installed here.
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo none)"
if ! [[ "$node_major" =~ ^[0-9]+$ ]] || [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null; then
  echo "setup: Node.js >= 20 with npm is required for the interop tests (tests/node); found:" \
    "node $(node --version 2>/dev/null || echo 'not installed'), npm $(npm --version 2>/dev/null || echo 'not installed')." >&2
  echo "setup: install Node.js 20 or newer (https://nodejs.org, or NodeSource's Debian packages) and re-run." >&2
  exit 1
fi

apt_pkgs=(
  build-essential cmake ninja-build pkg-config git
  libgtest-dev libgmock-dev
  nlohmann-json3-dev libcli11-dev libpcre2-dev
  libopenblas-openmp-dev libcpp-httplib-dev libssl-dev zlib1g-dev
  prometheus-cpp-dev libfmt-dev
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

# llama.cpp (prebuilt, CPU) and the official OpenAI client: independent oracles for tests.
if [ ! -d "$here/tests/node/node_modules/node-llama-cpp" ] || [ ! -d "$here/tests/node/node_modules/openai" ]; then
  (cd "$here/tests/node" && npm install --no-audit --no-fund --omit=optional --loglevel=error)
fi
echo "setup: ok"
