// Functions that compile for both the CPU and, under nvcc, the GPU (SAMQ_HD = __host__ __device__).
// The reference quantizers (quant/*_impl.h) are written once with these helpers, so that the
// CUDA backend runs the very same float operations as the CPU and produces the same bytes: the CPU
// is built with -ffp-contract=off and the CUDA files that include them with -fmad=false, and
// division and square root are correctly rounded on both (nvcc's defaults: -prec-div, -prec-sqrt).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SAMQ_HD __host__ __device__
#else
#define SAMQ_HD
#endif

namespace samq::hd {

template <typename T>
SAMQ_HD inline T min(T a, T b) { return b < a ? b : a; }
template <typename T>
SAMQ_HD inline T max(T a, T b) { return a < b ? b : a; }

SAMQ_HD inline float fabs(float x) {
#if defined(__CUDA_ARCH__)
  return ::fabsf(x);
#else
  return std::fabs(x);
#endif
}

SAMQ_HD inline float sqrt(float x) {
#if defined(__CUDA_ARCH__)
  return ::sqrtf(x);  // correctly rounded (nvcc -prec-sqrt=true, the default)
#else
  return std::sqrt(x);
#endif
}

// Round half away from zero (std::round).
SAMQ_HD inline float round(float x) {
#if defined(__CUDA_ARCH__)
  return ::roundf(x);
#else
  return std::round(x);
#endif
}

SAMQ_HD inline float bits_to_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

SAMQ_HD inline uint32_t f32_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

template <typename T>
SAMQ_HD inline void fill(T* p, int n, T v) {
  for (int i = 0; i < n; ++i) p[i] = v;
}

SAMQ_HD inline void zero_bytes(void* p, int n) {
  auto* b = static_cast<uint8_t*>(p);
  for (int i = 0; i < n; ++i) b[i] = 0;
}

}  // namespace samq::hd
