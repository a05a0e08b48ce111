#include "backend/cpu/act_quant.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"

namespace samq::cpu {

ActType act_type_for(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return ActType::F32;
    case GgmlType::F16: return ActType::F16;
    case GgmlType::BF16: return ActType::BF16;
    case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: case GgmlType::IQ4_NL:
      return ActType::Q8_0;
    case GgmlType::Q4_1: case GgmlType::Q5_1: return ActType::Q8_1;
    default: return ActType::Q8_K;
  }
}

namespace {
// ggml's nearest_int: round to nearest, ties to even (|v| < 2^22).
inline int nearest_int(float v) {
  float val = v + 12582912.f;
  int i;
  std::memcpy(&i, &val, sizeof(int));
  return (i & 0x007fffff) - 0x00400000;
}
}  // namespace

void quantize_row_q8_K(const float* x, block_q8_K* y, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    float max = 0, amax = 0;
    for (int j = 0; j < QK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (!amax) {
      y[b].d = 0;
      std::memset(y[b].qs, 0, QK_K);
      std::memset(y[b].bsums, 0, sizeof(y[b].bsums));
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; ++j) {
      const int v = nearest_int(iscale * x[j]);
      y[b].qs[j] = int8_t(v < 127 ? v : 127);
    }
    for (int j = 0; j < QK_K / 16; ++j) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += y[b].qs[j * 16 + i];
      y[b].bsums[j] = int16_t(s);
    }
    y[b].d = 1 / iscale;
  }
}

void quantize_row_q8_0(const float* x, block_q8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
    float amax = 0;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) y[b].qs[j] = int8_t(std::nearbyint(x[j] * id));
  }
}

void quantize_row_q8_1(const float* x, block_q8_1* y, int64_t n) {
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
    float amax = 0;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < QK8_0; ++j) {
      y[b].qs[j] = int8_t(std::nearbyint(x[j] * id));
      sum += y[b].qs[j];
    }
    y[b].d = f32_to_fp16(d);
    y[b].s = f32_to_fp16(d * float(sum));
  }
}

void round_activations(ActType t, const float* x, float* out, int64_t n) {
  switch (t) {
    case ActType::F32:
      if (out != x) std::memcpy(out, x, sizeof(float) * n);
      return;
    case ActType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_f32(f32_to_fp16(x[i]));
      return;
    case ActType::BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(f32_to_bf16(x[i]));
      return;
    case ActType::Q8_0:
    case ActType::Q8_1: {
      if (n % QK8_0) fail("activation row of {} values is not a multiple of 32", n);
      block_q8_0 b;
      for (int64_t i = 0; i < n; i += QK8_0) {
        quantize_row_q8_0(x + i, &b, QK8_0);
        const float d = fp16_to_f32(b.d);
        for (int j = 0; j < QK8_0; ++j) out[i + j] = d * float(b.qs[j]);
      }
      return;
    }
    case ActType::Q8_K: {
      if (n % QK_K) fail("activation row of {} values is not a multiple of 256", n);
      block_q8_K b;
      for (int64_t i = 0; i < n; i += QK_K) {
        quantize_row_q8_K(x + i, &b, QK_K);
        for (int j = 0; j < QK_K; ++j) out[i + j] = b.d * float(b.qs[j]);
      }
      return;
    }
  }
}

}  // namespace samq::cpu
