#!/usr/bin/env bash
# The main job on the reference model: build samq, then run the whole pipeline
# (analyze -> plan -> quantize -> eval against llama.cpp's preset mixtures -> report) with
# `samq run`, at the size of llama.cpp's Q4_K_M+imatrix file. Re-running reuses finished stages.
# Knobs (environment): SAMQ_DEMO_BUDGET (samq run budget flags), SAMQ_DEMO_CALIB_TOKENS,
# SAMQ_DEMO_EVAL_CHUNKS (207 = the whole 400000-byte eval text), SAMQ_DEMO_OUT.
set -euo pipefail
# shellcheck source=scripts/paths.sh
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"
out="${SAMQ_DEMO_OUT:-$root/out/demo}"
budget="${SAMQ_DEMO_BUDGET:---target-size 20542368}"
calib_tokens="${SAMQ_DEMO_CALIB_TOKENS:-16384}"
eval_chunks="${SAMQ_DEMO_EVAL_CHUNKS:-32}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target samq
mkdir -p "$out"
"$build/samq" inspect "$shared/models/refcode-32m"
# Calibration: the first 600000 bytes of calib.txt (as llama.cpp's anchor imatrix); evaluation:
# the first 400000 bytes of eval.txt (never used for planning).
head -c 600000 "$shared/data/calib.txt" >"$out/calib.txt"
head -c 400000 "$shared/data/eval.txt" >"$out/eval.txt"
# shellcheck disable=SC2086
"$build/samq" run "$shared/models/refcode-32m" --calib "$out/calib.txt" --eval "$out/eval.txt" $budget \
  --calib-tokens "$calib_tokens" --eval-chunks "$eval_chunks" -o "$out"
echo "report: $out/report.md"
