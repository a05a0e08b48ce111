#include "backend/cpu/quant_dot.h"

#include "core/fp16.h"

namespace samq::cpu {
namespace {

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

// sum_i d*sc_j*q4_i*d8*q8_i - dmin*m_j*d8*q8_i over the block, integer sums per sub-block.
template <int Dummy>
inline float dot_q4_K_body(const block_q4_K* w, const block_q8_K* x, int64_t n) {
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const uint8_t* qs = w[b].qs;
    const int8_t* q8 = x[b].qs;
    int sums[8];
    for (int c = 0; c < 4; ++c) {  // 64 values: low nibbles then high nibbles of 32 bytes
      int lo = 0, hi = 0;
      for (int l = 0; l < 32; ++l) {
        lo += int(qs[32 * c + l] & 0xF) * int(q8[64 * c + l]);
        hi += int(qs[32 * c + l] >> 4) * int(q8[64 * c + 32 + l]);
      }
      sums[2 * c] = lo;
      sums[2 * c + 1] = hi;
    }
    int isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      scale_min_k4(j, w[b].scales, sc, m);
      isum += sc * sums[j];
      msum += m * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
    }
    const float d = fp16_to_f32(w[b].d) * x[b].d, dmin = fp16_to_f32(w[b].dmin) * x[b].d;
    sum += d * float(isum) - dmin * float(msum);
  }
  return sum;
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"))) float dot_q4_K_avx512(const block_q4_K* w, const block_q8_K* x, int64_t n) {
  return dot_q4_K_body<0>(w, x, n);
}
__attribute__((target("avx2,fma"))) float dot_q4_K_avx2(const block_q4_K* w, const block_q8_K* x, int64_t n) {
  return dot_q4_K_body<1>(w, x, n);
}
float dot_q4_K_plain(const block_q4_K* w, const block_q8_K* x, int64_t n) { return dot_q4_K_body<2>(w, x, n); }

using DotFn = float (*)(const block_q4_K*, const block_q8_K*, int64_t);
DotFn pick() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) return dot_q4_K_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return dot_q4_K_avx2;
  return dot_q4_K_plain;
}

}  // namespace

float dot_q4_K_q8_K(const block_q4_K* w, const block_q8_K* x, int64_t n) {
  static const DotFn f = pick();
  return f(w, x, n);
}

}  // namespace samq::cpu
