// Dequantization and activation rounding kernels (cuda_quant.cuh). One thread per output
// element: each reads its block's header and codes and applies the formula of the CPU's
// dequantize_row_<type> (src/quant/legacy.cpp, q2_k_q3_k.cpp, q4_k_q5_k_q6_k.cpp, iq4.cpp)
// with the same float operations in the same order (no contraction), so the floats are equal.
#include "backend/cuda/cuda_common.cuh"  // first: it includes fmt the way nvcc needs

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <type_traits>

#include "backend/cuda/cuda_quant.cuh"
#include "quant/blocks.h"

namespace samq::cuda {

namespace {

__constant__ int8_t c_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                           1,    13,   25,  38,  53,  69,  89,  113};

__device__ inline float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ inline float bf2f(uint16_t b) { return __uint_as_float(uint32_t(b) << 16); }
// core/fp16.h f32_to_bf16: RNE, NaN quieted as (bits >> 16) | 0x40.
__device__ inline uint16_t f2bf(float f) {
  const uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
// IEEE RNE with overflow to Inf, as core/fp16.h f32_to_fp16.
__device__ inline uint16_t f2h(float f) { return __half_as_ushort(__float2half_rn(f)); }

template <class B>
__device__ inline const B& block_at(const uint8_t* row, int64_t c, int64_t qk) {
  return reinterpret_cast<const B*>(row)[c / qk];
}

// Element c of one row of type T (row: the row's bytes).
template <GgmlType T>
__device__ inline float dequant_elem(const uint8_t* row, int64_t c) {
  if constexpr (T == GgmlType::F32) {
    return reinterpret_cast<const float*>(row)[c];
  } else if constexpr (T == GgmlType::F16) {
    return h2f(reinterpret_cast<const uint16_t*>(row)[c]);
  } else if constexpr (T == GgmlType::BF16) {
    return bf2f(reinterpret_cast<const uint16_t*>(row)[c]);
  } else if constexpr (T == GgmlType::Q4_0) {
    // y = (q - 8) * d; qs[j] low nibble = element j, high = element j + 16
    const auto& b = block_at<block_q4_0>(row, c, QK4_0);
    const int j = int(c % QK4_0);
    const int q = j < 16 ? (b.qs[j] & 0x0F) : (b.qs[j - 16] >> 4);
    return __fmul_rn(float(q - 8), h2f(b.d));
  } else if constexpr (T == GgmlType::Q4_1) {
    const auto& b = block_at<block_q4_1>(row, c, QK4_1);
    const int j = int(c % QK4_1);
    const int q = j < 16 ? (b.qs[j] & 0x0F) : (b.qs[j - 16] >> 4);
    return __fadd_rn(__fmul_rn(float(q), h2f(b.d)), h2f(b.m));
  } else if constexpr (T == GgmlType::Q5_0 || T == GgmlType::Q5_1) {
    using B = std::conditional_t<T == GgmlType::Q5_0, block_q5_0, block_q5_1>;
    const auto& b = block_at<B>(row, c, 32);
    const int j = int(c % 32);
    const uint32_t qh = uint32_t(b.qh[0]) | uint32_t(b.qh[1]) << 8 | uint32_t(b.qh[2]) << 16 | uint32_t(b.qh[3]) << 24;
    const int lo = j < 16 ? (b.qs[j] & 0x0F) : (b.qs[j - 16] >> 4);
    const int q = lo | int((qh >> j) & 1u) << 4;
    if constexpr (T == GgmlType::Q5_0)
      return __fmul_rn(float(q - 16), h2f(b.d));
    else
      return __fadd_rn(__fmul_rn(float(q), h2f(b.d)), h2f(b.m));
  } else if constexpr (T == GgmlType::Q8_0) {
    const auto& b = block_at<block_q8_0>(row, c, QK8_0);
    return __fmul_rn(float(b.qs[c % QK8_0]), h2f(b.d));
  } else if constexpr (T == GgmlType::Q2_K) {
    const auto& b = block_at<block_q2_K>(row, c, QK_K);
    const int e = int(c % QK_K), h = e / 128, g = (e % 128) / 32, l = e % 32;
    const uint8_t sc = b.scales[e / 16];
    const float dl = __fmul_rn(h2f(b.d), float(sc & 0xF));
    const float ml = __fmul_rn(h2f(b.dmin), float(sc >> 4));
    const int q = (b.qs[32 * h + l] >> (2 * g)) & 3;
    return __fsub_rn(__fmul_rn(dl, float(q)), ml);
  } else if constexpr (T == GgmlType::Q3_K) {
    const auto& b = block_at<block_q3_K>(row, c, QK_K);
    const int e = int(c % QK_K), h = e / 128, g = (e % 128) / 32, l = e % 32;
    const int j = e / 16;  // q3_get_scale
    const int slo = j < 8 ? (b.scales[j] & 0xF) : (b.scales[j - 8] >> 4);
    const int sc = (slo | (((b.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
    const float dl = __fmul_rn(h2f(b.d), float(sc));
    const int low = (b.qs[32 * h + l] >> (2 * g)) & 3;
    const int hbit = (b.hmask[l] >> (e / 32)) & 1;
    return __fmul_rn(dl, float(low - (hbit ? 0 : 4)));
  } else if constexpr (T == GgmlType::Q4_K || T == GgmlType::Q5_K) {
    using B = std::conditional_t<T == GgmlType::Q4_K, block_q4_K, block_q5_K>;
    const auto& b = block_at<B>(row, c, QK_K);
    const int e = int(c % QK_K), cc = e / 64, l = e % 64, ll = l % 32;
    const int j = 2 * cc + (l >= 32 ? 1 : 0);  // get_scale_min_k4
    int sc, m;
    if (j < 4) {
      sc = b.scales[j] & 63;
      m = b.scales[j + 4] & 63;
    } else {
      sc = (b.scales[j + 4] & 0xF) | ((b.scales[j - 4] >> 6) << 4);
      m = (b.scales[j + 4] >> 4) | ((b.scales[j] >> 6) << 4);
    }
    const float dd = __fmul_rn(h2f(b.d), float(sc));
    const float mm = __fmul_rn(h2f(b.dmin), float(m));
    const uint8_t qb = b.qs[32 * cc + ll];
    int q = l < 32 ? (qb & 0xF) : (qb >> 4);
    if constexpr (T == GgmlType::Q5_K) {
      const int u = (l < 32 ? 1 : 2) << (2 * cc);
      q += (b.qh[ll] & u) ? 16 : 0;
    }
    return __fsub_rn(__fmul_rn(dd, float(q)), mm);
  } else if constexpr (T == GgmlType::Q6_K) {
    const auto& b = block_at<block_q6_K>(row, c, QK_K);
    const int e = int(c % QK_K), h = e / 128, g = (e % 128) / 32, l = e % 32;
    const uint8_t qlb = b.ql[64 * h + l + 32 * (g & 1)];
    const int low4 = g < 2 ? (qlb & 0xF) : (qlb >> 4);
    const int high2 = (b.qh[32 * h + l] >> (2 * g)) & 3;
    const int q = int(int8_t((low4 | (high2 << 4)) - 32));
    return __fmul_rn(__fmul_rn(h2f(b.d), float(b.scales[e / 16])), float(q));
  } else if constexpr (T == GgmlType::IQ4_NL) {
    const auto& b = block_at<block_iq4_nl>(row, c, QK4_NL);
    const int j = int(c % QK4_NL);
    const int code = j < 16 ? (b.qs[j] & 0xF) : (b.qs[j - 16] >> 4);
    return __fmul_rn(h2f(b.d), float(c_kvalues_iq4nl[code]));
  } else if constexpr (T == GgmlType::IQ4_XS) {
    const auto& b = block_at<block_iq4_xs>(row, c, QK_K);
    const int e = int(c % QK_K), ib = e / 32, j = e % 32;
    const int ls = ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b.scales_h >> (2 * ib)) & 3) << 4);
    const float dl = __fmul_rn(h2f(b.d), float(ls - 32));
    const int code = j < 16 ? (b.qs[16 * ib + j] & 0xF) : (b.qs[16 * ib + j - 16] >> 4);
    return __fmul_rn(dl, float(c_kvalues_iq4nl[code]));
  } else {
    static_assert(T == GgmlType::F32, "no device dequantizer for this type");
    return 0.0f;
  }
}

template <GgmlType T>
__global__ void dequant_rows_kernel(const uint8_t* w, int64_t row_bytes, int64_t cols, const int32_t* ids, int64_t r0,
                                    int64_t nrows, float* out) {
  const int64_t total = nrows * cols;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t r = i / cols, c = i - r * cols;
    const int64_t src = ids ? int64_t(ids[r]) : r0 + r;
    out[i] = dequant_elem<T>(w + src * row_bytes, c);
  }
}

template <GgmlType T>
void launch_dequant(Device& d, const void* w, int64_t row_bytes, int64_t cols, const int32_t* ids, int64_t r0,
                    int64_t nrows, float* out) {
  constexpr int kThreads = 256;
  dequant_rows_kernel<T><<<grid_for(nrows * cols, kThreads), kThreads, 0, d.stream>>>(
      static_cast<const uint8_t*>(w), row_bytes, cols, ids, r0, nrows, out);
  check_launch("dequant_rows_kernel", d);
}

// Rows r0 .. r0+nrows-1 dequantized straight into the order-1 bf16x3 form [hi | lo | hi] (see
// split3_bf16_rows): no f32 tile in between.
template <GgmlType T>
__global__ void dequant_split3_kernel(const uint8_t* w, int64_t row_bytes, int64_t cols, int64_t r0, int64_t nrows,
                                      uint16_t* out) {
  const int64_t total = nrows * cols;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t r = i / cols, c = i - r * cols;
    const float x = dequant_elem<T>(w + (r0 + r) * row_bytes, c);
    const uint16_t h = f2bf(x), l = f2bf(__fsub_rn(x, bf2f(h)));
    uint16_t* o = out + r * 3 * cols + c;
    o[0] = h;
    o[cols] = l;
    o[2 * cols] = h;
  }
}

template <GgmlType T>
void launch_dequant_split3(Device& d, const void* w, int64_t row_bytes, int64_t cols, int64_t r0, int64_t nrows,
                           uint16_t* out) {
  constexpr int kThreads = 256;
  dequant_split3_kernel<T><<<grid_for(nrows * cols, kThreads), kThreads, 0, d.stream>>>(
      static_cast<const uint8_t*>(w), row_bytes, cols, r0, nrows, out);
  check_launch("dequant_split3_kernel", d);
}

// ---- activation rounding (backend/cpu/act_quant.cpp)

// Q8_0 / Q8_1 (identical values): one warp per 32-block. d = amax/127 stored as fp16, q = RNE(x / d)
// computed as x * (1/d) in f32, value = f16(d) * q.
__global__ void round_q8_0_kernel(const float* x, int64_t nblocks, float* out) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t b = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; b < nblocks; b += warps) {
    const float v = x[b * 32 + lane];
    float amax = fabsf(v);
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float dd = __fdiv_rn(amax, 127.f);
    const float id = dd != 0.0f ? __fdiv_rn(1.0f, dd) : 0.0f;
    const int q = __float2int_rn(__fmul_rn(v, id));
    out[b * 32 + lane] = __fmul_rn(h2f(f2h(dd)), float(q));
  }
}

