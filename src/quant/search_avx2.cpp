// "Vertical" AVX2 version of the affine search (c) of ggml-formats.md §3.2: eight independent
// groups run in the eight lanes, each lane doing exactly the scalar float operations of
// make_qkx2_quants / make_qkx3_quants in the same order (sums stay sequential per lane; the
// data-dependent branches become per-lane selects). The scalar search is latency-bound on its
// running sums, so eight groups at once is several times faster with identical results.
#include <immintrin.h>

#include <atomic>

#include "quant/blocks.h"
#include "quant/search.h"

namespace samq::quant_detail {
namespace {

#define SAMQ_AVX2 __attribute__((target("avx2")))

std::atomic<bool> g_search_simd{true};

bool use_avx2() {
  static const bool has_avx2 = __builtin_cpu_supports("avx2");
  return has_avx2 && g_search_simd;
}

SAMQ_AVX2 inline __m256i nearest_int8(__m256 v) {
  const __m256 t = _mm256_add_ps(v, _mm256_set1_ps(12582912.f));
  const __m256i i = _mm256_castps_si256(t);
  return _mm256_sub_epi32(_mm256_and_si256(i, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}

SAMQ_AVX2 inline __m256 select(__m256 mask, __m256 a_if_set, __m256 b) { return _mm256_blendv_ps(b, a_if_set, mask); }

// |diff| (mean absolute deviation search) or diff^2.
SAMQ_AVX2 inline __m256 err_term(__m256 diff, bool use_mad, __m256 abs_mask) {
  return use_mad ? _mm256_and_ps(diff, abs_mask) : _mm256_mul_ps(diff, diff);
}

// Lane k of t[i] = element i of group k (groups of n at p, p + n, ..., p + 7n).
SAMQ_AVX2 inline __m256 lanes8(const float* p, int n, int i) {
  return _mm256_setr_ps(p[i], p[n + i], p[2 * n + i], p[3 * n + i], p[4 * n + i], p[5 * n + i], p[6 * n + i],
                        p[7 * n + i]);
}

// Per lane: the largest |t[i]| and the signed t[i] it came from (first one on ties; 0 when all 0).
SAMQ_AVX2 inline void signed_absmax(const __m256* t, int n, __m256* amax_out, __m256* max_out) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 amax = _mm256_setzero_ps(), max = _mm256_setzero_ps();
  for (int i = 0; i < n; ++i) {
    const __m256 ax = _mm256_and_ps(t[i], abs_mask);
    const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
    amax = select(gt, ax, amax);
    max = select(gt, t[i], max);
  }
  *amax_out = amax;
  *max_out = max;
}

SAMQ_AVX2 void affine_search_x8_avx2(int n, int nmax, const float* x, const float* w, uint8_t* L,
                                     float* scales, float* the_mins, float rmin, float rdelta,
                                     int nstep, bool use_mad) {
  __m256 xt[32] = {}, wt[32] = {};
  for (int i = 0; i < n; ++i) {
    xt[i] = lanes8(x, n, i);
    wt[i] = lanes8(w, n, i);
  }
  const __m256 zero = _mm256_setzero_ps();
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i izero = _mm256_setzero_si256(), inmax = _mm256_set1_epi32(nmax);

  __m256 mn = xt[0], mx = xt[0];
  __m256 sum_w = wt[0];
  __m256 sum_x = _mm256_mul_ps(sum_w, xt[0]);
  for (int i = 1; i < n; ++i) {
    mn = _mm256_min_ps(xt[i], mn);
    mx = _mm256_max_ps(xt[i], mx);
    sum_w = _mm256_add_ps(sum_w, wt[i]);
    sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(wt[i], xt[i]));
  }
  mn = select(_mm256_cmp_ps(mn, zero, _CMP_GT_OQ), zero, mn);
  const __m256 degenerate = _mm256_cmp_ps(mx, mn, _CMP_LE_OQ);
  const __m256 range = _mm256_sub_ps(mx, mn);


  __m256 iscale = _mm256_div_ps(_mm256_set1_ps(float(nmax)), range);
  __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.f), iscale);
  __m256 best_error = zero;
  __m256 Lf[32], Laux[32];
  for (int i = 0; i < n; ++i) {
    const __m256i l = _mm256_max_epi32(izero, _mm256_min_epi32(inmax, nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], mn)))));
    Lf[i] = _mm256_cvtepi32_ps(l);
    const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, Lf[i]), mn), xt[i]);
    best_error = _mm256_add_ps(best_error, _mm256_mul_ps(wt[i], err_term(diff, use_mad, abs_mask)));
  }
  __m256 cur_min = mn;
  for (int is = 0; is <= nstep; ++is) {
    const float num = rmin + rdelta * is + nmax;
    // As in the scalar search, a better candidate's min shifts the grid of later steps.
    iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(mx, cur_min));
    __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
    for (int i = 0; i < n; ++i) {
      const __m256i l = _mm256_max_epi32(izero, _mm256_min_epi32(inmax, nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], cur_min)))));
      Laux[i] = _mm256_cvtepi32_ps(l);
      const __m256 wl = _mm256_mul_ps(wt[i], Laux[i]);
      sum_l = _mm256_add_ps(sum_l, wl);
      sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, Laux[i]));
      sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, xt[i]));
    }
    const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
    const __m256 dpos = _mm256_cmp_ps(D, zero, _CMP_GT_OQ);
    if (_mm256_movemask_ps(dpos) == 0) continue;
    __m256 this_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
    __m256 this_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
    const __m256 mpos = _mm256_cmp_ps(this_min, zero, _CMP_GT_OQ);
    this_scale = select(mpos, _mm256_div_ps(sum_xl, sum_l2), this_scale);
    this_min = select(mpos, zero, this_min);
    __m256 cur_error = zero;
    for (int i = 0; i < n; ++i) {
      const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, Laux[i]), this_min), xt[i]);
      cur_error = _mm256_add_ps(cur_error, _mm256_mul_ps(wt[i], err_term(diff, use_mad, abs_mask)));
    }
    const __m256 better = _mm256_and_ps(dpos, _mm256_cmp_ps(cur_error, best_error, _CMP_LT_OQ));
    if (_mm256_movemask_ps(better) == 0) continue;
    for (int i = 0; i < n; ++i) Lf[i] = select(better, Laux[i], Lf[i]);
    best_error = select(better, cur_error, best_error);
    scale = select(better, this_scale, scale);
    cur_min = select(better, this_min, cur_min);
  }
  // Degenerate lanes (max <= min): codes 0, scale 0, min from the clamped minimum.
  scale = select(degenerate, zero, scale);
  cur_min = select(degenerate, mn, cur_min);
  alignas(32) float s8[8], m8[8], l8[8];
  _mm256_store_ps(s8, scale);
  _mm256_store_ps(m8, cur_min);
  const int deg = _mm256_movemask_ps(degenerate);
  for (int k = 0; k < 8; ++k) {
    scales[k] = s8[k];
    the_mins[k] = -m8[k];
  }
  for (int i = 0; i < n; ++i) {
    _mm256_store_ps(l8, Lf[i]);
    for (int k = 0; k < 8; ++k) L[k * n + i] = (deg >> k) & 1 ? uint8_t(0) : uint8_t(l8[k]);
  }
}

