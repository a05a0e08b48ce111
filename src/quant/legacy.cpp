// The 32-element "legacy" formats Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (ggml-formats.md §2.2, §3.3):
// the rows, block by block (quant/legacy_iq4_impl.h). Plain paths: one scale from the block's
// extreme, codes by truncating x*id + offset (Q8_0: roundf). Weighted paths: per-row sigma^2,
// element weight qw*sqrt(sigma^2 + x^2), and the symmetric (a) or affine (c) search, eight blocks
// per SIMD search where the CPU has one (same bytes as the scalar search of each block).
#include <algorithm>

#include "quant/legacy_iq4_impl.h"
#include "quant/quants_ref.h"

namespace samq {
using namespace quant_detail;

namespace {

template <typename B>
void quantize_row_plain(const float* x, B* y, int64_t k) {
  for (int64_t i = 0; i < k / 32; ++i) quantize_block_legacy_plain(x + 32 * i, y[i]);
}

// The importance-weighted path of the four types, eight blocks at a time.
template <typename B>
void quantize_row_weighted(const float* x, B* y, int64_t n_per_row, const float* qw) {
  constexpr bool affine = requires { y->m; };
  constexpr int nmax = legacy_nmax<B>();
  const float sigma2 = row_sigma2(x, n_per_row);
  float w[8 * 32], d[8], min[8];
  uint8_t L[8 * 32];
  const int64_t nb = n_per_row / 32;
  for (int64_t ib0 = 0; ib0 < nb; ib0 += 8) {
    const int g = int(std::min<int64_t>(8, nb - ib0));  // blocks in this group
    const float* xg = x + 32 * ib0;
    for (int k = 0; k < g; ++k) legacy_weights(xg + 32 * k, qw + 32 * (ib0 + k), sigma2, w + 32 * k);
    const bool simd = g == 8 && (affine ? affine_search_x8(32, nmax, xg, w, L, d, min, -0.9f, 0.05f, 36, false)
                                        : symmetric_search_x8(32, nmax, xg, w, reinterpret_cast<int8_t*>(L), d));
    for (int k = 0; k < g; ++k) {
      if (simd) store_legacy_weighted(L + 32 * k, d[k], min[k], y[ib0 + k]);
      else quantize_block_legacy_weighted(xg + 32 * k, qw + 32 * (ib0 + k), sigma2, y[ib0 + k]);
    }
  }
}

template <typename B>
void dequantize_rows(const B* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / 32; ++i) dequantize_block(x[i], y + 32 * i);
}

}  // namespace

void quantize_row_q4_0_ref(const float* x, block_q4_0* y, int64_t k) { quantize_row_plain(x, y, k); }
void quantize_row_q4_1_ref(const float* x, block_q4_1* y, int64_t k) { quantize_row_plain(x, y, k); }
void quantize_row_q5_0_ref(const float* x, block_q5_0* y, int64_t k) { quantize_row_plain(x, y, k); }
// (ggml's Q5_1 path converts without the clamp; (x - min)/d + 0.5 < 32 here, so same codes.)
void quantize_row_q5_1_ref(const float* x, block_q5_1* y, int64_t k) { quantize_row_plain(x, y, k); }

void quantize_row_q8_0_ref(const float* x, block_q8_0* y, int64_t k) {
  for (int64_t i = 0; i < k / QK8_0; ++i) quantize_block_q8_0(x + QK8_0 * i, y[i]);
}

void quantize_row_q4_0_weighted(const float* x, block_q4_0* y, int64_t n_per_row, const float* qw) {
  quantize_row_weighted(x, y, n_per_row, qw);
}
void quantize_row_q4_1_weighted(const float* x, block_q4_1* y, int64_t n_per_row, const float* qw) {
  quantize_row_weighted(x, y, n_per_row, qw);
}
void quantize_row_q5_0_weighted(const float* x, block_q5_0* y, int64_t n_per_row, const float* qw) {
  quantize_row_weighted(x, y, n_per_row, qw);
}
void quantize_row_q5_1_weighted(const float* x, block_q5_1* y, int64_t n_per_row, const float* qw) {
  quantize_row_weighted(x, y, n_per_row, qw);
}

void dequantize_row_q4_0(const block_q4_0* x, float* y, int64_t k) { dequantize_rows(x, y, k); }
void dequantize_row_q4_1(const block_q4_1* x, float* y, int64_t k) { dequantize_rows(x, y, k); }
void dequantize_row_q5_0(const block_q5_0* x, float* y, int64_t k) { dequantize_rows(x, y, k); }
void dequantize_row_q5_1(const block_q5_1* x, float* y, int64_t k) { dequantize_rows(x, y, k); }
void dequantize_row_q8_0(const block_q8_0* x, float* y, int64_t k) { dequantize_rows(x, y, k); }

}  // namespace samq