// Q8_K: one CUDA block of 256 threads per 256-block. max = the first value of largest magnitude,
// iscale = -127/max, q = min(127, RNE(iscale * x)), value = (1/iscale) * q.
__global__ void round_q8_K_kernel(const float* x, int64_t nblocks, float* out) {
  __shared__ float shf[QK_K];
  __shared__ int shi[QK_K];
  const int tid = threadIdx.x;
  for (int64_t b = blockIdx.x; b < nblocks; b += gridDim.x) {
    const float v = x[b * QK_K + tid];
    const float amax = block_reduce<float>(fabsf(v), shf, 1);
    const int first = block_reduce<int>(fabsf(v) == amax ? tid : INT_MAX, shi, 2);
    if (!(amax > 0.0f)) {
      out[b * QK_K + tid] = 0.0f;
      continue;
    }
    const float mx = x[b * QK_K + first];
    const float iscale = __fdiv_rn(-127.f, mx);
    int q = __float2int_rn(__fmul_rn(iscale, v));
    q = q < 127 ? q : 127;
    out[b * QK_K + tid] = __fmul_rn(__fdiv_rn(1.0f, iscale), float(q));
  }
}

__global__ void round_bf16_kernel(const float* x, int64_t n, float* out) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = bf2f(f2bf(x[i]));
}