// make_qx_quants with rmse_type 1 (weights qw, or x^2 when qw is null) on eight groups.
SAMQ_AVX2 void symmetric_search_x8_avx2(int n, int nmax, const float* x, const float* qw, int8_t* L,
                                        float* scales) {
  __m256 xt[32] = {}, wt[32] = {};
  for (int i = 0; i < n; ++i) {
    xt[i] = lanes8(x, n, i);
    wt[i] = qw ? lanes8(qw, n, i) : _mm256_mul_ps(xt[i], xt[i]);
  }
  const __m256 zero = _mm256_setzero_ps();
  const __m256i lo = _mm256_set1_epi32(-nmax), hi = _mm256_set1_epi32(nmax - 1);
  // Signed element of largest magnitude, first one on ties.
  __m256 amax, max;
  signed_absmax(xt, n, &amax, &max);
  const __m256 degenerate = _mm256_cmp_ps(amax, _mm256_set1_ps(kGroupMaxEps), _CMP_LT_OQ);
  __m256 Lf[32], Laux[32];
  auto codes_and_sums = [&](__m256 iscale, __m256* Lout, __m256& sumlx, __m256& suml2) SAMQ_AVX2 {
    sumlx = zero;
    suml2 = zero;
    for (int i = 0; i < n; ++i) {
      const __m256i l = _mm256_max_epi32(lo, _mm256_min_epi32(hi, nearest_int8(_mm256_mul_ps(iscale, xt[i]))));
      Lout[i] = _mm256_cvtepi32_ps(l);
      sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(wt[i], xt[i]), Lout[i]));
      suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wt[i], Lout[i]), Lout[i]));
    }
  };
  __m256 sumlx, suml2;
  codes_and_sums(_mm256_div_ps(_mm256_set1_ps(float(-nmax)), max), Lf, sumlx, suml2);
  __m256 scale = select(_mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ), _mm256_div_ps(sumlx, suml2), zero);
  __m256 best = _mm256_mul_ps(scale, sumlx);
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    const float num = -(nmax + 0.1f * is);
    codes_and_sums(_mm256_div_ps(_mm256_set1_ps(num), max), Laux, sumlx, suml2);
    const __m256 better = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_GT_OQ),
                                        _mm256_cmp_ps(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2), _CMP_GT_OQ));
    if (_mm256_movemask_ps(better) == 0) continue;
    for (int i = 0; i < n; ++i) Lf[i] = select(better, Laux[i], Lf[i]);
    const __m256 s_new = _mm256_div_ps(sumlx, suml2);
    scale = select(better, s_new, scale);
    best = select(better, _mm256_mul_ps(s_new, sumlx), best);
  }
  scale = select(degenerate, zero, scale);
  alignas(32) float s8[8], l8[8];
  _mm256_store_ps(s8, scale);
  const int deg = _mm256_movemask_ps(degenerate);
  for (int k = 0; k < 8; ++k) scales[k] = s8[k];
  for (int i = 0; i < n; ++i) {
    _mm256_store_ps(l8, Lf[i]);
    for (int k = 0; k < 8; ++k) L[k * n + i] = (deg >> k) & 1 ? int8_t(0) : int8_t(int(l8[k]) + nmax);
  }
}

