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

// One superblock of the weight row: codes u[SB] (dequantized = scale[j] * (u - off) - min[j]),
// scale[J], min[J]. Mirrors ggml's dequantize_row_* (ggml-formats.md §2).
void decode_block(GgmlType t, const uint8_t* blk, uint8_t* u, float* sc, float* mn) {
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
      const float d = h2f(d16), dmin = h2f(m16);
      for (int j = 0; j < 8; ++j) {
        int scj, mj;
        if (j < 4) {
          scj = s[j] & 63;
          mj = s[j + 4] & 63;
        } else {
          scj = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
          mj = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
        sc[j] = d * float(scj);
        mn[j] = dmin * float(mj);
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
      const float d = h2f(b->d);
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
      for (int k = 0; k < 16; ++k) sc[k] = d * float(b->scales[k]);
      return;
    }
    case GgmlType::Q2_K: {
      const auto* b = reinterpret_cast<const block_q2_K*>(blk);
      const float d = h2f(b->d), dmin = h2f(b->dmin);
      for (int e = 0; e < QK_K; ++e) {
        const int h = e / 128, g = (e % 128) / 32, l = e % 32;
        u[e] = (b->qs[32 * h + l] >> (2 * g)) & 3;
      }
      for (int k = 0; k < 16; ++k) {
        sc[k] = d * float(b->scales[k] & 0xF);
        mn[k] = dmin * float(b->scales[k] >> 4);
      }
      return;
    }
    case GgmlType::Q3_K: {
      const auto* b = reinterpret_cast<const block_q3_K*>(blk);
      const float d = h2f(b->d);
      for (int e = 0; e < QK_K; ++e) {
        const int h = e / 128, g = (e % 128) / 32, l = e % 32;
        const int low = (b->qs[32 * h + l] >> (2 * g)) & 3;
        const int hbit = (b->hmask[l] >> (e / 32)) & 1;
        u[e] = uint8_t(low | (hbit << 2));  // value low - (hbit ? 0 : 4) = u - 4
      }
      for (int k = 0; k < 16; ++k) {
        const int lo = k < 8 ? b->scales[k] & 0xF : b->scales[k - 8] >> 4;
        const int s = (lo | (((b->scales[8 + k % 4] >> (2 * (k / 4))) & 3) << 4)) - 32;
        sc[k] = d * float(s);
      }
      return;
    }
    case GgmlType::IQ4_XS: {
      const auto* b = reinterpret_cast<const block_iq4_xs*>(blk);
      const float d = h2f(b->d);
      for (int ib = 0; ib < 8; ++ib) {
        const int ls = ((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b->scales_h >> 2 * ib) & 3) << 4);
        sc[ib] = d * float(ls - 32);
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
      sc[0] = h2f(b->d);
      for (int l = 0; l < 32; ++l) u[l] = uint8_t(int(b->qs[l]) + 128);
      return;
    }
    case GgmlType::IQ4_NL: {
      const auto* b = reinterpret_cast<const block_iq4_nl*>(blk);
      sc[0] = h2f(b->d);
      for (int l = 0; l < 16; ++l) {
        u[l] = uint8_t(kvalues_iq4nl[b->qs[l] & 0xF] + 128);
        u[l + 16] = uint8_t(kvalues_iq4nl[b->qs[l] >> 4] + 128);
      }
      return;
    }
    case GgmlType::Q4_0: {
      const auto* b = reinterpret_cast<const block_q4_0*>(blk);
      sc[0] = h2f(b->d);
      for (int l = 0; l < 16; ++l) {
        u[l] = b->qs[l] & 0xF;
        u[l + 16] = b->qs[l] >> 4;
      }
      return;
    }
    case GgmlType::Q5_0: {
      const auto* b = reinterpret_cast<const block_q5_0*>(blk);
      sc[0] = h2f(b->d);
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
  p->groups = (w.rows + kPackRows - 1) / kPackRows;
  p->nsb = w.cols / s.SB;
  p->sb_bytes = int64_t(s.SB) * kPackRows + int64_t(p->J) * kPackRows * 4 * (s.has_min ? 2 : 1);
  p->storage.assign(size_t(p->groups * p->nsb * p->sb_bytes + 64), 0);
  p->base = p->storage.data() + ((64 - (reinterpret_cast<uintptr_t>(p->storage.data()) & 63)) & 63);
  const int64_t blk_bytes = ggml_row_size(w.type, s.SB);
  const PackedWeight& P = *p;
  parallel_for(P.groups, 4, [&](int64_t g0, int64_t g1) {
    std::vector<uint8_t> u(size_t(P.SB));
    std::vector<float> sc(size_t(P.J)), mn(size_t(P.J));
    for (int64_t g = g0; g < g1; ++g)
      for (int64_t r = g * kPackRows; r < std::min(P.rows, (g + 1) * kPackRows); ++r) {
        const int64_t lane = r - g * kPackRows;
        const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * w.row_bytes;
        for (int64_t b = 0; b < P.nsb; ++b) {
          std::fill(mn.begin(), mn.end(), 0.0f);
          decode_block(P.type, row + b * blk_bytes, u.data(), sc.data(), mn.data());
          uint8_t* dst = const_cast<uint8_t*>(P.block(g, b));
          for (int j = 0; j < P.J; ++j)
            for (int k = 0; k < P.S / 4; ++k)
              std::memcpy(dst + ((j * (P.S / 4) + k) * kPackRows + lane) * 4, u.data() + j * P.S + 4 * k, 4);
          float* fs = reinterpret_cast<float*>(dst + int64_t(P.SB) * kPackRows);
          for (int j = 0; j < P.J; ++j) {
            fs[j * kPackRows + lane] = sc[j];
            if (P.has_min) fs[(P.J + j) * kPackRows + lane] = mn[j];
          }
        }
      }
  });
  return p;
}

void packed_dequant_row(const PackedWeight& p, int64_t r, float* out) {
  const int64_t g = r / kPackRows, lane = r % kPackRows;
  for (int64_t b = 0; b < p.nsb; ++b) {
    const uint8_t* blk = p.block(g, b);
    const float* fs = reinterpret_cast<const float*>(blk + int64_t(p.SB) * kPackRows);
    for (int j = 0; j < p.J; ++j)
      for (int i = 0; i < p.S; ++i) {
        const int k = i / 4;
        const int u = blk[((j * (p.S / 4) + k) * kPackRows + lane) * 4 + i % 4];
        const float m = p.has_min ? fs[(p.J + j) * kPackRows + lane] : 0.0f;
        out[b * p.SB + j * p.S + i] = fs[j * kPackRows + lane] * float(u - p.off) - m;
      }
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
  a.xmin.resize(p.has_min ? size_t(n * a.nsub) : 0);
  const bool k_act = act_type_for(p.type) == ActType::Q8_K;
  auto run = [&](int64_t t0, int64_t t1) {
    std::vector<block_q8_K> bk(k_act ? size_t(a.nsb) : 0);
    std::vector<block_q8_0> b0(k_act ? 0 : size_t(a.nsb));
    for (int64_t t = t0; t < t1; ++t) {
      int8_t* q = a.q.data() + t * cols;
      float* d = a.d.data() + t * a.nsb;
      int32_t* xo = a.xoff.data() + t * a.nsub;
      float* xm = p.has_min ? a.xmin.data() + t * a.nsub : nullptr;
      if (k_act) {
        quantize_row_q8_K(x + t * cols, bk.data(), cols);
        for (int64_t b = 0; b < a.nsb; ++b) {
          std::memcpy(q + b * QK_K, bk[b].qs, QK_K);
          d[b] = bk[b].d;
          for (int j = 0; j < p.J; ++j) {
            int s = 0;
            for (int k = j * p.S / 16; k < (j + 1) * p.S / 16; ++k) s += bk[b].bsums[k];
            xo[b * p.J + j] = -p.off * s;
            if (xm) xm[b * p.J + j] = -bk[b].d * float(s);
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
          if (xm) xm[b] = -d[b] * float(s);
        }
      }
    }
  };
  if (n >= 32)
    parallel_for(n, 16, run);
  else
    run(0, n);
}

// Same arithmetic as the AVX-512 kernel, one (row, token) at a time.
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
          const float* fs = reinterpret_cast<const float*>(blk + int64_t(p.SB) * kPackRows);
          float sb = 0;
          for (int j = 0; j < p.J; ++j) {
            int32_t s = a.xoff[t * a.nsub + b * p.J + j];
            for (int i = 0; i < p.S; ++i)
              s += int32_t(blk[((j * (p.S / 4) + i / 4) * kPackRows + lane) * 4 + i % 4]) *
                   int32_t(q[b * p.SB + j * p.S + i]);
            sb += float(s) * fs[j * kPackRows + lane];
            if (p.has_min) acc += fs[(p.J + j) * kPackRows + lane] * a.xmin[t * a.nsub + b * p.J + j];
          }
          acc += sb * a.d[t * a.nsb + b];
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
