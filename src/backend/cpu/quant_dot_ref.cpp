// Scalar reference kernels of quant_dot.h: one weight row against one activation row per call,
// integer sums per (sub-)block exactly as ggml forms them, float accumulation over blocks in
// order. The SIMD variants (quant_dot_avx2.cpp, quant_dot_avx512.cpp) are tested against these.
#include <cstring>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/quant_dot_kernels.h"
#include "core/fp16.h"
#include "quant/blocks.h"

namespace samq::cpu::qdot {
namespace {

inline float h2f(uint16_t h) { return fp16_to_f32(h); }

// 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (ggml-formats.md §2.6).
inline void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q3_K 6-bit scale j (-32..31).
inline int q3_scale(const uint8_t* s, int j) {
  const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
  return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

// Sum over the 8 sub-blocks of 32 of m_j * (bsums of the sub-block).
inline int k4_min_sum(const uint8_t* scales, const int16_t* bsums, int* sc) {
  int msum = 0;
  for (int j = 0; j < 8; ++j) {
    int m;
    scale_min_k4(j, scales, sc[j], m);
    msum += m * (bsums[2 * j] + bsums[2 * j + 1]);
  }
  return msum;
}

float dot_q4_K(const block_q4_K* w, const block_q8_K* x, int64_t nb) {
  float sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int sc[8];
    const int msum = k4_min_sum(w[b].scales, x[b].bsums, sc);
    int isum = 0;
    for (int c = 0; c < 4; ++c) {  // 64 values: low nibbles then high nibbles of 32 bytes
      int lo = 0, hi = 0;
      for (int l = 0; l < 32; ++l) {
        lo += int(w[b].qs[32 * c + l] & 0xF) * int(x[b].qs[64 * c + l]);
        hi += int(w[b].qs[32 * c + l] >> 4) * int(x[b].qs[64 * c + 32 + l]);
      }
      isum += sc[2 * c] * lo + sc[2 * c + 1] * hi;
    }
    sum += h2f(w[b].d) * x[b].d * float(isum) - h2f(w[b].dmin) * x[b].d * float(msum);
  }
  return sum;
}

float dot_q5_K(const block_q5_K* w, const block_q8_K* x, int64_t nb) {
  float sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int sc[8];
    const int msum = k4_min_sum(w[b].scales, x[b].bsums, sc);
    int isum = 0;
    for (int c = 0; c < 4; ++c) {
      int lo = 0, hi = 0;
      for (int l = 0; l < 32; ++l) {
        const int h = w[b].qh[l] >> (2 * c);
        lo += int((w[b].qs[32 * c + l] & 0xF) | ((h & 1) << 4)) * int(x[b].qs[64 * c + l]);
        hi += int((w[b].qs[32 * c + l] >> 4) | ((h & 2) << 3)) * int(x[b].qs[64 * c + 32 + l]);
      }
      isum += sc[2 * c] * lo + sc[2 * c + 1] * hi;
    }
    sum += h2f(w[b].d) * x[b].d * float(isum) - h2f(w[b].dmin) * x[b].d * float(msum);
  }
  return sum;
}

float dot_q6_K(const block_q6_K* w, const block_q8_K* x, int64_t nb) {
  float sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int8_t q[QK_K];
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = w[b].ql + 64 * h;
      const uint8_t* qh = w[b].qh + 32 * h;
      int8_t* o = q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        o[l] = int8_t(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        o[l + 32] = int8_t(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        o[l + 64] = int8_t(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        o[l + 96] = int8_t(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    int isum = 0;
    for (int k = 0; k < QK_K / 16; ++k) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += int(q[16 * k + i]) * int(x[b].qs[16 * k + i]);
      isum += int(w[b].scales[k]) * s;
    }
    sum += h2f(w[b].d) * x[b].d * float(isum);
  }
  return sum;
}

// Q2_K / Q3_K element e: h = e/128, g = (e%128)/32, l = e%32; 2 low bits at qs[32h+l] >> 2g.
float dot_q2_K(const block_q2_K* w, const block_q8_K* x, int64_t nb) {
  float sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0, msum = 0;
    for (int k = 0; k < QK_K / 16; ++k) {
      int s = 0;
      for (int i = 0; i < 16; ++i) {
        const int e = 16 * k + i, h = e / 128, g = (e % 128) / 32, l = e % 32;
        s += ((w[b].qs[32 * h + l] >> (2 * g)) & 3) * int(x[b].qs[e]);
      }
      isum += (w[b].scales[k] & 0xF) * s;
      msum += (w[b].scales[k] >> 4) * x[b].bsums[k];
    }
    sum += h2f(w[b].d) * x[b].d * float(isum) - h2f(w[b].dmin) * x[b].d * float(msum);
  }
  return sum;
}

float dot_q3_K(const block_q3_K* w, const block_q8_K* x, int64_t nb) {
  float sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0;
    for (int k = 0; k < QK_K / 16; ++k) {
      int s = 0;
      for (int i = 0; i < 16; ++i) {
        const int e = 16 * k + i, h = e / 128, g = (e % 128) / 32, l = e % 32;
        const int low = (w[b].qs[32 * h + l] >> (2 * g)) & 3;
        const int hbit = (w[b].hmask[l] >> (e / 32)) & 1;
        s += (low - (hbit ? 0 : 4)) * int(x[b].qs[e]);
      }
      isum += q3_scale(w[b].scales, k) * s;
    }
    sum += h2f(w[b].d) * x[b].d * float(isum);
  }
  return sum;
}

float dot_iq4_xs(const block_iq4_xs* w, const block_q8_K* x, int64_t nb) {
  float sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const int ls = ((w[b].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((w[b].scales_h >> 2 * ib) & 3) << 4);
      const uint8_t* qs = w[b].qs + 16 * ib;
      const int8_t* q8 = x[b].qs + 32 * ib;
      int s = 0;
      for (int j = 0; j < 16; ++j)
        s += kvalues_iq4nl[qs[j] & 0xf] * int(q8[j]) + kvalues_iq4nl[qs[j] >> 4] * int(q8[j + 16]);
      isum += (ls - 32) * s;
    }
    sum += h2f(w[b].d) * x[b].d * float(isum);
  }
  return sum;
}

