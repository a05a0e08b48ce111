// IQ4_NL (32-element blocks) and IQ4_XS (256-element super-blocks of 8 x 32 with 6-bit
// sub-block scales): 4-bit codes into the non-linear codebook kvalues_iq4nl
// (ggml-formats.md §2.10, §3.3), the rows block by block (quant/legacy_iq4_impl.h). One search
// serves both, as in ggml's llama-quantize path (ntry = 7): per 32-block, best of 15 inverse
// scales by weighted fit quality; XS then quantizes the 8 block scales to 6 bits against the
// dominant one and re-maps the codes.
#include <algorithm>

#include "quant/legacy_iq4_impl.h"
#include "quant/quants_ref.h"

namespace samq {
using namespace quant_detail;

void quantize_row_iq4_nl_ref(const float* x, block_iq4_nl* y, int64_t k, const float* qw) {
  float weight[8 * 32], scales[8];
  const int64_t nb = k / QK4_NL;
  for (int64_t ib0 = 0; ib0 < nb; ib0 += 8) {
    const int g = int(std::min<int64_t>(8, nb - ib0));
    const float* xg = x + QK4_NL * ib0;
    if (g < 8) {
      for (int b = 0; b < g; ++b) quantize_block_iq4_nl(xg + 32 * b, qw ? qw + QK4_NL * (ib0 + b) : nullptr, y[ib0 + b]);
      continue;
    }
    for (int b = 0; b < g; ++b)  // each 32-block is its own super-block for sigma^2
      iq4_weights(xg + 32 * b, QK4_NL, qw ? qw + QK4_NL * (ib0 + b) : nullptr, weight + 32 * b);
    if (!iq4_scale_search_x8(xg, weight, scales))
      for (int b = 0; b < g; ++b) scales[b] = iq4_block_scale(xg + 32 * b, weight + 32 * b);
    for (int b = 0; b < g; ++b) iq4_finish_nl(xg + 32 * b, scales[b], y[ib0 + b]);
  }
}

void quantize_row_iq4_xs_ref(const float* x, block_iq4_xs* y, int64_t k, const float* qw) {
  for (int64_t ib = 0; ib < k / QK_K; ++ib) quantize_block_iq4_xs(x + QK_K * ib, qw ? qw + QK_K * ib : nullptr, y[ib]);
}

void dequantize_row_iq4_nl(const block_iq4_nl* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK4_NL; ++i) dequantize_block(x[i], y + QK4_NL * i);
}

void dequantize_row_iq4_xs(const block_iq4_xs* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) dequantize_block(x[i], y + QK_K * i);
}

}  // namespace samq
