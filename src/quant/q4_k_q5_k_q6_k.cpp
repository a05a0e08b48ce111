// Q4_K and Q5_K (affine, 8 sub-blocks of 32, 6-bit scales and mins packed in 12 bytes) and
// Q6_K (symmetric, 16 sub-blocks of 16, int8 scales), ggml-formats.md §2.6-2.8 and §3.3: the rows,
// super-block by super-block (quant/kquants_impl.h).
#include "core/error.h"
#include "quant/kquants_impl.h"
#include "quant/quants_ref.h"

namespace samq {
using namespace quant_detail;

void quantize_row_q4_K_ref(const float* x, block_q4_K* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) quantize_block_k45(x + QK_K * i, nullptr, y[i]);
}

void quantize_row_q4_K_weighted(const float* x, block_q4_K* y, int64_t n_per_row, const float* qw) {
  if (!qw) fail("quantize_row_q4_K_weighted: importance weights required");
  for (int64_t i = 0; i < n_per_row / QK_K; ++i) quantize_block_k45(x + QK_K * i, qw + QK_K * i, y[i]);
}

void quantize_row_q5_K_ref(const float* x, block_q5_K* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) quantize_block_k45(x + QK_K * i, nullptr, y[i]);
}

void quantize_row_q5_K_weighted(const float* x, block_q5_K* y, int64_t n_per_row, const float* qw) {
  if (!qw) fail("quantize_row_q5_K_weighted: importance weights required");
  for (int64_t i = 0; i < n_per_row / QK_K; ++i) quantize_block_k45(x + QK_K * i, qw + QK_K * i, y[i]);
}

void quantize_row_q6_K_ref(const float* x, block_q6_K* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) quantize_block_q6_K(x + QK_K * i, nullptr, y[i]);
}

// Q6_K's weighted path passes the raw importance values as weights (no sigma^2 term).
void quantize_row_q6_K_weighted(const float* x, block_q6_K* y, int64_t n_per_row, const float* qw) {
  for (int64_t i = 0; i < n_per_row / QK_K; ++i)
    quantize_block_q6_K(x + QK_K * i, qw ? qw + QK_K * i : nullptr, y[i]);
}

void dequantize_row_q4_K(const block_q4_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) dequantize_block(x[i], y + QK_K * i);
}

void dequantize_row_q5_K(const block_q5_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) dequantize_block(x[i], y + QK_K * i);
}

void dequantize_row_q6_K(const block_q6_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) dequantize_block(x[i], y + QK_K * i);
}

}  // namespace samq