__global__ void round_f16_kernel(const float* x, int64_t n, float* out) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = h2f(f2h(x[i]));
}

__global__ void to_bf16_kernel(const float* x, int64_t n, uint16_t* out) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = f2bf(x[i]);
}

__global__ void to_f16_kernel(const float* x, int64_t n, uint16_t* out) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = f2h(x[i]);
}

__global__ void split_bf16_kernel(const float* x, int64_t n, uint16_t* hi, uint16_t* lo) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint16_t h = f2bf(x[i]);
    hi[i] = h;
    lo[i] = f2bf(__fsub_rn(x[i], bf2f(h)));
  }
}

// out (n, 3 cols) = three bf16 blocks per row of x (n, cols): order 0 [hi | hi | lo], order 1
// [hi | lo | hi] (hi = bf16(x), lo = bf16(x - hi)).
__global__ void split3_rows_kernel(const float* x, int64_t n, int64_t cols, int order, uint16_t* out) {
  const int64_t total = n * cols, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t r = i / cols, c = i - r * cols;
    const uint16_t h = f2bf(x[i]), l = f2bf(__fsub_rn(x[i], bf2f(h)));
    uint16_t* o = out + r * 3 * cols + c;
    o[0] = h;
    o[cols] = order == 0 ? h : l;
    o[2 * cols] = order == 0 ? l : h;
  }
}

}  // namespace

