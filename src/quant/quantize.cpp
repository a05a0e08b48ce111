// Type dispatch for rows, whole tensors and round trips (see quantize.h). Rows are the unit of
// work everywhere: threads take contiguous row ranges whose boundaries depend only on the
// shape, and each row is quantized exactly as ggml's ggml_quantize_chunk would.
#include "quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "core/parallel.h"
#include "quant/dequant_fast.h"
#include "quant/quants_ref.h"

namespace samq {
namespace {

template <typename B>
B* as(void* p) { return static_cast<B*>(p); }
template <typename B>
const B* as(const void* p) { return static_cast<const B*>(p); }

// The importance-weighted path when weights are given, else the plain one.
template <typename B>
void by_weights(void (*weighted)(const float*, B*, int64_t, const float*), void (*plain)(const float*, B*, int64_t),
                const float* x, void* dst, int64_t n, const float* qw) {
  if (qw) weighted(x, as<B>(dst), n, qw);
  else plain(x, as<B>(dst), n);
}

void check_row(GgmlType t, int64_t n) {
  if (!quant_supported(t))
    fail("quantization to {} is not supported (samq supports f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 "
         "q5_1 q2_K q3_K q4_K q5_K q6_K iq4_nl iq4_xs)", ggml_type_name(t));
  if (n < 0) fail("negative row length {} for {}", n, ggml_type_name(t));
  ggml_row_size(t, n);  // throws when n is not a multiple of the block
}

// ggml's searches assume finite input (its nearest_int asserts |v| <= 2^22); a NaN or Inf
// weight means a broken model, so it is reported instead of producing garbage blocks.
void check_finite(GgmlType t, const float* x, int64_t n, int64_t row) {
  // Branch-free scan first (vectorizes; the check must not cost the cheap types their speed).
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    bad |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
  }
  if (!bad) return;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) {
      if (row >= 0) fail("quantize to {}: non-finite value {} at row {}, column {}", ggml_type_name(t), x[i], row, i);
      fail("quantize to {}: non-finite value {} at column {}", ggml_type_name(t), x[i], i);
    }
}

void check_imatrix(GgmlType t, const float* qw, int64_t n) {
  if (!qw) return;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(qw[i])) fail("quantize to {}: importance vector has non-finite value {} at column {}", ggml_type_name(t), qw[i], i);
}

// Rows per parallel chunk: about 256 KiB of f32, at least one row (rows are independent, so
// the chunking never changes the bytes; it only bounds scheduling overhead).
int64_t rows_per_chunk(int64_t cols) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, cols)); }

}  // namespace

bool quant_supported(GgmlType t) {
  switch (t) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
    case GgmlType::Q8_0: case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0:
    case GgmlType::Q5_1: case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K:
    case GgmlType::Q5_K: case GgmlType::Q6_K: case GgmlType::IQ4_NL: case GgmlType::IQ4_XS:
      return true;
    default:
      return false;
  }
}

static void quantize_row_unchecked(GgmlType t, const float* x, void* dst, int64_t n, const float* qw) {
  switch (t) {
    case GgmlType::F32: std::memcpy(dst, x, size_t(n) * 4); return;
    case GgmlType::F16: {
      auto* y = as<uint16_t>(dst);
      if (quantize_row_f16_fast(x, y, n)) return;
      for (int64_t i = 0; i < n; ++i) y[i] = f32_to_fp16(x[i]);
      return;
    }
    case GgmlType::BF16: {
      auto* y = as<uint16_t>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
      return;
    }
    case GgmlType::Q8_0:
      if (!quantize_row_q8_0_fast(x, as<block_q8_0>(dst), n)) quantize_row_q8_0_ref(x, as<block_q8_0>(dst), n);
      return;
    case GgmlType::Q4_0: return by_weights(quantize_row_q4_0_weighted, quantize_row_q4_0_ref, x, dst, n, qw);
    case GgmlType::Q4_1: return by_weights(quantize_row_q4_1_weighted, quantize_row_q4_1_ref, x, dst, n, qw);
    case GgmlType::Q5_0: return by_weights(quantize_row_q5_0_weighted, quantize_row_q5_0_ref, x, dst, n, qw);
    case GgmlType::Q5_1: return by_weights(quantize_row_q5_1_weighted, quantize_row_q5_1_ref, x, dst, n, qw);
    case GgmlType::Q2_K: return by_weights(quantize_row_q2_K_weighted, quantize_row_q2_K_ref, x, dst, n, qw);
    case GgmlType::Q3_K: return by_weights(quantize_row_q3_K_weighted, quantize_row_q3_K_ref, x, dst, n, qw);
    case GgmlType::Q4_K: return by_weights(quantize_row_q4_K_weighted, quantize_row_q4_K_ref, x, dst, n, qw);
    case GgmlType::Q5_K: return by_weights(quantize_row_q5_K_weighted, quantize_row_q5_K_ref, x, dst, n, qw);
    case GgmlType::Q6_K: return by_weights(quantize_row_q6_K_weighted, quantize_row_q6_K_ref, x, dst, n, qw);
    case GgmlType::IQ4_NL: quantize_row_iq4_nl_ref(x, as<block_iq4_nl>(dst), n, qw); return;
    case GgmlType::IQ4_XS: quantize_row_iq4_xs_ref(x, as<block_iq4_xs>(dst), n, qw); return;
    default: break;
  }
}

