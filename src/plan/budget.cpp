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
  int64_t n_embd = 0, n_vocab = 0, n_ff = 0, n_embd_k = 0, n_embd_v = 0, q_rows = 0;
  int n_layer = 0;
  for (const auto& t : s.tensors) {
    if (t.name == "token_embd.weight") n_embd = t.cols, n_vocab = t.rows;
    if (t.kind == "attn_k" && n_embd_k == 0) n_embd_k = t.rows;
    if (t.kind == "attn_v" && n_embd_v == 0) n_embd_v = t.rows;
    if (t.kind == "attn_q" && q_rows == 0) q_rows = t.rows;
    if (t.kind == "ffn_up" && n_ff == 0) n_ff = t.rows;
    n_layer = std::max(n_layer, t.layer + 1);
  }
  if (n_embd == 0 || n_embd_k == 0) fail("{}: cannot estimate memory: no token_embd or attn_k tensor", s.path);
  if (n_embd_v == 0) n_embd_v = n_embd_k;
  const int head_dim = s.model.head_dim > 0 ? s.model.head_dim : 128;
  const int64_t n_head = s.model.n_head > 0 ? s.model.n_head : std::max<int64_t>(1, q_rows / head_dim);
  MemoryEstimate m;
  const int64_t kv_ctx = ctx * parallel;
  m.kv_bytes = int64_t(n_layer) * (ggml_row_size(*kt, n_embd_k) + ggml_row_size(*kt, n_embd_v)) * kv_ctx;
  const int64_t ubatch = std::min<int64_t>(512, kv_ctx);
  // Logits, a few residual-width activations, the FFN hidden pair, and the KQ scores (f32)
  // with their softmax (1.5x: the allocator overlaps part of the two). Checked against
  // node-llama-cpp 3.22.1's GgufInsights estimate for refcode-32m (ctx 1024 and 8192, CPU):
  // within 5%.
  m.compute_bytes = 4 * ubatch * (n_vocab + 6 * n_embd + 2 * n_ff) + 6 * n_head * ubatch * kv_ctx;
  return m;
}

}  // namespace samq::plan
