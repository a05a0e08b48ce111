// SIMD dequantizers for the hot types, chosen at run time (AVX2 via target attributes, so
// the baseline build stays portable). Each produces exactly the floats of the scalar
// reference: same products in the same order, no FMA.
#pragma once
#include <cstdint>

#include "core/ggml_type.h"
#include "quant/blocks.h"

namespace samq {

// Dequantizes n elements with a fast path and returns true, or returns false (nothing
// written) when there is none for this type or CPU.
bool dequantize_row_fast(GgmlType t, const void* src, float* y, int64_t n);

// f32 -> fp16 with F16C (same bits as core/fp16.h's f32_to_fp16 for every input); false when
// unavailable or switched off.
bool quantize_row_f16_fast(const float* x, uint16_t* y, int64_t n);

// Q8_0 quantization with AVX2 (same bytes as quantize_row_q8_0_ref for finite input).
bool quantize_row_q8_0_fast(const float* x, block_q8_0* y, int64_t n);

// Whether the AVX2 paths are in use (CPU support and not disabled by set_dequant_simd).
bool dequant_simd_enabled();
// Tests and benches switch the fast paths off to compare against the reference.
void set_dequant_simd(bool on);

}  // namespace samq
