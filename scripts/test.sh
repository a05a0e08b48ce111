#!/usr/bin/env bash
# Builds samq and runs every test suite through ctest (fast and slow labels alike).
# Usage: scripts/test.sh [extra ctest args, e.g. -L fast or -LE slow]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SAMQ_BUILD_DIR:-$root/build}"
jobs="$(nproc)"
# Tests run two at a time on 2 cores: OpenMP threads that spin while idle would steal the
# other test's core, so let them sleep (the serve command does the same by itself).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
# Every test runs samq with its default thread count (all cores), as a user does; ctest runs two
# tests at a time on CI's 2 cores. SAMQ_THREADS would override that default: unset here.
unset SAMQ_THREADS
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$jobs"
cd "$build"
ctest --output-on-failure -j "$jobs" --timeout 1500 "$@"
