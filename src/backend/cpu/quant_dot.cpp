// Dispatch of quant_dot.h: picks the kernel of the best instruction set the CPU supports per
// weight type once, then hands row ranges to it.
#include "backend/cpu/quant_dot.h"

#include <cstring>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/quant_dot_kernels.h"
#include "core/error.h"
#include "core/fp16.h"

namespace samq::cpu {
namespace {

bool cpu_has(DotIsa isa) {
  __builtin_cpu_init();
  switch (isa) {
    case DotIsa::Ref: return true;
    case DotIsa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case DotIsa::Avx512:
      return cpu_has(DotIsa::Avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

qdot::Kernel kernel_at(DotIsa isa, GgmlType t) {
  switch (isa) {
    case DotIsa::Avx512: return qdot::kernel_avx512(t);
    case DotIsa::Avx2: return qdot::kernel_avx2(t);
    case DotIsa::Ref: return qdot::kernel_ref(t);
  }
  return nullptr;
}

// The kernel of type t at isa or the best lower variant; nullptr when t has none at all.
qdot::Kernel resolve(DotIsa isa, GgmlType t, DotIsa* used) {
  for (int i = int(isa); i >= 0; --i) {
    if (auto k = kernel_at(DotIsa(i), t)) {
      if (used) *used = DotIsa(i);
      return k;
    }
  }
  return nullptr;
}

constexpr int kMaxType = 40;
struct Table {
  qdot::Kernel k[kMaxType] = {};
  Table() {
    const DotIsa best = dot_isa_best();
    for (int i = 0; i < kMaxType; ++i) {
      if (ggml_type_info(int32_t(i))) k[i] = resolve(best, GgmlType(i), nullptr);
    }
  }
};
const Table& table() {
  static const Table t;
  return t;
}

int64_t block_of(GgmlType t) { return ggml_type_info(t).block_size; }

void run_kernel(qdot::Kernel k, GgmlType wtype, const void* w, int64_t row_bytes, int64_t r0, int64_t r1,
                const void* xq, int64_t n_tok, int64_t cols, float* y, int64_t y_stride) {
  if (!k) fail("dot_rows: no fused dot kernel for weight type {}", ggml_type_name(wtype));
  if (cols % block_of(wtype))
    fail("dot_rows: {} columns are not a multiple of the {} block ({})", cols, ggml_type_name(wtype), block_of(wtype));
  if (r1 <= r0 || n_tok <= 0) return;
  qdot::Args a{static_cast<const uint8_t*>(w) + r0 * row_bytes,
               row_bytes,
               r1 - r0,
               static_cast<const uint8_t*>(xq),
               act_row_bytes(wtype, cols),
               n_tok,
               cols / block_of(wtype),
               y + r0,
               y_stride};
  k(a);
}

}  // namespace

const char* dot_isa_name(DotIsa isa) {
  switch (isa) {
    case DotIsa::Ref: return "scalar";
    case DotIsa::Avx2: return "avx2";
    case DotIsa::Avx512: return "avx512";
  }
  return "?";
}

bool dot_isa_supported(DotIsa isa) {
  static const bool s[3] = {cpu_has(DotIsa::Ref), cpu_has(DotIsa::Avx2), cpu_has(DotIsa::Avx512)};
  return s[int(isa)];
}

DotIsa dot_isa_best() {
  if (dot_isa_supported(DotIsa::Avx512)) return DotIsa::Avx512;
  if (dot_isa_supported(DotIsa::Avx2)) return DotIsa::Avx2;
  return DotIsa::Ref;
}

DotIsa dot_isa_effective(GgmlType wtype, DotIsa isa) {
  if (int(isa) > int(dot_isa_best())) isa = dot_isa_best();
  DotIsa used = DotIsa::Ref;
  resolve(isa, wtype, &used);
  return used;
}

bool has_fused_dot(GgmlType wtype) {
  const int i = int(wtype);
  return i >= 0 && i < kMaxType && table().k[i] != nullptr;
}

int64_t act_row_bytes(GgmlType wtype, int64_t cols) {
  switch (act_type_for(wtype)) {
    case ActType::F32: return 4 * cols;
    case ActType::F16:
    case ActType::BF16: return 2 * cols;
    case ActType::Q8_0: return (cols / QK8_0) * int64_t(sizeof(block_q8_0));
    case ActType::Q8_1: return (cols / QK8_0) * int64_t(sizeof(block_q8_1));
    case ActType::Q8_K: return (cols / QK_K) * int64_t(sizeof(block_q8_K));
  }
  return 0;
}

void quantize_activations(GgmlType wtype, const float* x, int64_t n_tok, int64_t cols, void* xq) {
  const ActType at = act_type_for(wtype);
  const int64_t rb = act_row_bytes(wtype, cols);
  const int64_t blk = at == ActType::Q8_K ? QK_K : (at == ActType::Q8_0 || at == ActType::Q8_1) ? QK8_0 : 1;
  if (cols % blk) fail("quantize_activations: {} columns are not a multiple of {}", cols, blk);
  for (int64_t t = 0; t < n_tok; ++t) {
    const float* xr = x + t * cols;
    uint8_t* o = static_cast<uint8_t*>(xq) + t * rb;
    switch (at) {
      case ActType::F32: std::memcpy(o, xr, 4 * cols); break;
      case ActType::F16: {
        auto* h = reinterpret_cast<uint16_t*>(o);
        for (int64_t i = 0; i < cols; ++i) h[i] = f32_to_fp16(xr[i]);
        break;
      }
      case ActType::BF16: {
        auto* h = reinterpret_cast<uint16_t*>(o);
        for (int64_t i = 0; i < cols; ++i) h[i] = f32_to_bf16(xr[i]);
        break;
      }
      case ActType::Q8_0: quantize_row_q8_0(xr, reinterpret_cast<block_q8_0*>(o), cols); break;
      case ActType::Q8_1: quantize_row_q8_1(xr, reinterpret_cast<block_q8_1*>(o), cols); break;
      case ActType::Q8_K: quantize_row_q8_K(xr, reinterpret_cast<block_q8_K*>(o), cols); break;
    }
  }
}

void dot_rows(GgmlType wtype, const void* w, int64_t row_bytes, int64_t r0, int64_t r1, const void* xq,
              int64_t n_tok, int64_t cols, float* y, int64_t y_stride) {
  const int i = int(wtype);
  run_kernel(i >= 0 && i < kMaxType ? table().k[i] : nullptr, wtype, w, row_bytes, r0, r1, xq, n_tok, cols, y,
             y_stride);
}

void dot_rows_isa(DotIsa isa, GgmlType wtype, const void* w, int64_t row_bytes, int64_t r0, int64_t r1,
                  const void* xq, int64_t n_tok, int64_t cols, float* y, int64_t y_stride) {
  if (!dot_isa_supported(isa)) fail("dot_rows_isa: this CPU does not support {}", dot_isa_name(isa));
  run_kernel(resolve(isa, wtype, nullptr), wtype, w, row_bytes, r0, r1, xq, n_tok, cols, y, y_stride);
}

float dot_q4_K_q8_K(const block_q4_K* w, const block_q8_K* x, int64_t n) {
  float y;
  dot_rows(GgmlType::Q4_K, w, 0, 0, 1, x, 1, n, &y, 1);
  return y;
}
float dot_q6_K_q8_K(const block_q6_K* w, const block_q8_K* x, int64_t n) {
  float y;
  dot_rows(GgmlType::Q6_K, w, 0, 0, 1, x, 1, n, &y, 1);
  return y;
}
float dot_q8_0_q8_0(const block_q8_0* w, const block_q8_0* x, int64_t n) {
  float y;
  dot_rows(GgmlType::Q8_0, w, 0, 0, 1, x, 1, n, &y, 1);
  return y;
}

}  // namespace samq::cpu