void quantize_row(GgmlType t, const float* x, void* dst, int64_t n, const float* qw) {
  check_row(t, n);
  if (t != GgmlType::F32) check_finite(t, x, n, -1);
  check_imatrix(t, qw, n);
  quantize_row_unchecked(t, x, dst, n, qw);
}

void dequantize_row_ref(GgmlType t, const void* src, float* y, int64_t n) {
  check_row(t, n);
  switch (t) {
    case GgmlType::F32: std::memcpy(y, src, size_t(n) * 4); return;
    case GgmlType::F16: {
      const auto* h = as<uint16_t>(src);
      for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_f32(h[i]);
      return;
    }
    case GgmlType::BF16: {
      const auto* h = as<uint16_t>(src);
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(h[i]);
      return;
    }
    case GgmlType::Q8_0: dequantize_row_q8_0(as<block_q8_0>(src), y, n); return;
    case GgmlType::Q4_0: dequantize_row_q4_0(as<block_q4_0>(src), y, n); return;
    case GgmlType::Q4_1: dequantize_row_q4_1(as<block_q4_1>(src), y, n); return;
    case GgmlType::Q5_0: dequantize_row_q5_0(as<block_q5_0>(src), y, n); return;
    case GgmlType::Q5_1: dequantize_row_q5_1(as<block_q5_1>(src), y, n); return;
    case GgmlType::Q2_K: dequantize_row_q2_K(as<block_q2_K>(src), y, n); return;
    case GgmlType::Q3_K: dequantize_row_q3_K(as<block_q3_K>(src), y, n); return;
    case GgmlType::Q4_K: dequantize_row_q4_K(as<block_q4_K>(src), y, n); return;
    case GgmlType::Q5_K: dequantize_row_q5_K(as<block_q5_K>(src), y, n); return;
    case GgmlType::Q6_K: dequantize_row_q6_K(as<block_q6_K>(src), y, n); return;
    case GgmlType::IQ4_NL: dequantize_row_iq4_nl(as<block_iq4_nl>(src), y, n); return;
    case GgmlType::IQ4_XS: dequantize_row_iq4_xs(as<block_iq4_xs>(src), y, n); return;
    default: break;
  }
}

void dequantize_row(GgmlType t, const void* src, float* y, int64_t n) {
  if (dequantize_row_fast(t, src, y, n)) return;
  dequantize_row_ref(t, src, y, n);
}

size_t quantize_tensor(GgmlType t, const float* src, void* dst, int64_t rows, int64_t cols,
                       const float* imatrix) {
  check_row(t, cols);
  if (rows < 0) fail("negative row count {} for {}", rows, ggml_type_name(t));
  check_imatrix(t, imatrix, cols);
  const int64_t row_bytes = ggml_row_size(t, cols);
  auto* out = static_cast<uint8_t*>(dst);
  parallel_for(rows, rows_per_chunk(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (t != GgmlType::F32) check_finite(t, src + r * cols, cols, r);
      quantize_row_unchecked(t, src + r * cols, out + r * row_bytes, cols, imatrix);
    }
  });
  return size_t(rows * row_bytes);
}

void dequantize_tensor(GgmlType t, const void* src, float* dst, int64_t rows, int64_t cols) {
  check_row(t, cols);
  if (rows < 0) fail("negative row count {} for {}", rows, ggml_type_name(t));
  const int64_t row_bytes = ggml_row_size(t, cols);
  const auto* in = static_cast<const uint8_t*>(src);
  parallel_for(rows, rows_per_chunk(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) dequantize_row(t, in + r * row_bytes, dst + r * cols, cols);
  });
}

void quant_round_trip(GgmlType t, const float* src, float* dst, int64_t rows, int64_t cols,
                      const float* imatrix) {
  check_row(t, cols);
  if (rows < 0) fail("negative row count {} for {}", rows, ggml_type_name(t));
  if (t == GgmlType::F32) {
    std::memcpy(dst, src, size_t(rows * cols) * 4);
    return;
  }
  check_imatrix(t, imatrix, cols);
  const int64_t row_bytes = ggml_row_size(t, cols);
  parallel_for(rows, rows_per_chunk(cols), [&](int64_t r0, int64_t r1) {
    std::vector<uint8_t> buf(static_cast<size_t>(row_bytes));
    for (int64_t r = r0; r < r1; ++r) {
      check_finite(t, src + r * cols, cols, r);
      quantize_row_unchecked(t, src + r * cols, buf.data(), cols, imatrix);
      dequantize_row(t, buf.data(), dst + r * cols, cols);
    }
  });
}

double weighted_sq_error(const float* src, const float* deq, int64_t rows, int64_t cols,
                         const float* imatrix) {
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double row = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double e = double(deq[r * cols + c]) - double(src[r * cols + c]);
      row += (imatrix ? double(imatrix[c]) : 1.0) * e * e;
    }
    total += row;
  }
  return total;
}

}  // namespace samq