void split3_bf16_rows(Device& d, const float* x, int64_t n, int64_t cols, int order, uint16_t* out) {
  if (n <= 0 || cols <= 0) return;
  split3_rows_kernel<<<grid_for(n * cols, 256), 256, 0, d.stream>>>(x, n, cols, order, out);
  check_launch("split3_rows_kernel", d);
}

void dequantize_rows_split3(Device& d, GgmlType t, const void* w, int64_t row_bytes, int64_t cols, int64_t r0,
                            int64_t nrows, uint16_t* out) {
  if (nrows <= 0 || cols <= 0) return;
  if (cols % ggml_type_info(t).block_size)
    fail("{}: dequantize: {} columns are not a multiple of {}'s block", d.label, cols, ggml_type_name(t));
  switch (t) {
#define SAMQ_DQ(T) \
  case GgmlType::T: return launch_dequant_split3<GgmlType::T>(d, w, row_bytes, cols, r0, nrows, out);
    SAMQ_DQ(F32) SAMQ_DQ(F16) SAMQ_DQ(BF16) SAMQ_DQ(Q4_0) SAMQ_DQ(Q4_1) SAMQ_DQ(Q5_0) SAMQ_DQ(Q5_1)
    SAMQ_DQ(Q8_0) SAMQ_DQ(Q2_K) SAMQ_DQ(Q3_K) SAMQ_DQ(Q4_K) SAMQ_DQ(Q5_K) SAMQ_DQ(Q6_K) SAMQ_DQ(IQ4_NL)
    SAMQ_DQ(IQ4_XS)
#undef SAMQ_DQ
    default:
      fail("{}: no device dequantizer for type {}", d.label, ggml_type_name(t));
  }
}

bool dequant_supported(GgmlType t) {
  switch (t) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q4_0: case GgmlType::Q4_1:
    case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q8_0: case GgmlType::Q2_K: case GgmlType::Q3_K:
    case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K: case GgmlType::IQ4_NL: case GgmlType::IQ4_XS:
      return true;
    default:
      return false;
  }
}