float dot_q8_0(const block_q8_0* w, const block_q8_0* x, int64_t nb) {
  float sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int s = 0;
    for (int i = 0; i < QK8_0; ++i) s += int(w[b].qs[i]) * int(x[b].qs[i]);
    sum += h2f(w[b].d) * h2f(x[b].d) * float(s);
  }
  return sum;
}

float dot_q4_0(const block_q4_0* w, const block_q8_0* x, int64_t nb) {
  float sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int s = 0;
    for (int j = 0; j < 16; ++j)
      s += ((w[b].qs[j] & 0xF) - 8) * int(x[b].qs[j]) + ((w[b].qs[j] >> 4) - 8) * int(x[b].qs[j + 16]);
    sum += h2f(w[b].d) * h2f(x[b].d) * float(s);
  }
  return sum;
}

float dot_q5_0(const block_q5_0* w, const block_q8_0* x, int64_t nb) {
  float sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    uint32_t qh;
    std::memcpy(&qh, w[b].qh, 4);
    int s = 0;
    for (int j = 0; j < 16; ++j) {
      const int v0 = ((w[b].qs[j] & 0xF) | int((qh >> j) & 1) << 4) - 16;
      const int v1 = ((w[b].qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4) - 16;
      s += v0 * int(x[b].qs[j]) + v1 * int(x[b].qs[j + 16]);
    }
    sum += h2f(w[b].d) * h2f(x[b].d) * float(s);
  }
  return sum;
}

float dot_iq4_nl(const block_iq4_nl* w, const block_q8_0* x, int64_t nb) {
  float sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int s = 0;
    for (int j = 0; j < 16; ++j)
      s += kvalues_iq4nl[w[b].qs[j] & 0xF] * int(x[b].qs[j]) + kvalues_iq4nl[w[b].qs[j] >> 4] * int(x[b].qs[j + 16]);
    sum += h2f(w[b].d) * h2f(x[b].d) * float(s);
  }
  return sum;
}

