// The scalar scale searches of the reference quantizers (described in quant/search.h), in one
// source for the CPU and the CUDA backend (core/hd.h). They reproduce ggml's searches operation for
// operation in float32 (evaluation order and int->float promotions matter for byte identity), so
// keep every expression as it is: e.g. `w * x * l` is (w*x)*float(l), and sums accumulate in index
// order.
#pragma once
#include <cstdint>

#include "core/hd.h"
#include "quant/blocks.h"

namespace samq::quant_detail {

constexpr float kGroupMaxEps = 1e-15f;
constexpr int kIq4Ntry = 7;

// Round to nearest, ties to even, for |v| <= 2^22: add 1.5*2^23 and read the mantissa.
SAMQ_HD inline int nearest_int(float v) {
  const float t = v + 12582912.f;
  const int32_t i = int32_t(hd::f32_to_bits(t));
  return (i & 0x007fffff) - 0x00400000;
}

// Index of the nearest IQ4 codebook entry (sorted values, n = 16); exact ties pick the upper.
// Same result as ggml's binary search (including NaN -> n-1), but branch-free: the search's
// final lower index is the count of entries val[1..n-1] <= x, and the tie test is the same
// float expression. (The binary search's unpredictable branches made IQ4 quantization ~5x
// slower.)
SAMQ_HD inline int best_index_int8(int n, const int8_t* val, float x) {
  if (x <= val[0]) return 0;
  if (!(x < val[n - 1])) return n - 1;  // x >= max, or NaN
  int ml = 0;
  for (int j = 1; j < n - 1; ++j) ml += val[j] <= x;
  return x - val[ml] < val[ml + 1] - x ? ml : ml + 1;
}
SAMQ_HD inline float qx_weight(const float* qw, int rmse_type, const float* x, int i) {
  if (qw) return qw[i];
  switch (rmse_type) {
    case 1: return x[i] * x[i];
    case 2: return 1;
    case 3: return hd::fabs(x[i]);
    default: return hd::sqrt(hd::fabs(x[i]));
  }
}

SAMQ_HD inline int clampi(int v, int lo, int hi) { return hd::max(lo, hd::min(hi, v)); }

// Element of largest magnitude (first one on ties), with its sign.
SAMQ_HD inline float signed_absmax(int n, const float* x, float* amax_out) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = hd::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  *amax_out = amax;
  return max;
}


