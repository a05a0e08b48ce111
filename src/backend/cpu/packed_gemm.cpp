// Repacking of quantized weights into 16-row int8 tiles, activation layout, and the scalar
// reference kernel of packed_gemm.h. The AVX-512 VNNI kernel is in packed_gemm_avx512.cpp.
#include "backend/cpu/packed_gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/quant_dot.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/parallel.h"
#include "quant/blocks.h"

namespace samq::cpu {
namespace {

inline float h2f(uint16_t h) { return fp16_to_f32(h); }

// kvalues_iq4nl + 128 (the IQ4 codes as unsigned bytes).
constexpr uint8_t kIq4u[16] = {1, 24, 45, 63, 79, 93, 106, 118, 129, 141, 153, 166, 181, 197, 217, 241};
static_assert(kIq4u[0] == kvalues_iq4nl[0] + 128 && kIq4u[15] == kvalues_iq4nl[15] + 128);

// Per-type shape of the packed form.
struct PackShape {
  int S, SB, off;
  bool has_min;
};
bool shape_of(GgmlType t, PackShape& s) {
  switch (t) {
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: s = {32, QK_K, 0, true}; return true;
    case GgmlType::Q2_K: s = {16, QK_K, 0, true}; return true;
    case GgmlType::Q3_K: s = {16, QK_K, 4, false}; return true;
    case GgmlType::Q6_K: s = {16, QK_K, 32, false}; return true;
    case GgmlType::IQ4_XS: s = {32, QK_K, 128, false}; return true;
    case GgmlType::Q8_0:
    case GgmlType::IQ4_NL: s = {32, 32, 128, false}; return true;
    case GgmlType::Q4_0: s = {32, 32, 8, false}; return true;
    case GgmlType::Q5_0: s = {32, 32, 16, false}; return true;
    default: return false;
  }
}

// One superblock of the weight row: codes u[SB], sub-block scales isc[J] and mins im[J] (small
// integers), d and dmin, so that dequantized = (d * isc[j]) * (u - off) - dmin * im[j] (both
// products exact in float). Mirrors ggml's dequantize_row_* (ggml-formats.md §2).
struct Dec {
  float d = 0, dmin = 0;
  int isc[16] = {}, im[16] = {};
};
void decode_block(GgmlType t, const uint8_t* blk, uint8_t* u, Dec& o) {
  switch (t) {
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: {
      const bool five = t == GgmlType::Q5_K;
      const uint16_t d16 = five ? reinterpret_cast<const block_q5_K*>(blk)->d : reinterpret_cast<const block_q4_K*>(blk)->d;
      const uint16_t m16 =
          five ? reinterpret_cast<const block_q5_K*>(blk)->dmin : reinterpret_cast<const block_q4_K*>(blk)->dmin;
      const uint8_t* s = five ? reinterpret_cast<const block_q5_K*>(blk)->scales : reinterpret_cast<const block_q4_K*>(blk)->scales;
      const uint8_t* qs = five ? reinterpret_cast<const block_q5_K*>(blk)->qs : reinterpret_cast<const block_q4_K*>(blk)->qs;
      const uint8_t* qh = five ? reinterpret_cast<const block_q5_K*>(blk)->qh : nullptr;
      o.d = h2f(d16);
      o.dmin = h2f(m16);
      for (int j = 0; j < 8; ++j) {
        int scj, mj;
        if (j < 4) {
          scj = s[j] & 63;
          mj = s[j + 4] & 63;
        } else {
          scj = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
          mj = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
        o.isc[j] = scj;
        o.im[j] = mj;
      }
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) {
          u[64 * c + l] = qs[32 * c + l] & 0xF;
          u[64 * c + 32 + l] = qs[32 * c + l] >> 4;
          if (five) {
            u[64 * c + l] |= ((qh[l] >> (2 * c)) & 1) << 4;
            u[64 * c + 32 + l] |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
          }
        }
      return;
    }
    case GgmlType::Q6_K: {
      const auto* b = reinterpret_cast<const block_q6_K*>(blk);
      o.d = h2f(b->d);
      for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = b->ql + 64 * h;
        const uint8_t* qh = b->qh + 32 * h;
        uint8_t* o = u + 128 * h;
        for (int l = 0; l < 32; ++l) {
          o[l] = uint8_t((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4));
          o[l + 32] = uint8_t((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
          o[l + 64] = uint8_t((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
          o[l + 96] = uint8_t((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
      }
      for (int k = 0; k < 16; ++k) o.isc[k] = b->scales[k];
      return;
    }
    case GgmlType::Q2_K: {
      const auto* b = reinterpret_cast<const block_q2_K*>(blk);
      o.d = h2f(b->d);
      o.dmin = h2f(b->dmin);
      for (int e = 0; e < QK_K; ++e) {
        const int h = e / 128, g = (e % 128) / 32, l = e % 32;
        u[e] = (b->qs[32 * h + l] >> (2 * g)) & 3;
      }
      for (int k = 0; k < 16; ++k) {
        o.isc[k] = b->scales[k] & 0xF;
        o.im[k] = b->scales[k] >> 4;
      }
      return;
    }
    case GgmlType::Q3_K: {
      const auto* b = reinterpret_cast<const block_q3_K*>(blk);
      o.d = h2f(b->d);
      for (int e = 0; e < QK_K; ++e) {
        const int h = e / 128, g = (e % 128) / 32, l = e % 32;
        const int low = (b->qs[32 * h + l] >> (2 * g)) & 3;
        const int hbit = (b->hmask[l] >> (e / 32)) & 1;
        u[e] = uint8_t(low | (hbit << 2));  // value low - (hbit ? 0 : 4) = u - 4
      }
      for (int k = 0; k < 16; ++k) {
        const int lo = k < 8 ? b->scales[k] & 0xF : b->scales[k - 8] >> 4;
        const int s = (lo | (((b->scales[8 + k % 4] >> (2 * (k / 4))) & 3) << 4)) - 32;
        o.isc[k] = s;
      }
      return;
    }
    case GgmlType::IQ4_XS: {
      const auto* b = reinterpret_cast<const block_iq4_xs*>(blk);
      o.d = h2f(b->d);
      for (int ib = 0; ib < 8; ++ib) {
        const int ls = ((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b->scales_h >> 2 * ib) & 3) << 4);
        o.isc[ib] = ls - 32;
        const uint8_t* qs = b->qs + 16 * ib;
        for (int j = 0; j < 16; ++j) {
          u[32 * ib + j] = uint8_t(kvalues_iq4nl[qs[j] & 0xf] + 128);
          u[32 * ib + j + 16] = uint8_t(kvalues_iq4nl[qs[j] >> 4] + 128);
        }
      }
      return;
    }
    case GgmlType::Q8_0: {
      const auto* b = reinterpret_cast<const block_q8_0*>(blk);
      o.d = h2f(b->d);
      o.isc[0] = 1;
      for (int l = 0; l < 32; ++l) u[l] = uint8_t(int(b->qs[l]) + 128);
      return;
    }
    case GgmlType::IQ4_NL: {
      const auto* b = reinterpret_cast<const block_iq4_nl*>(blk);
      o.d = h2f(b->d);
      o.isc[0] = 1;
      for (int l = 0; l < 16; ++l) {
        u[l] = uint8_t(kvalues_iq4nl[b->qs[l] & 0xF] + 128);
        u[l + 16] = uint8_t(kvalues_iq4nl[b->qs[l] >> 4] + 128);
      }
      return;
    }
    case GgmlType::Q4_0: {
      const auto* b = reinterpret_cast<const block_q4_0*>(blk);
      o.d = h2f(b->d);
      o.isc[0] = 1;
      for (int l = 0; l < 16; ++l) {
        u[l] = b->qs[l] & 0xF;
        u[l + 16] = b->qs[l] >> 4;
      }
      return;
    }
    case GgmlType::Q5_0: {
      const auto* b = reinterpret_cast<const block_q5_0*>(blk);
      o.d = h2f(b->d);
      o.isc[0] = 1;
      uint32_t qh;
      std::memcpy(&qh, b->qh, 4);
      for (int l = 0; l < 16; ++l) {
        u[l] = uint8_t((b->qs[l] & 0xF) | (((qh >> l) & 1) << 4));
        u[l + 16] = uint8_t((b->qs[l] >> 4) | (((qh >> (l + 16)) & 1) << 4));
      }
      return;
    }
    default: fail("pack_weight: no packed form for {}", ggml_type_name(t));
  }
}

}  // namespace

bool packable(GgmlType t) {
  PackShape s;
  return shape_of(t, s);
}

bool packed_simd_supported() {
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
  }();
  return ok;
}

bool repack_enabled() {
  const char* env = std::getenv("SAMQ_REPACK");
  if (env && !std::strcmp(env, "0")) return false;
  return packed_simd_supported();
}

std::unique_ptr<PackedWeight> pack_weight(const WeightView& w) {
  PackShape s;
  if (!shape_of(w.type, s) || w.rows <= 0 || w.cols <= 0 || w.cols % s.SB || !w.data) return nullptr;
  auto p = std::make_unique<PackedWeight>();
  p->type = w.type;
  p->rows = w.rows;
  p->cols = w.cols;
  p->S = s.S;
  p->SB = s.SB;
  p->J = s.SB / s.S;
  p->off = s.off;
  p->has_min = s.has_min;
  // IQ4: codes kvalues_iq4nl[i] + 128 stored as the index i, looked up by the kernels.
  p->lut = w.type == GgmlType::IQ4_XS || w.type == GgmlType::IQ4_NL;
  p->nib = p->lut || w.type == GgmlType::Q4_K || w.type == GgmlType::Q4_0 || w.type == GgmlType::Q2_K ||
           w.type == GgmlType::Q3_K;  // codes < 16
  p->groups = (w.rows + kPackRows - 1) / kPackRows;
  p->nsb = w.cols / s.SB;
  p->off_sc = int64_t(s.SB) * kPackRows / (p->nib ? 2 : 1);
  p->off_min = p->off_sc + (p->J > 1 ? p->J * kPackRows : 0);
  p->off_d = p->off_min + (s.has_min ? p->J * kPackRows * 2 : 0);
  p->sb_bytes = (p->off_d + 4 * kPackRows * (s.has_min ? 2 : 1) + 63) / 64 * 64;
  p->storage.assign(size_t(p->groups * p->nsb * p->sb_bytes + 64), 0);
  p->base = p->storage.data() + ((64 - (reinterpret_cast<uintptr_t>(p->storage.data()) & 63)) & 63);
  const int64_t blk_bytes = ggml_row_size(w.type, s.SB);
  const PackedWeight& P = *p;
  parallel_for(P.groups, 4, [&](int64_t g0, int64_t g1) {
    std::vector<uint8_t> u(size_t(P.SB));
    for (int64_t g = g0; g < g1; ++g)
      for (int64_t r = g * kPackRows; r < std::min(P.rows, (g + 1) * kPackRows); ++r) {
        const int64_t lane = r - g * kPackRows;
        const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * w.row_bytes;
        for (int64_t b = 0; b < P.nsb; ++b) {
          Dec dec;
          decode_block(P.type, row + b * blk_bytes, u.data(), dec);
          uint8_t* dst = const_cast<uint8_t*>(P.block(g, b));
          for (int kg = 0; kg < P.SB / 4; ++kg)
            for (int i = 0; i < 4; ++i) {
              uint8_t c = u[4 * kg + i];
              if (P.lut) c = uint8_t(std::find(kIq4u, kIq4u + 16, c) - kIq4u);
              if (P.nib)
                dst[((kg / 2) * kPackRows + lane) * 4 + i] |= uint8_t(kg % 2 ? c << 4 : c);
              else
                dst[(kg * kPackRows + lane) * 4 + i] = c;
            }
          for (int j = 0; j < P.J && P.J > 1; ++j) dst[P.off_sc + j * kPackRows + lane] = uint8_t(int8_t(dec.isc[j]));
          // mins as int16 pairs (m_2p, m_2p+1) per row: [J/2][16 rows][2]
          for (int j = 0; j < P.J && P.has_min; ++j) {
            const int16_t m = int16_t(dec.im[j]);
            std::memcpy(dst + P.off_min + (((j / 2) * kPackRows + lane) * 2 + j % 2) * 2, &m, 2);
          }
          float* dv = reinterpret_cast<float*>(dst + P.off_d);
          dv[lane] = dec.d;
          if (P.has_min) dv[kPackRows + lane] = dec.dmin;
        }
      }
  });
  return p;
}

// Layout accessors (same arithmetic as the AVX-512 kernel).
int packed_code(const PackedWeight& p, const uint8_t* blk, int64_t lane, int e) {
  const int kg = e / 4, i = e % 4;
  if (p.nib) {
    const int c = (blk[((kg / 2) * kPackRows + lane) * 4 + i] >> (4 * (kg % 2))) & 0xF;
    return p.lut ? kIq4u[c] : c;
  }
  return blk[(kg * kPackRows + lane) * 4 + i];
}
float packed_scale(const PackedWeight& p, const uint8_t* blk, int64_t lane, int j) {
  const float d = reinterpret_cast<const float*>(blk + p.off_d)[lane];
  return p.J > 1 ? d * float(int8_t(blk[p.off_sc + j * kPackRows + lane])) : d;
}
int packed_imin(const PackedWeight& p, const uint8_t* blk, int64_t lane, int j) {
  int16_t m;
  std::memcpy(&m, blk + p.off_min + (((j / 2) * kPackRows + lane) * 2 + j % 2) * 2, 2);
  return m;
}
int packed_isc(const PackedWeight& p, const uint8_t* blk, int64_t lane, int j) {
  return p.J > 1 ? int(int8_t(blk[p.off_sc + j * kPackRows + lane])) : 1;
}
float packed_min(const PackedWeight& p, const uint8_t* blk, int64_t lane, int j) {
  if (!p.has_min) return 0.0f;
  const float dmin = reinterpret_cast<const float*>(blk + p.off_d)[kPackRows + lane];
  return dmin * float(packed_imin(p, blk, lane, j));
}

void packed_dequant_row(const PackedWeight& p, int64_t r, float* out) {
  const int64_t g = r / kPackRows, lane = r % kPackRows;
  for (int64_t b = 0; b < p.nsb; ++b) {
    const uint8_t* blk = p.block(g, b);
    for (int j = 0; j < p.J; ++j)
      for (int i = 0; i < p.S; ++i)
        out[b * p.SB + j * p.S + i] =
            packed_scale(p, blk, lane, j) * float(packed_code(p, blk, lane, j * p.S + i) - p.off) -
            packed_min(p, blk, lane, j);
  }
}

void pack_activations(const PackedWeight& p, const float* x, int64_t n, PackedActs& a) {
  const int64_t cols = p.cols;
  a.n = n;
  a.cols = cols;
  a.nsb = p.nsb;
  a.nsub = p.nsb * p.J;
  a.q.resize(size_t(n * cols));
  a.d.resize(size_t(n * a.nsb));
  a.xoff.resize(size_t(n * a.nsub));
  a.xpair.resize(p.has_min ? size_t(n * a.nsub / 2) : 0);
  const bool k_act = act_type_for(p.type) == ActType::Q8_K;
  auto run = [&](int64_t t0, int64_t t1) {
    std::vector<block_q8_K> bk(k_act ? size_t(a.nsb) : 0);
    std::vector<block_q8_0> b0(k_act ? 0 : size_t(a.nsb));
    for (int64_t t = t0; t < t1; ++t) {
      int8_t* q = a.q.data() + t * cols;
      float* d = a.d.data() + t * a.nsb;
      int32_t* xo = a.xoff.data() + t * a.nsub;
      int32_t* xp = p.has_min ? a.xpair.data() + t * a.nsub / 2 : nullptr;
      if (k_act) {
        quantize_row_q8_K(x + t * cols, bk.data(), cols);
        for (int64_t b = 0; b < a.nsb; ++b) {
          std::memcpy(q + b * QK_K, bk[b].qs, QK_K);
          d[b] = bk[b].d;
          for (int j = 0; j < p.J; ++j) {
            int s = 0;
            for (int k = j * p.S / 16; k < (j + 1) * p.S / 16; ++k) s += bk[b].bsums[k];
            xo[b * p.J + j] = -p.off * s;
            // |s| <= 32 * 127: fits int16
            if (xp) {
              const int16_t s16 = int16_t(s);
              std::memcpy(reinterpret_cast<uint8_t*>(xp) + 2 * (b * p.J + j), &s16, 2);
            }
          }
        }
      } else {
        quantize_row_q8_0(x + t * cols, b0.data(), cols);
        for (int64_t b = 0; b < a.nsb; ++b) {
          std::memcpy(q + b * QK8_0, b0[b].qs, QK8_0);
          d[b] = h2f(b0[b].d);
          int s = 0;
          for (int l = 0; l < QK8_0; ++l) s += b0[b].qs[l];
          xo[b] = -p.off * s;
        }
      }
    }
  };
  if (n >= 32)
    parallel_for(n, 16, run);
  else
    run(0, n);
}

// Same arithmetic as the AVX-512 kernel, one (row, token) at a time: as ggml's vec_dot, exact
// integer sums per superblock (sc_j * sum_j, m_j * xsum_j), then d * xd * isum - dmin * xd * msum.
void packed_gemm_ref(const PackedWeight& p, const PackedActs& a, int64_t g0, int64_t g1, int64_t t0, int64_t t1,
                     float* y, int64_t y_stride) {
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t lane = 0; lane < kPackRows; ++lane) {
      const int64_t r = g * kPackRows + lane;
      if (r >= p.rows) break;
      for (int64_t t = t0; t < t1; ++t) {
        const int8_t* q = a.q.data() + t * a.cols;
        float acc = 0;
        for (int64_t b = 0; b < p.nsb; ++b) {
          const uint8_t* blk = p.block(g, b);
          int32_t isum = 0, msum = 0;
          for (int j = 0; j < p.J; ++j) {
            int32_t s = a.xoff[t * a.nsub + b * p.J + j];
            for (int i = 0; i < p.S; ++i)
              s += int32_t(packed_code(p, blk, lane, j * p.S + i)) * int32_t(q[b * p.SB + j * p.S + i]);
            isum += packed_isc(p, blk, lane, j) * s;
            if (p.has_min) {
              int16_t xs;
              std::memcpy(&xs, reinterpret_cast<const uint8_t*>(a.xpair.data() + t * a.nsub / 2) + 2 * (b * p.J + j), 2);
              msum += packed_imin(p, blk, lane, j) * int32_t(xs);
            }
          }
          const float* dv = reinterpret_cast<const float*>(blk + p.off_d);
          const float xd = a.d[t * a.nsb + b];
          acc += dv[lane] * xd * float(isum);
          if (p.has_min) acc += dv[kPackRows + lane] * -xd * float(msum);
        }
        y[t * y_stride + r] = acc;
      }
    }
}

void packed_gemm(const PackedWeight& p, const PackedActs& a, int64_t g0, int64_t g1, int64_t t0, int64_t t1,
                 float* y, int64_t y_stride) {
  if (packed_simd_supported())
    packed_gemm_avx512(p, a, g0, g1, t0, t1, y, y_stride);
  else
    packed_gemm_ref(p, a, g0, g1, t0, t1, y, y_stride);
}

}  // namespace samq::cpu