void dequantize_rows(Device& d, GgmlType t, const void* w, int64_t row_bytes, int64_t cols, const int32_t* ids,
                     int64_t r0, int64_t nrows, float* out) {
  if (nrows <= 0 || cols <= 0) return;
  if (cols % ggml_type_info(t).block_size)
    fail("{}: dequantize: {} columns are not a multiple of {}'s block", d.label, cols, ggml_type_name(t));
  switch (t) {
#define SAMQ_DQ(T) \
  case GgmlType::T: return launch_dequant<GgmlType::T>(d, w, row_bytes, cols, ids, r0, nrows, out);
    SAMQ_DQ(F32) SAMQ_DQ(F16) SAMQ_DQ(BF16) SAMQ_DQ(Q4_0) SAMQ_DQ(Q4_1) SAMQ_DQ(Q5_0) SAMQ_DQ(Q5_1)
    SAMQ_DQ(Q8_0) SAMQ_DQ(Q2_K) SAMQ_DQ(Q3_K) SAMQ_DQ(Q4_K) SAMQ_DQ(Q5_K) SAMQ_DQ(Q6_K) SAMQ_DQ(IQ4_NL)
    SAMQ_DQ(IQ4_XS)
#undef SAMQ_DQ
    default:
      fail("{}: no device dequantizer for type {}", d.label, ggml_type_name(t));
  }
}

void round_activations(Device& d, cpu::ActType at, const float* x, int64_t n, int64_t cols, float* out) {
  const int64_t total = n * cols;
  if (total <= 0) return;
  constexpr int kThreads = 256;
  switch (at) {
    case cpu::ActType::F32:
      if (out != x)
        check(cudaMemcpyAsync(out, x, size_t(total) * sizeof(float), cudaMemcpyDeviceToDevice, d.stream),
              "cudaMemcpyAsync (activations)", d);
      return;
    case cpu::ActType::BF16:
      round_bf16_kernel<<<grid_for(total, kThreads), kThreads, 0, d.stream>>>(x, total, out);
      return check_launch("round_bf16_kernel", d);
    case cpu::ActType::F16:
      round_f16_kernel<<<grid_for(total, kThreads), kThreads, 0, d.stream>>>(x, total, out);
      return check_launch("round_f16_kernel", d);
    case cpu::ActType::Q8_0:
    case cpu::ActType::Q8_1: {
      if (cols % QK8_0) fail("{}: activation row of {} values is not a multiple of 32", d.label, cols);
      const int64_t nb = total / QK8_0;
      round_q8_0_kernel<<<grid_for(nb, kThreads / 32), kThreads, 0, d.stream>>>(x, nb, out);
      return check_launch("round_q8_0_kernel", d);
    }
    case cpu::ActType::Q8_K: {
      if (cols % QK_K) fail("{}: activation row of {} values is not a multiple of 256", d.label, cols);
      const int64_t nb = total / QK_K;
      round_q8_K_kernel<<<grid_for(nb, 1), QK_K, 0, d.stream>>>(x, nb, out);
      return check_launch("round_q8_K_kernel", d);
    }
  }
  fail("{}: unknown activation type", d.label);
}

void to_bf16(Device& d, const float* x, int64_t n, uint16_t* out) {
  if (n <= 0) return;
  to_bf16_kernel<<<grid_for(n, 256), 256, 0, d.stream>>>(x, n, out);
  check_launch("to_bf16_kernel", d);
}

void to_f16(Device& d, const float* x, int64_t n, uint16_t* out) {
  if (n <= 0) return;
  to_f16_kernel<<<grid_for(n, 256), 256, 0, d.stream>>>(x, n, out);
  check_launch("to_f16_kernel", d);
}

void split_bf16(Device& d, const float* x, int64_t n, uint16_t* hi, uint16_t* lo) {
  if (n <= 0) return;
  split_bf16_kernel<<<grid_for(n, 256), 256, 0, d.stream>>>(x, n, hi, lo);
  check_launch("split_bf16_kernel", d);
}

void round_f16(Device& d, float* x, int64_t n) {
  if (n <= 0) return;
  round_f16_kernel<<<grid_for(n, 256), 256, 0, d.stream>>>(x, n, x);
  check_launch("round_f16_kernel", d);
}

}  // namespace samq::cuda
