// Compile-time dispatch over the block types of the shared quantizers (quant/kquants_impl.h,
// quant/legacy_iq4_impl.h), for the GPU kernels that quantize one block per thread.
#pragma once
#include "core/ggml_type.h"
#include "core/hd.h"
#include "quant/kquants_impl.h"
#include "quant/legacy_iq4_impl.h"

namespace samq::quant_detail {

template <GgmlType T>
struct BlockOf;
template <> struct BlockOf<GgmlType::Q2_K> { using type = block_q2_K; static constexpr int size = QK_K; };
template <> struct BlockOf<GgmlType::Q3_K> { using type = block_q3_K; static constexpr int size = QK_K; };
template <> struct BlockOf<GgmlType::Q4_K> { using type = block_q4_K; static constexpr int size = QK_K; };
template <> struct BlockOf<GgmlType::Q5_K> { using type = block_q5_K; static constexpr int size = QK_K; };
template <> struct BlockOf<GgmlType::Q6_K> { using type = block_q6_K; static constexpr int size = QK_K; };
template <> struct BlockOf<GgmlType::IQ4_XS> { using type = block_iq4_xs; static constexpr int size = QK_K; };
template <> struct BlockOf<GgmlType::Q8_0> { using type = block_q8_0; static constexpr int size = 32; };
template <> struct BlockOf<GgmlType::Q4_0> { using type = block_q4_0; static constexpr int size = 32; };
template <> struct BlockOf<GgmlType::Q4_1> { using type = block_q4_1; static constexpr int size = 32; };
template <> struct BlockOf<GgmlType::Q5_0> { using type = block_q5_0; static constexpr int size = 32; };
template <> struct BlockOf<GgmlType::Q5_1> { using type = block_q5_1; static constexpr int size = 32; };
template <> struct BlockOf<GgmlType::IQ4_NL> { using type = block_iq4_nl; static constexpr int size = 32; };

// One block as quantize_row(T, x, &b, n, qw) quantizes it: qw is the block's importance slice or
// null (plain path); sigma2 is its row's row_sigma2, read by the weighted legacy types only.
template <GgmlType T>
SAMQ_HD inline void quantize_block_as(const float* x, const float* qw, float sigma2, typename BlockOf<T>::type& b) {
  if constexpr (T == GgmlType::Q2_K) quantize_block_q2_K(x, qw, b);
  else if constexpr (T == GgmlType::Q3_K) quantize_block_q3_K(x, qw, b);
  else if constexpr (T == GgmlType::Q4_K || T == GgmlType::Q5_K) quantize_block_k45(x, qw, b);
  else if constexpr (T == GgmlType::Q6_K) quantize_block_q6_K(x, qw, b);
  else if constexpr (T == GgmlType::Q8_0) quantize_block_q8_0(x, b);
  else if constexpr (T == GgmlType::IQ4_NL) quantize_block_iq4_nl(x, qw, b);
  else if constexpr (T == GgmlType::IQ4_XS) quantize_block_iq4_xs(x, qw, b);
  else if (qw) quantize_block_legacy_weighted(x, qw, sigma2, b);
  else quantize_block_legacy_plain(x, b);
}

}  // namespace samq::quant_detail
