// Scale-search helpers shared by the K-quant, legacy and IQ4 quantizers (ggml-formats.md §3.2).
// They reproduce ggml's searches operation for operation in float32 (evaluation order and
// int->float promotions matter for byte identity), so keep every expression as it is.
#pragma once
#include <cstdint>

// The scalar searches, one source for the CPU and the CUDA backend (defined in search_impl.h):
//   make_qx_quants, make_q3_quants, make_qkx2_quants, make_qkx3_quants, make_qp_quants,
//   iq4_block_scale, and the rounding helpers nearest_int and best_index_int8.
#include "quant/search_impl.h"

namespace samq::quant_detail {

// The eight-lane searches below run only where AVX2 exists and this switch is on (tests turn
// it off to check that the scalar searches give the same bytes).
void set_search_simd(bool on);
bool search_simd_enabled();

// (c) on eight groups at once: group k is x[k*n .. k*n+n) with weights w[k*n ..]; codes to
// L[k*n ..], scale and positive min per group. Same results as make_qkx2_quants (and as
// make_qkx3_quants with weights) on each group. Returns false, doing nothing, when the CPU
// has no AVX2 (or n > 32): the caller then runs the scalar search.
bool affine_search_x8(int n, int nmax, const float* x, const float* w, uint8_t* L, float* scales,
                      float* the_mins, float rmin, float rdelta, int nstep, bool use_mad);

// (a) with rmse_type 1 on eight groups at once (group k = x[k*n ..], weights qw[k*n ..] or x^2
// when qw is null): same codes and scales as make_qx_quants(n, nmax, ., ., 1, .) per group.
// Returns false when the CPU has no AVX2.
bool symmetric_search_x8(int n, int nmax, const float* x, const float* qw, int8_t* L, float* scales);

// IQ4 block-scale search (ggml-formats.md §3.3, ntry = 7) on eight 32-element blocks
// x[32k ..] with weights w[32k ..]; scales[k] as the scalar search gives (0 for near-zero
// blocks). Returns false when the CPU has no AVX2.
bool iq4_scale_search_x8(const float* x, const float* w, float* scales);

}  // namespace samq::quant_detail
