// Q2_K (2-bit affine, 16 sub-blocks of 16) and Q3_K (3-bit symmetric, 6-bit sub-block scales),
// ggml-formats.md §2.4-2.5 and §3.3: the rows, super-block by super-block (quant/kquants_impl.h).
#include "core/error.h"
#include "quant/kquants_impl.h"
#include "quant/quants_ref.h"

namespace samq {
using namespace quant_detail;

void quantize_row_q2_K_ref(const float* x, block_q2_K* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) quantize_block_q2_K(x + QK_K * i, nullptr, y[i]);
}

void quantize_row_q2_K_weighted(const float* x, block_q2_K* y, int64_t n_per_row, const float* qw) {
  if (!qw) fail("quantize_row_q2_K_weighted: importance weights required");
  for (int64_t i = 0; i < n_per_row / QK_K; ++i) quantize_block_q2_K(x + QK_K * i, qw + QK_K * i, y[i]);
}

void dequantize_row_q2_K(const block_q2_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) dequantize_block(x[i], y + QK_K * i);
}

void quantize_row_q3_K_ref(const float* x, block_q3_K* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) quantize_block_q3_K(x + QK_K * i, nullptr, y[i]);
}

void quantize_row_q3_K_weighted(const float* x, block_q3_K* y, int64_t n_per_row, const float* qw) {
  if (!qw) fail("quantize_row_q3_K_weighted: importance weights required");
  for (int64_t i = 0; i < n_per_row / QK_K; ++i) quantize_block_q3_K(x + QK_K * i, qw + QK_K * i, y[i]);
}

void dequantize_row_q3_K(const block_q3_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) dequantize_block(x[i], y + QK_K * i);
}

}  // namespace samq
