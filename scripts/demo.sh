#!/usr/bin/env bash
# The main job on the reference model: build samq, then run the pipeline stages that exist.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SAMQ_BUILD_DIR:-$root/build}"
shared="${SAMQ_SHARED_DIR:-$root/../shared}"
out="${SAMQ_DEMO_OUT:-$root/out/demo}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target samq
mkdir -p "$out"
"$build/samq" inspect "$shared/models/refcode-32m"