float dot_q4_1(const block_q4_1* w, const block_q8_1* x, int64_t nb) {
  float sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int s = 0;
    for (int j = 0; j < 16; ++j)
      s += (w[b].qs[j] & 0xF) * int(x[b].qs[j]) + (w[b].qs[j] >> 4) * int(x[b].qs[j + 16]);
    sum += h2f(w[b].d) * h2f(x[b].d) * float(s) + h2f(w[b].m) * h2f(x[b].s);
  }
  return sum;
}

float dot_q5_1(const block_q5_1* w, const block_q8_1* x, int64_t nb) {
  float sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    uint32_t qh;
    std::memcpy(&qh, w[b].qh, 4);
    int s = 0;
    for (int j = 0; j < 16; ++j) {
      const int v0 = (w[b].qs[j] & 0xF) | int((qh >> j) & 1) << 4;
      const int v1 = (w[b].qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4;
      s += v0 * int(x[b].qs[j]) + v1 * int(x[b].qs[j + 16]);
    }
    sum += h2f(w[b].d) * h2f(x[b].d) * float(s) + h2f(w[b].m) * h2f(x[b].s);
  }
  return sum;
}

// Float types: nb = number of values.
float dot_f32(const float* w, const float* x, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += w[i] * x[i];
  return sum;
}
float dot_f16(const uint16_t* w, const uint16_t* x, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += fp16_to_f32(w[i]) * fp16_to_f32(x[i]);
  return sum;
}
float dot_bf16(const uint16_t* w, const uint16_t* x, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += bf16_to_f32(w[i]) * bf16_to_f32(x[i]);
  return sum;
}

template <class W, class X, float (*F)(const W*, const X*, int64_t)>
void rows(const Args& a) {
  for (int64_t r = 0; r < a.nrows; ++r) {
    const W* w = reinterpret_cast<const W*>(a.w + r * a.row_bytes);
    for (int64_t t = 0; t < a.n_tok; ++t)
      a.y[t * a.y_stride + r] = F(w, reinterpret_cast<const X*>(a.x + t * a.x_bytes), a.nb);
  }
}

}  // namespace

Kernel kernel_ref(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return rows<float, float, dot_f32>;
    case GgmlType::F16: return rows<uint16_t, uint16_t, dot_f16>;
    case GgmlType::BF16: return rows<uint16_t, uint16_t, dot_bf16>;
    case GgmlType::Q4_0: return rows<block_q4_0, block_q8_0, dot_q4_0>;
    case GgmlType::Q4_1: return rows<block_q4_1, block_q8_1, dot_q4_1>;
    case GgmlType::Q5_0: return rows<block_q5_0, block_q8_0, dot_q5_0>;
    case GgmlType::Q5_1: return rows<block_q5_1, block_q8_1, dot_q5_1>;
    case GgmlType::Q8_0: return rows<block_q8_0, block_q8_0, dot_q8_0>;
    case GgmlType::Q2_K: return rows<block_q2_K, block_q8_K, dot_q2_K>;
    case GgmlType::Q3_K: return rows<block_q3_K, block_q8_K, dot_q3_K>;
    case GgmlType::Q4_K: return rows<block_q4_K, block_q8_K, dot_q4_K>;
    case GgmlType::Q5_K: return rows<block_q5_K, block_q8_K, dot_q5_K>;
    case GgmlType::Q6_K: return rows<block_q6_K, block_q8_K, dot_q6_K>;
    case GgmlType::IQ4_NL: return rows<block_iq4_nl, block_q8_0, dot_iq4_nl>;
    case GgmlType::IQ4_XS: return rows<block_iq4_xs, block_q8_K, dot_iq4_xs>;
    default: return nullptr;
  }
}

}  // namespace samq::cpu::qdot
