#!/usr/bin/env bash
# The MoE quality table (refmoe-31m, qwen3moe): at the byte size of each of llama.cpp's
# Q2_K/Q3_K_M/Q4_K_M/Q5_K_M+imatrix files (../shared/docs/anchors.md), samq's optimal plan
# (samq analyze on calib.txt, its own importance matrix, GPTQ with the input Hessians of samq
# hessian on the same tokens, one per expert matrix) against llama.cpp's preset of that name
# written through samq's preset path (samq plan --policy preset:X, samq quantize with llama.cpp's
# importance matrix of refmoe-31m: the same mixture and quantizer as llama-quantize). Both
# evaluated by `samq eval` against the BF16 file on the first 400000 bytes of eval.txt (207 chunks
# of 512, as anchors.md), base logits computed once.
#
#   scripts/moe_quality.sh [CALIB_TOKENS (default 16384)] [OUT (default out/moe-quality)]
set -euo pipefail
# shellcheck source=scripts/paths.sh
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"
tokens="${1:-16384}"
out="${2:-$root/out/moe-quality}"
samq="$build/samq"
model="$shared/models/refmoe-31m"
mkdir -p "$out"
cd "$out"
head -c 400000 "$shared/data/eval.txt" >eval.txt
[ -f bf16.gguf ] || "$samq" -q convert "$model" -o bf16.gguf --type bf16
[ -f base.logits ] || "$samq" -q eval bf16.gguf --text eval.txt --ctx 512 --save-logits base.logits
[ -f "sens$tokens.json" ] || "$samq" -q analyze "$model" --calib "$shared/data/calib.txt" --tokens "$tokens" -o "sens$tokens.json"
[ -f "h$tokens.gguf" ] || "$samq" -q hessian "$model" --calib "$shared/data/calib.txt" --tokens "$tokens" -o "h$tokens.gguf"
echo "| size of llama.cpp's | bytes samq / preset | KLD samq | KLD preset | ratio | same top-1 samq / preset |"
echo "|---|---|---|---|---|---|"
for row in Q2_K:14473472 Q3_K_M:17172736 Q4_K_M:20150528 Q5_K_M:22968576; do
  name=${row%%:*} size=${row##*:}
  "$samq" -q plan "sens$tokens.json" --target-size "$size" -o "opt_$name.json" >/dev/null 2>&1
  "$samq" -q quantize "$model" "opt_$name.json" -o "opt_$name.gguf" --hessian "h$tokens.gguf" 2>/dev/null
  "$samq" -q plan "$model" --policy "preset:$name" -o "pre_$name.json" >/dev/null 2>&1
  "$samq" -q quantize "$model" "pre_$name.json" -o "pre_$name.gguf" --imatrix "$shared/golden/anchors/refmoe-31m-imatrix.gguf" 2>/dev/null
  for k in opt pre; do
    "$samq" -q eval "${k}_$name.gguf" --text eval.txt --ctx 512 --base-logits base.logits --json "${k}_$name.eval.json" >/dev/null 2>&1
  done
  python3 - "$name" <<'PY'
import json, os, sys
n = sys.argv[1]
o, p = (json.load(open(f"{k}_{n}.eval.json")) for k in ("opt", "pre"))
print(f"| {n} | {os.path.getsize(f'opt_{n}.gguf')} / {os.path.getsize(f'pre_{n}.gguf')} | {o['kld']['mean']:.6f} | "
      f"{p['kld']['mean']:.6f} | {o['kld']['mean'] / p['kld']['mean']:.3f} | {o['same_top1_pct']:.2f} / {p['same_top1_pct']:.2f} % |")
PY
done
