// Scalar fp16 and bf16 conversions with ggml's exact rounding (ggml-formats.md §2.1):
// fp32->fp16 IEEE round-to-nearest-even, overflow to Inf, NaN to quiet NaN with sign;
// fp32->bf16 RNE with NaN quieted as (bits>>16)|0x40. Both widenings are exact.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/hd.h"

namespace samq {

SAMQ_HD inline float bits_to_f32(uint32_t u) { return hd::bits_to_f32(u); }
SAMQ_HD inline uint32_t f32_to_bits(float f) { return hd::f32_to_bits(f); }

SAMQ_HD inline float fp16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  if (exp == 0) {
    if (man == 0) return bits_to_f32(sign);
    // subnormal: normalize
    int e = -1;
    do { man <<= 1; ++e; } while ((man & 0x400) == 0);
    man &= 0x3ff;
    return bits_to_f32(sign | uint32_t(127 - 15 - e) << 23 | man << 13);
  }
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | man << 13);
  return bits_to_f32(sign | (exp + 127 - 15) << 23 | man << 13);
}

SAMQ_HD inline uint16_t f32_to_fp16(float f) {
  const uint32_t x = f32_to_bits(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00;           // NaN
  if (ax >= 0x477ff000u) return sign | 0x7c00;          // rounds to >= 65520: Inf
  if (ax < 0x38800000u) {                               // below fp16's smallest normal
    if (ax < 0x33000000u) return sign;                  // < 2^-25: rounds to zero
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - e;                     // 14 + (113 - e) - ... see derivation
    // value = m * 2^(e-150); fp16 subnormal unit is 2^-24 -> q = m * 2^(e-126)
    const uint32_t s = shift;                           // right shift amount in [14, 24]
    uint32_t q = m >> s;
    const uint32_t rem = m & ((1u << s) - 1);
    const uint32_t half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;
    return sign | uint16_t(q);
  }
  // normal: rebias exponent, round mantissa from 23 to 10 bits (RNE); carry may bump exponent
  uint32_t r = ax - ((127u - 15u) << 23);
  const uint32_t rem = r & 0x1fff;
  r >>= 13;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;
  return sign | uint16_t(r);
}

SAMQ_HD inline float bf16_to_f32(uint16_t b) { return bits_to_f32(uint32_t(b) << 16); }

SAMQ_HD inline uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  return uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

}  // namespace samq
