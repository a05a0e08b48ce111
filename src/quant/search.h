// Scale-search helpers shared by the K-quant, legacy and IQ4 quantizers (ggml-formats.md §3.2).
// They reproduce ggml's searches operation for operation in float32 (evaluation order and
// int->float promotions matter for byte identity), so keep every expression as it is.
#pragma once
#include <cstdint>
#include <cstring>

namespace samq::quant_detail {

constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest, ties to even, for |v| <= 2^22: add 1.5*2^23 and read the mantissa.
inline int nearest_int(float v) {
  const float t = v + 12582912.f;
  int32_t i;
  std::memcpy(&i, &t, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

// (a) symmetric search. Codes L in [0, 2*nmax) (offset +nmax). rmse_type: 0 plain rounding,
// 1 weights x^2, 2 ones, 3 |x|, other sqrt|x|; negative returns early (see §3.2). qw overrides.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw);

// (b) 3-bit coordinate descent (Q3_K ref). Codes offset +nmax.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse);

// (c) affine search, weights required. Returns the scale, *the_min = positive min.
// Note (not in ggml-formats.md §3.2): when a step's candidate wins, its fitted offset replaces
// the running min, and later steps grid from it (iscale = (...)/(max - min), codes from
// x - min), exactly as ggml's loop does.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad);
// (c) variant: weights may be null (then x^2).
float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad);

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

// IQ4 block-scale search of one 32-element block with weights (scalar reference).
float iq4_block_scale(const float* xb, const float* weight);
// IQ4 block-scale search (ggml-formats.md §3.3, ntry = 7) on eight 32-element blocks
// x[32k ..] with weights w[32k ..]; scales[k] as the scalar search gives (0 for near-zero
// blocks). Returns false when the CPU has no AVX2.
bool iq4_scale_search_x8(const float* x, const float* w, float* scales);

// (d) quantize non-negative scales x to 0..nmax with one multiplier (returned).
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);

// Index of the nearest IQ4 codebook entry (sorted values, n = 16); exact ties pick the upper.
// Same result as ggml's binary search (including NaN -> n-1), but branch-free: the search's
// final lower index is the count of entries val[1..n-1] <= x, and the tie test is the same
// float expression. (The binary search's unpredictable branches made IQ4 quantization ~5x
// slower.)
inline int best_index_int8(int n, const int8_t* val, float x) {
  if (x <= val[0]) return 0;
  if (!(x < val[n - 1])) return n - 1;  // x >= max, or NaN
  int ml = 0;
  for (int j = 1; j < n - 1; ++j) ml += val[j] <= x;
  return x - val[ml] < val[ml + 1] - x ? ml : ml + 1;
}

}  // namespace samq::quant_detail