// (a) symmetric search. Codes L in [0, 2*nmax) (offset +nmax). rmse_type: 0 plain rounding,
// 1 weights x^2, 2 ones, 3 |x|, other sqrt|x|; negative returns early (see §3.2). qw overrides.
SAMQ_HD inline float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw) {
  float amax;
  const float max = signed_absmax(n, x, &amax);
  if (amax < kGroupMaxEps) {
    hd::fill(L, n, int8_t(0));
    return 0.f;
  }
  float iscale = -nmax / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i) L[i] = int8_t(nmax + clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
    return 1 / iscale;
  }
  bool return_early = false;
  if (rmse_type < 0) {
    rmse_type = -rmse_type;
    return_early = true;
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = int8_t(l + nmax);
    const float w = qx_weight(qw, rmse_type, x, i);
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = qx_weight(qw, rmse_type, x, i);
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i)
        L[i] = int8_t(nmax + clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// (b) 3-bit coordinate descent (Q3_K ref). Codes offset +nmax.
SAMQ_HD inline float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse) {
  float amax;
  const float max = signed_absmax(n, x, &amax);
  if (amax < kGroupMaxEps) {
    hd::fill(L, n, int8_t(0));
    return 0.f;
  }
  const float iscale = -nmax / max;
  if (!do_rmse) {
    for (int i = 0; i < n; ++i) L[i] = int8_t(clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1) + nmax);
    return 1 / iscale;
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = int8_t(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (slx > 0) {
        float sl2 = suml2 - w * L[i] * L[i];
        const int new_l = clampi(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = int8_t(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}


// Shared body of the affine searches; `weight(i)` yields the element weight. `strict_equal`
// selects qkx2's degenerate test (max == min) over qkx3's (max <= min): identical in practice.
template <typename WeightFn>
SAMQ_HD inline float affine_search(int n, int nmax, const float* x, WeightFn weight, uint8_t* L, float* the_min,
                    uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weight(0);
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weight(i);
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max <= min) {
    hd::fill(L, n, uint8_t(0));
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = uint8_t(clampi(l, 0, nmax));
    float diff = scale * L[i] + min - x[i];
    diff = use_mad ? hd::fabs(diff) : diff * diff;
    best_error += weight(i) * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
      Laux[i] = uint8_t(l);
      const float w = weight(i);
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = use_mad ? hd::fabs(diff) : diff * diff;
        cur_error += weight(i) * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}


// (c) affine search, weights required. Returns the scale, *the_min = positive min.
// Note (not in ggml-formats.md §3.2): when a step's candidate wins, its fitted offset replaces
// the running min, and later steps grid from it (iscale = (...)/(max - min), codes from
// x - min), exactly as ggml's loop does.
SAMQ_HD inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad) {
  return affine_search(n, nmax, x, [weights](int i) { return weights[i]; }, L, the_min, Laux,
                       rmin, rdelta, nstep, use_mad);
}

// (c) variant: weights may be null (then x^2).
SAMQ_HD inline float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad) {
  if (weights)
    return affine_search(n, nmax, x, [weights](int i) { return weights[i]; }, L, the_min, Laux,
                         rmin, rdelta, nstep, use_mad);
  return affine_search(n, nmax, x, [x](int i) { return x[i] * x[i]; }, L, the_min, Laux, rmin,
                       rdelta, nstep, use_mad);
}

// (d) quantize non-negative scales x to 0..nmax with one multiplier (returned).
SAMQ_HD inline float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = hd::max(max, x[i]);
  if (max < kGroupMaxEps) {
    hd::fill(L, n, uint8_t(0));
    return 0.f;
  }
  float iscale = nmax / max;
  for (int i = 0; i < n; ++i) L[i] = uint8_t(nearest_int(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * L[i];
    best_mse += quant_weights[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * is + nmax) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const int l = hd::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * l;
      mse += quant_weights[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = hd::min(nmax, nearest_int(iscale * x[i]));
    L[i] = uint8_t(l);
    const float w = quant_weights[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = quant_weights[i];
      float slx = sumlx - w * x[i] * L[i];
      float sl2 = suml2 - w * L[i] * L[i];
      if (slx > 0 && sl2 > 0) {
        const int new_l = hd::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = uint8_t(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Best scale of one 32-element block: start at d = max/127, then keep the best of the inverse
// scales (k - 127)/max, k = -7..7, by weighted fit quality (sum w q x)^2 / (sum w q^2).
// 0 for a block whose maximum is below kGroupMaxEps.
SAMQ_HD inline float iq4_block_scale(const float* xb, const float* weight) {
  const Iq4Table table = iq4nl_table();
  const int8_t* values = table.v;
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j) {
    const float ax = hd::fabs(xb[j]);
    if (ax > amax) {
      amax = ax;
      max = xb[j];
    }
  }
  if (amax < kGroupMaxEps) return 0;
  float d = -max / values[0];
  float id = 1 / d;
  float sumqx = 0, sumq2 = 0;
  for (int j = 0; j < 32; ++j) {
    const float q = values[best_index_int8(16, values, id * xb[j])];
    const float w = weight[j];
    sumqx += w * q * xb[j];
    sumq2 += w * q * q;
  }
  d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
  float best = d * sumqx;
  for (int itry = -kIq4Ntry; itry <= kIq4Ntry; ++itry) {
    id = (itry + values[0]) / max;
    sumqx = sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
      const float q = values[best_index_int8(16, values, id * xb[j])];
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

}  // namespace samq::quant_detail