// kvalues_iq4nl[best_index_int8(al)] per lane, without a table lookup: the lower bracketing
// value and the next one are accumulated from the codebook steps (small integers, exact in
// float), then the same tie test as the scalar search picks one. NaN maps to the last entry.
SAMQ_AVX2 inline __m256 iq4_nearest_value(__m256 al) {
  const int8_t* v = kvalues_iq4nl;
  __m256 lo = _mm256_set1_ps(float(v[0])), hi = _mm256_set1_ps(float(v[1]));
  for (int j = 1; j < 15; ++j) {
    const __m256 m = _mm256_cmp_ps(_mm256_set1_ps(float(v[j])), al, _CMP_LE_OQ);
    lo = _mm256_add_ps(lo, _mm256_and_ps(m, _mm256_set1_ps(float(v[j] - v[j - 1]))));
    hi = _mm256_add_ps(hi, _mm256_and_ps(m, _mm256_set1_ps(float(v[j + 1] - v[j]))));
  }
  const __m256 take_lo = _mm256_cmp_ps(_mm256_sub_ps(al, lo), _mm256_sub_ps(hi, al), _CMP_LT_OQ);
  const __m256 q = select(take_lo, lo, hi);
  return select(_mm256_cmp_ps(al, _mm256_set1_ps(float(v[15])), _CMP_NLT_UQ), _mm256_set1_ps(float(v[15])), q);
}

