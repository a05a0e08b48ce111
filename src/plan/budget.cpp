#include "plan/budget.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/byte_size.h"
#include "core/error.h"
#include "core/ggml_type.h"

namespace samq::plan {

int64_t parse_size(const std::string& text, const std::string& what) { return parse_byte_size(text, what); }

MemoryEstimate estimate_runtime_memory(const Sensitivity& s, int64_t ctx, const std::string& kv_type,
                                       int parallel) {
  if (ctx <= 0) fail("--ctx must be positive (got {})", ctx);
  if (parallel <= 0) fail("--parallel must be positive (got {})", parallel);
  const auto kt = ggml_type_from_name(kv_type);
  if (!kt || (*kt != GgmlType::F16 && *kt != GgmlType::Q8_0 && *kt != GgmlType::F32 && *kt != GgmlType::BF16 &&
              *kt != GgmlType::Q4_0))
    fail("--kv-type: \"{}\" is not one of f16, bf16, f32, q8_0, q4_0", kv_type);
  // Shapes: n_embd from token_embd's cols, n_vocab from its rows, n_embd_kv from attn_k's rows.
  int64_t n_embd = 0, n_vocab = 0, n_ff = 0, n_embd_k = 0, n_embd_v = 0;
  int n_layer = 0;
  for (const auto& t : s.tensors) {
    n_layer = std::max(n_layer, t.layer + 1);
    // Weights only: a bias (qwen2's blk.N.attn_k.bias, one row) has the same kind.
    if (t.name.size() < 7 || t.name.compare(t.name.size() - 7, 7, ".weight") != 0) continue;
    if (t.name == "token_embd.weight") n_embd = t.cols, n_vocab = t.rows;
    if (t.kind == "attn_k" && n_embd_k == 0) n_embd_k = t.rows;
    if (t.kind == "attn_v" && n_embd_v == 0) n_embd_v = t.rows;
    if (t.kind == "ffn_up" && n_ff == 0) n_ff = t.rows;
    // phi3: q, k, v fused (n_embd_q + 2 n_embd_kv rows; n_embd_q = n_head * head_dim when the
    // analysis recorded them, else n_embd as in every Phi-3), gate and up fused (2 n_ff rows).
    if (t.kind == "attn_qkv" && n_embd_k == 0) {
      const int64_t nq = s.model.n_head > 0 && s.model.head_dim > 0 ? int64_t(s.model.n_head) * s.model.head_dim : t.cols;
      n_embd_k = (t.rows - nq) / 2;
    }
  }
  for (const auto& t : s.tensors)
    if (t.kind == "attn_qkv" && t.name.ends_with(".weight")) {
      n_ff /= 2;
      break;
    }
  if (n_embd == 0 || n_embd_k == 0) fail("{}: cannot estimate memory: no token_embd or attn_k tensor", s.path);
  if (n_embd_v == 0) n_embd_v = n_embd_k;
  MemoryEstimate m;
  const int64_t kv_ctx = ctx * parallel;
  m.kv_bytes = int64_t(n_layer) * (ggml_row_size(*kt, n_embd_k) + ggml_row_size(*kt, n_embd_v)) * kv_ctx;
  const int64_t ub = std::min<int64_t>(512, kv_ctx);  // llama.cpp's default micro-batch (n_ubatch)
  // llama.cpp's compute buffer is the peak of its graph allocator, which reuses memory: the
  // largest of (a) the output stage, logits (f32, n_vocab per token) beside the final norm and the
  // residual, and (b) a layer's FFN stage: the gate/up/activation/product rows (4 n_ff f32 per
  // token), the residual and the token inputs, while the f16 KQ mask (micro-batch x context) is
  // live. Flash attention (llama.cpp's default on CPU, flash_attn auto) needs no f32 score matrix.
  // Checked against llama.cpp's own buffer sizes (node-llama-cpp 3.22.1's
  // estimateContextResourceRequirementsV2, which has llama.cpp compute them) for refcode-32m and
  // the qwen2 fixture at ctx 512 and 8192: tests/node/fit_memory.test.mjs.
  const int64_t output_stage = 4 * ub * (n_vocab + 2 * n_embd);
  const int64_t ffn_stage = 2 * ub * kv_ctx + 4 * ub * (4 * n_ff + n_embd + 7);
  m.compute_bytes = std::max(output_stage, ffn_stage);
  return m;
}

}  // namespace samq::plan
