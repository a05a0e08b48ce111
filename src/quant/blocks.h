// Packed block layouts of the ggml quantization formats, byte for byte as ggml stores them
// (ggml-formats.md §2.1; ggml-common.h). Plain structs with no C++-only members so CUDA and
// SIMD code can use them as they are; fp16 fields are stored as raw uint16_t bits (convert with
// core/fp16.h). Every size is checked below against the GGUF type table.
#pragma once
#include <cstdint>

#include "core/hd.h"

namespace samq {

constexpr int QK4_0 = 32;
constexpr int QK4_1 = 32;
constexpr int QK5_0 = 32;
constexpr int QK5_1 = 32;
constexpr int QK8_0 = 32;
constexpr int QK4_NL = 32;
constexpr int QK_K = 256;        // elements per K-quant super-block
constexpr int K_SCALE_SIZE = 12; // packed 6-bit scales/mins of Q4_K/Q5_K (and Q3_K's 16 scales)

// y = (q - 8) * d; qs[j] low nibble = element j, high nibble = element j + 16.
struct block_q4_0 {
  uint16_t d;
  uint8_t qs[QK4_0 / 2];
};
// y = q * d + m
struct block_q4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[QK4_1 / 2];
};
// y = (q - 16) * d; bit j of the LE uint32 qh is the 5th bit of element j.
struct block_q5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[QK5_0 / 2];
};
// y = q * d + m
struct block_q5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[QK5_1 / 2];
};
// y = qs[j] * d
struct block_q8_0 {
  uint16_t d;
  int8_t qs[QK8_0];
};

// 2-bit affine, 16 sub-blocks of 16: y = d*sc*q - dmin*m; scales[k] = sc | m << 4. 84 bytes.
struct block_q2_K {
  uint8_t scales[QK_K / 16];
  uint8_t qs[QK_K / 4];
  uint16_t d;
  uint16_t dmin;
};
// 3-bit symmetric, 16 sub-blocks of 16, 6-bit scales (+32 bias) packed in 12 bytes. 110 bytes.
struct block_q3_K {
  uint8_t hmask[QK_K / 8];
  uint8_t qs[QK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};
// 4-bit affine, 8 sub-blocks of 32, 6-bit scales and mins. 144 bytes.
struct block_q4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qs[QK_K / 2];
};
// 5-bit affine, 8 sub-blocks of 32. 176 bytes.
struct block_q5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};
// 6-bit symmetric, 16 sub-blocks of 16, signed int8 scales. 210 bytes.
struct block_q6_K {
  uint8_t ql[QK_K / 2];
  uint8_t qh[QK_K / 4];
  int8_t scales[QK_K / 16];
  uint16_t d;
};
// Activation-only type of ggml's K-quant dot products (d is float32). 292 bytes.
struct block_q8_K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];
};
// Non-linear 4-bit: y = d * kvalues_iq4nl[code]; legacy nibble order. 18 bytes.
struct block_iq4_nl {
  uint16_t d;
  uint8_t qs[QK4_NL / 2];
};
// 8 sub-blocks of 32 with 6-bit scales (low 4 bits in scales_l, high 2 in scales_h). 136 bytes.
struct block_iq4_xs {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[QK_K / 64];
  uint8_t qs[QK_K / 2];
};

// IQ4_NL / IQ4_XS codebook (ggml-formats.md §2.10).
constexpr int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113};
// The same codebook by value, for code that also runs on the GPU (core/hd.h), where a host array
// cannot be indexed.
struct Iq4Table {
  int8_t v[16];
};
SAMQ_HD inline Iq4Table iq4nl_table() {
  return {{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}};
}

static_assert(sizeof(block_q4_0) == 18, "block_q4_0 must be 18 bytes");
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 must be 20 bytes");
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 must be 22 bytes");
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 must be 24 bytes");
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must be 34 bytes");
static_assert(sizeof(block_q2_K) == 84, "block_q2_K must be 84 bytes");
static_assert(sizeof(block_q3_K) == 110, "block_q3_K must be 110 bytes");
static_assert(sizeof(block_q4_K) == 144, "block_q4_K must be 144 bytes");
static_assert(sizeof(block_q5_K) == 176, "block_q5_K must be 176 bytes");
static_assert(sizeof(block_q6_K) == 210, "block_q6_K must be 210 bytes");
static_assert(sizeof(block_q8_K) == 292, "block_q8_K must be 292 bytes");
static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl must be 18 bytes");
static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs must be 136 bytes");

}  // namespace samq