SAMQ_AVX2 void iq4_scale_search_x8_avx2(const float* x, const float* w, float* scales) {
  const int n = 32;
  __m256 xt[32], wt[32];
  for (int i = 0; i < n; ++i) {
    xt[i] = lanes8(x, n, i);
    wt[i] = lanes8(w, n, i);
  }
  const __m256 zero = _mm256_setzero_ps();
  __m256 amax, max;
  signed_absmax(xt, n, &amax, &max);
  const __m256 degenerate = _mm256_cmp_ps(amax, _mm256_set1_ps(kGroupMaxEps), _CMP_LT_OQ);
  const float v0 = kvalues_iq4nl[0];
  auto sums = [&](__m256 id, __m256& sumqx, __m256& sumq2) SAMQ_AVX2 {
    sumqx = zero;
    sumq2 = zero;
    for (int j = 0; j < n; ++j) {
      const __m256 q = iq4_nearest_value(_mm256_mul_ps(id, xt[j]));
      const __m256 wq = _mm256_mul_ps(wt[j], q);
      sumqx = _mm256_add_ps(sumqx, _mm256_mul_ps(wq, xt[j]));
      sumq2 = _mm256_add_ps(sumq2, _mm256_mul_ps(wq, q));
    }
  };
  const __m256 d0 = _mm256_div_ps(_mm256_xor_ps(max, _mm256_set1_ps(-0.f)), _mm256_set1_ps(v0));  // -max / values[0]
  __m256 sumqx, sumq2;
  sums(_mm256_div_ps(_mm256_set1_ps(1.f), d0), sumqx, sumq2);
  __m256 d = select(_mm256_cmp_ps(sumq2, zero, _CMP_GT_OQ), _mm256_div_ps(sumqx, sumq2), zero);
  __m256 best = _mm256_mul_ps(d, sumqx);
  for (int itry = -7; itry <= 7; ++itry) {
    sums(_mm256_div_ps(_mm256_set1_ps(float(itry + kvalues_iq4nl[0])), max), sumqx, sumq2);
    const __m256 better = _mm256_and_ps(_mm256_cmp_ps(sumq2, zero, _CMP_GT_OQ),
                                        _mm256_cmp_ps(_mm256_mul_ps(sumqx, sumqx), _mm256_mul_ps(best, sumq2), _CMP_GT_OQ));
    const __m256 dn = _mm256_div_ps(sumqx, sumq2);
    d = select(better, dn, d);
    best = select(better, _mm256_mul_ps(dn, sumqx), best);
  }
  _mm256_storeu_ps(scales, select(degenerate, zero, d));
}

}  // namespace

void set_search_simd(bool on) { g_search_simd = on; }
bool search_simd_enabled() { return use_avx2(); }

bool iq4_scale_search_x8(const float* x, const float* w, float* scales) {
  if (!use_avx2()) return false;
  iq4_scale_search_x8_avx2(x, w, scales);
  return true;
}

bool symmetric_search_x8(int n, int nmax, const float* x, const float* qw, int8_t* L, float* scales) {
  if (!use_avx2() || n < 1 || n > 32) return false;
  symmetric_search_x8_avx2(n, nmax, x, qw, L, scales);
  return true;
}

bool affine_search_x8(int n, int nmax, const float* x, const float* w, uint8_t* L, float* scales,
                      float* the_mins, float rmin, float rdelta, int nstep, bool use_mad) {
  if (!use_avx2() || n < 2 || n > 32 || nstep < 1) return false;
  affine_search_x8_avx2(n, nmax, x, w, L, scales, the_mins, rmin, rdelta, nstep, use_mad);
  return true;
}

}  // namespace samq::quant_detail
