// The 256-bit x86 kernels of quant_dot.h, private to quant_dot_avx2.cpp and
// quant_dot_avx512.cpp, which each include this file once inside their own namespace and
// `#pragma GCC target` region (AVX2+FMA+F16C, or that plus AVX-512VL/VNNI with
// SAMQ_QDOT_VNNI=1, where u8·s8 -> int32 sums use vpdpbusd). No include guard on purpose.
//
// Each kernel takes one weight row against NT (1..4) activation rows per pass: a weight block is
// unpacked once and reused for every token of the pass; per-block sums stay in vector registers
// (int32 lanes converted to float and accumulated with FMA), one horizontal sum per (row, token).
// Integer sums equal the scalar reference's (quant_dot_ref.cpp). maddubs (u8 x s8 -> s16 pairs)
// never saturates here: the activation operand is Q8 in [-127, 127] and the u8 operand is <= 63,
// or both are <= 127 in magnitude (sign trick: |w| x sign(w)·x).

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// Sum of the 4 products u8·s8 in each int32 lane.
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if SAMQ_QDOT_VNNI
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}
// Sum of products of signed w and signed x (w, x in [-127, 127], w may be -128).
inline __m256i dot_s8s8(__m256i w, __m256i x) { return dot_u8s8(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)); }
// u8·s8 pairs times int16 scales per pair -> int32 lanes.
inline __m256i dot_u8s8_scaled(__m256i u, __m256i s, __m256i sc16) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), sc16);
}
// acc + the above (VNNI: vpdpwssd fuses the scale multiply and the add).
inline __m256i acc_u8s8_scaled(__m256i acc, __m256i u, __m256i s, __m256i sc16) {
#if SAMQ_QDOT_VNNI
  return _mm256_dpwssd_epi32(acc, _mm256_maddubs_epi16(u, s), sc16);
#else
  return _mm256_add_epi32(acc, dot_u8s8_scaled(u, s, sc16));
#endif
}

// Shuffle masks broadcasting int16 element j of each 128-bit lane to the whole lane ...
inline __m256i bcast16(int j) { return _mm256_set1_epi16(int16_t((2 * j) | ((2 * j + 1) << 8))); }
// ... and element j0 to the low lane, j1 to the high lane.
inline __m256i bcast16_2(int j0, int j1) {
  const __m128i a = _mm_set1_epi16(int16_t((2 * j0) | ((2 * j0 + 1) << 8)));
  const __m128i b = _mm_set1_epi16(int16_t((2 * j1) | ((2 * j1 + 1) << 8)));
  return _mm256_set_m128i(b, a);
}

inline __m256 cvt(__m256i v) { return _mm256_cvtepi32_ps(v); }
inline __m256 cvt128(__m128i v) { return _mm256_cvtepi32_ps(_mm256_zextsi128_si256(v)); }

// Q4_K / Q5_K 6-bit scales (low 8 bytes) and mins (high 8 bytes) of the 8 sub-blocks as bytes:
// scale j < 4 is the low 6 bits of byte j, min j < 4 of byte j + 4; for j >= 4 the low 4 bits
// come from byte j + 4 (scale: low nibble, min: high nibble) and the top 2 bits from the top 2
// bits of byte j - 4 (scale) or byte j (min).
inline void k4_scales(const uint8_t* s, uint64_t& sc, uint64_t& mn) {
  uint32_t a, b, c;
  std::memcpy(&a, s, 4);
  std::memcpy(&b, s + 4, 4);
  std::memcpy(&c, s + 8, 4);
  const uint32_t sc_lo = a & 0x3f3f3f3fu, mn_lo = b & 0x3f3f3f3fu;
  const uint32_t sc_hi = (c & 0x0f0f0f0fu) | (((a >> 6) & 0x03030303u) << 4);
  const uint32_t mn_hi = ((c >> 4) & 0x0f0f0f0fu) | (((b >> 6) & 0x03030303u) << 4);
  sc = uint64_t(sc_lo) | (uint64_t(sc_hi) << 32);
  mn = uint64_t(mn_lo) | (uint64_t(mn_hi) << 32);
}

// sum_j mins[j] * (bsums[2j] + bsums[2j+1]) as 4 int32 lanes.
inline __m128i k4_min_term(const int16_t* bsums, __m128i mins16) {
  const __m256i pairs = _mm256_madd_epi16(load(bsums), _mm256_set1_epi16(1));
  const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1));
  return _mm_madd_epi16(mins16, p16);
}

// Per activation block, computed once per call: the 8 sums of 32 codes (bsums pairs).
struct K4Aux {
  __m128i p16;
};
inline void k4_prep(const block_q8_K* x, int64_t nb, K4Aux* a) {
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i pairs = _mm256_madd_epi16(load(x[b].bsums), _mm256_set1_epi16(1));
    a[b].p16 = _mm_packs_epi32(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1));
  }
}

struct KQ4K {
  using W = block_q4_K;
  using X = block_q8_K;
  using A = K4Aux;
  static void prep(const X* x, int64_t nb, A* a) { k4_prep(x, nb, a); }
  template <int NT>
  static inline void block(const W& w, const X* const* x, const A* const* aux, __m256* acc, float*) {
    uint64_t sc8, mn8;
    k4_scales(w.scales, sc8, mn8);
    const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(sc8))));
    const __m128i mn = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(mn8)));
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256i is[NT];
    for (int t = 0; t < NT; ++t) is[t] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i q = load(w.qs + 32 * c);
      const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      const __m256i slo = _mm256_shuffle_epi8(sc, bcast16(2 * c)), shi = _mm256_shuffle_epi8(sc, bcast16(2 * c + 1));
      for (int t = 0; t < NT; ++t)
        is[t] = acc_u8s8_scaled(acc_u8s8_scaled(is[t], lo, load(x[t]->qs + 64 * c), slo), hi,
                                load(x[t]->qs + 64 * c + 32), shi);
    }
    const float d = h2f(w.d), dm = h2f(w.dmin);
    for (int t = 0; t < NT; ++t) {
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[t]->d), cvt(is[t]), acc[t]);
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(-dm * x[t]->d), cvt128(_mm_madd_epi16(mn, aux[t]->p16)), acc[t]);
    }
  }
};

struct KQ5K {
  using W = block_q5_K;
  using X = block_q8_K;
  using A = K4Aux;
  static void prep(const X* x, int64_t nb, A* a) { k4_prep(x, nb, a); }
  template <int NT>
  static inline void block(const W& w, const X* const* x, const A* const* aux, __m256* acc, float*) {
    uint64_t sc8, mn8;
    k4_scales(w.scales, sc8, mn8);
    const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(sc8))));
    const __m128i mn = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(mn8)));
    const __m256i m4 = _mm256_set1_epi8(0x0F), b1 = _mm256_set1_epi8(1), b2 = _mm256_set1_epi8(2);
    __m256i hb = load(w.qh);
    __m256i is[NT];
    for (int t = 0; t < NT; ++t) is[t] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i q = load(w.qs + 32 * c);
      const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_slli_epi16(_mm256_and_si256(hb, b1), 4));
      const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                         _mm256_slli_epi16(_mm256_and_si256(hb, b2), 3));
      hb = _mm256_srli_epi16(hb, 2);
      const __m256i slo = _mm256_shuffle_epi8(sc, bcast16(2 * c)), shi = _mm256_shuffle_epi8(sc, bcast16(2 * c + 1));
      for (int t = 0; t < NT; ++t)
        is[t] = acc_u8s8_scaled(acc_u8s8_scaled(is[t], lo, load(x[t]->qs + 64 * c), slo), hi,
                                load(x[t]->qs + 64 * c + 32), shi);
    }
    const float d = h2f(w.d), dm = h2f(w.dmin);
    for (int t = 0; t < NT; ++t) {
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[t]->d), cvt(is[t]), acc[t]);
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(-dm * x[t]->d), cvt128(_mm_madd_epi16(mn, aux[t]->p16)), acc[t]);
    }
  }
};

// Q6_K: unsigned 6-bit codes u = q + 32 through maddubs, then -32 * sum_k sc_k * bsums_k.
struct KQ6K {
  using W = block_q6_K;
  using X = block_q8_K;
  template <int NT>
  static inline void block(const W& w, const X* const* x, __m256* acc, float*) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x03), m30 = _mm256_set1_epi8(0x30);
    const __m256i sc_all = _mm256_cvtepi8_epi16(load128(w.scales));
    __m256i is[NT];
    for (int t = 0; t < NT; ++t) is[t] = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_loadl_epi64(
          reinterpret_cast<const __m128i*>(w.scales + 8 * h))));
      const __m256i L0 = load(w.ql + 64 * h), L1 = load(w.ql + 64 * h + 32), H = load(w.qh + 32 * h);
      __m256i v[4];
      v[0] = _mm256_or_si256(_mm256_and_si256(L0, m4), _mm256_slli_epi16(_mm256_and_si256(H, m3), 4));
      v[1] = _mm256_or_si256(_mm256_and_si256(L1, m4), _mm256_slli_epi16(_mm256_and_si256(H, _mm256_set1_epi8(0x0C)), 2));
      v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L0, 4), m4), _mm256_and_si256(H, m30));
      v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L1, 4), m4),
                             _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
      for (int i = 0; i < 4; ++i) {
        const __m256i s = _mm256_shuffle_epi8(sc, bcast16_2(2 * i, 2 * i + 1));
        for (int t = 0; t < NT; ++t)
          is[t] = acc_u8s8_scaled(is[t], v[i], load(x[t]->qs + 128 * h + 32 * i), s);
      }
    }
    const float d = h2f(w.d);
    for (int t = 0; t < NT; ++t) {
      const __m256i bias = _mm256_madd_epi16(sc_all, load(x[t]->bsums));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[t]->d), cvt(_mm256_sub_epi32(is[t], _mm256_slli_epi32(bias, 5))),
                               acc[t]);
    }
  }
};

// Q2_K: element 128h + 32g + l is bits 2g..2g+1 of qs[32h + l]; 16 sub-blocks of 16.
struct KQ2K {
  using W = block_q2_K;
  using X = block_q8_K;
  template <int NT>
  static inline void block(const W& w, const X* const* x, __m256* acc, float*) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i sraw = load128(w.scales);
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sraw, 4), _mm_set1_epi8(0x0F)));
    const __m128i scb = _mm_and_si128(sraw, _mm_set1_epi8(0x0F));
    __m256i is[NT];
    for (int t = 0; t < NT; ++t) is[t] = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(h ? _mm_srli_si128(scb, 8) : scb));
      const __m256i Q = load(w.qs + 32 * h);
      for (int g = 0; g < 4; ++g) {
        const __m256i v = _mm256_and_si256(_mm256_srli_epi16(Q, 2 * g), m3);
        const __m256i s = _mm256_shuffle_epi8(sc, bcast16_2(2 * g, 2 * g + 1));
        for (int t = 0; t < NT; ++t)
          is[t] = acc_u8s8_scaled(is[t], v, load(x[t]->qs + 128 * h + 32 * g), s);
      }
    }
    const float d = h2f(w.d), dm = h2f(w.dmin);
    for (int t = 0; t < NT; ++t) {
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[t]->d), cvt(is[t]), acc[t]);
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(-dm * x[t]->d), cvt(_mm256_madd_epi16(mins, load(x[t]->bsums))), acc[t]);
    }
  }
};

// Q3_K: u = low2 | hbit << 2 = q + 4 in [0, 7] through maddubs, then -4 * sum_k sc_k * bsums_k.
struct KQ3K {
  using W = block_q3_K;
  using X = block_q8_K;
  // The 16 signed 6-bit scales: low 4 bits of scale j from byte j (j < 8, low nibble) or
  // byte j - 8 (high nibble), top 2 bits from byte 8 + j % 4 at bit 2 * (j / 4); bias 32.
  static inline __m128i scales(const uint8_t* s) {
    uint32_t a, b, c;
    std::memcpy(&a, s, 4);
    std::memcpy(&b, s + 4, 4);
    std::memcpy(&c, s + 8, 4);
    const uint32_t k = 0x0f0f0f0fu, k3 = 0x03030303u;
    const uint32_t w0 = (a & k) | ((c & k3) << 4);
    const uint32_t w1 = (b & k) | (((c >> 2) & k3) << 4);
    const uint32_t w2 = ((a >> 4) & k) | (((c >> 4) & k3) << 4);
    const uint32_t w3 = ((b >> 4) & k) | (((c >> 6) & k3) << 4);
    return _mm_sub_epi8(_mm_set_epi32(int(w3), int(w2), int(w1), int(w0)), _mm_set1_epi8(32));
  }
  template <int NT>
  static inline void block(const W& w, const X* const* x, __m256* acc, float*) {
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    const __m128i s8 = scales(w.scales);
    const __m256i sc_all = _mm256_cvtepi8_epi16(s8);
    const __m256i hm = load(w.hmask);
    __m256i is[NT];
    for (int t = 0; t < NT; ++t) is[t] = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(h ? _mm_srli_si128(s8, 8) : s8));
      const __m256i Q = load(w.qs + 32 * h);
      for (int g = 0; g < 4; ++g) {
        const int j = 4 * h + g;
        const __m256i hbit = _mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128(j)), one);
        const __m256i v = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(Q, 2 * g), m3), _mm256_slli_epi16(hbit, 2));
        const __m256i s = _mm256_shuffle_epi8(sc, bcast16_2(2 * g, 2 * g + 1));
        for (int t = 0; t < NT; ++t)
          is[t] = acc_u8s8_scaled(is[t], v, load(x[t]->qs + 128 * h + 32 * g), s);
      }
    }
    const float d = h2f(w.d);
    for (int t = 0; t < NT; ++t) {
      const __m256i bias = _mm256_madd_epi16(sc_all, load(x[t]->bsums));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[t]->d), cvt(_mm256_sub_epi32(is[t], _mm256_slli_epi32(bias, 2))),
                               acc[t]);
    }
  }
};

// IQ4_XS: codebook lookup with pshufb; 32 bytes of qs = sub-blocks 2p and 2p+1.
struct KIQ4XS {
  using W = block_iq4_xs;
  using X = block_q8_K;
  template <int NT>
  static inline void block(const W& w, const X* const* x, __m256* acc, float*) {
    const __m256i tbl = _mm256_broadcastsi128_si256(load128(kvalues_iq4nl));
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    // Scale ib = (nibble ib of scales_l | bits 2ib..2ib+1 of scales_h << 4) - 32, in int32 lanes.
    uint32_t sl;
    std::memcpy(&sl, w.scales_l, 4);
    const __m256i lo4 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(sl)), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                                         _mm256_set1_epi32(0xF));
    const __m256i hi2 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(w.scales_h), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                                         _mm256_set1_epi32(3));
    const __m256i ls32 = _mm256_sub_epi32(_mm256_or_si256(lo4, _mm256_slli_epi32(hi2, 4)), _mm256_set1_epi32(32));
    const __m128i ls16 = _mm_packs_epi32(_mm256_castsi256_si128(ls32), _mm256_extracti128_si256(ls32, 1));
    const __m256i sc = _mm256_broadcastsi128_si256(ls16);
    __m256i is[NT];
    for (int t = 0; t < NT; ++t) is[t] = _mm256_setzero_si256();
    for (int p = 0; p < 4; ++p) {
      const __m256i q = load(w.qs + 32 * p);
      const __m256i lo = _mm256_shuffle_epi8(tbl, _mm256_and_si256(q, m4));
      const __m256i hi = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
      const __m256i A = _mm256_permute2x128_si256(lo, hi, 0x20), B = _mm256_permute2x128_si256(lo, hi, 0x31);
      const __m256i aA = _mm256_abs_epi8(A), aB = _mm256_abs_epi8(B);
      const __m256i sA = _mm256_shuffle_epi8(sc, bcast16(2 * p)), sB = _mm256_shuffle_epi8(sc, bcast16(2 * p + 1));
      for (int t = 0; t < NT; ++t) {
        const __m256i xa = _mm256_sign_epi8(load(x[t]->qs + 64 * p), A);
        const __m256i xb = _mm256_sign_epi8(load(x[t]->qs + 64 * p + 32), B);
        is[t] = acc_u8s8_scaled(acc_u8s8_scaled(is[t], aA, xa, sA), aB, xb, sB);
      }
    }
    const float d = h2f(w.d);
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[t]->d), cvt(is[t]), acc[t]);
  }
};

// ---- 32-value blocks ----
// 16 packed nibbles -> 32 bytes in element order (low nibbles = elements 0..15).
inline __m256i nibbles32(const uint8_t* qs) {
  const __m128i q = load128(qs);
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}
// Bit j of the little-endian 32-bit qh -> 0x10 in byte j.
inline __m256i qh_bits(const uint8_t* qh) {
  uint32_t v;
  std::memcpy(&v, qh, 4);
  const __m256i rep = _mm256_shuffle_epi8(_mm256_set1_epi32(int(v)),
                                          _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                                            0x0101010101010101LL, 0x0000000000000000LL));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201ULL));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(rep, bit), bit), _mm256_set1_epi8(0x10));
}

template <class Unpack, class Wt>
struct KSym32 {  // w = d * signed int8 codes; activations Q8_0
  using W = Wt;
  using X = block_q8_0;
  using A = float;  // activation scale as f32, converted once per call
  static void prep(const X* x, int64_t nb, A* a) {
    for (int64_t b = 0; b < nb; ++b) a[b] = h2f(x[b].d);
  }
  template <int NT>
  static inline void block(const W& w, const X* const* x, const A* const* aux, __m256* acc, float*) {
    const __m256i ws = Unpack::get(w);
    const __m256i aw = _mm256_abs_epi8(ws);
    const float d = h2f(w.d);
    for (int t = 0; t < NT; ++t) {
      const __m256i p = dot_u8s8(aw, _mm256_sign_epi8(load(x[t]->qs), ws));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * *aux[t]), cvt(p), acc[t]);
    }
  }
};
struct UQ8_0 {
  static inline __m256i get(const block_q8_0& w) { return load(w.qs); }
};
struct UQ4_0 {
  static inline __m256i get(const block_q4_0& w) { return _mm256_sub_epi8(nibbles32(w.qs), _mm256_set1_epi8(8)); }
};
struct UQ5_0 {
  static inline __m256i get(const block_q5_0& w) {
    return _mm256_sub_epi8(_mm256_or_si256(nibbles32(w.qs), qh_bits(w.qh)), _mm256_set1_epi8(16));
  }
};
struct UIQ4NL {
  static inline __m256i get(const block_iq4_nl& w) {
    return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(load128(kvalues_iq4nl)), nibbles32(w.qs));
  }
};

template <class Unpack, class Wt>
struct KAff32 {  // w = d * unsigned code + m; activations Q8_1 (s = d * sum q)
  using W = Wt;
  using X = block_q8_1;
  struct A {
    float d, s;
  };
  static void prep(const X* x, int64_t nb, A* a) {
    for (int64_t b = 0; b < nb; ++b) a[b] = {h2f(x[b].d), h2f(x[b].s)};
  }
  template <int NT>
  static inline void block(const W& w, const X* const* x, const A* const* aux, __m256* acc, float* extra) {
    const __m256i wu = Unpack::get(w);
    const float d = h2f(w.d), m = h2f(w.m);
    for (int t = 0; t < NT; ++t) {
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * aux[t]->d), cvt(dot_u8s8(wu, load(x[t]->qs))), acc[t]);
      extra[t] += m * aux[t]->s;
    }
  }
};
struct UQ4_1 {
  static inline __m256i get(const block_q4_1& w) { return nibbles32(w.qs); }
};
struct UQ5_1 {
  static inline __m256i get(const block_q5_1& w) { return _mm256_or_si256(nibbles32(w.qs), qh_bits(w.qh)); }
};

// ---- drivers ----
// Kernels with a per-activation-block precomputation (K::A, K::prep) get it once per call.
template <class K>
concept HasAux = requires { typename K::A; };
struct NoAux {};
template <class K>
struct AuxOf {
  using type = NoAux;
};
template <HasAux K>
struct AuxOf<K> {
  using type = typename K::A;
};

template <class K, int NT, class A>
inline void pass(const typename K::W* w, const uint8_t* x0, int64_t x_bytes, const A* a0, int64_t nb, float* y,
                 int64_t ys) {
  using X = typename K::X;
  __m256 acc[NT];
  float extra[NT];
  const X* xr[NT];
  const A* ar[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm256_setzero_ps();
    extra[t] = 0;
    xr[t] = reinterpret_cast<const X*>(x0 + t * x_bytes);
    ar[t] = a0 + t * nb;
  }
  for (int64_t b = 0; b < nb; ++b) {
    const X* xb[NT];
    for (int t = 0; t < NT; ++t) xb[t] = xr[t] + b;
    if constexpr (HasAux<K>) {
      const A* ab[NT];
      for (int t = 0; t < NT; ++t) ab[t] = ar[t] + b;
      K::template block<NT>(w[b], xb, ab, acc, extra);
    } else {
      K::template block<NT>(w[b], xb, acc, extra);
    }
  }
  for (int t = 0; t < NT; ++t) y[t * ys] = hsum(acc[t]) + extra[t];
}

template <class K>
void rows(const Args& a) {
  using W = typename K::W;
  using X = typename K::X;
  using A = typename AuxOf<K>::type;
  static thread_local std::vector<A> aux_buf;
  const A* aux = nullptr;
  if constexpr (HasAux<K>) {
    if (int64_t(aux_buf.size()) < a.n_tok * a.nb) aux_buf.resize(a.n_tok * a.nb);
    for (int64_t t = 0; t < a.n_tok; ++t)
      K::prep(reinterpret_cast<const X*>(a.x + t * a.x_bytes), a.nb, aux_buf.data() + t * a.nb);
    aux = aux_buf.data();
  }
  for (int64_t r = 0; r < a.nrows; ++r) {
    const W* w = reinterpret_cast<const W*>(a.w + r * a.row_bytes);
    float* y = a.y + r;
    int64_t t = 0;
    auto at = [&](int64_t tt) { return HasAux<K> ? aux + tt * a.nb : aux; };
    for (; t + 4 <= a.n_tok; t += 4)
      pass<K, 4>(w, a.x + t * a.x_bytes, a.x_bytes, at(t), a.nb, y + t * a.y_stride, a.y_stride);
    switch (a.n_tok - t) {
      case 3: pass<K, 3>(w, a.x + t * a.x_bytes, a.x_bytes, at(t), a.nb, y + t * a.y_stride, a.y_stride); break;
      case 2: pass<K, 2>(w, a.x + t * a.x_bytes, a.x_bytes, at(t), a.nb, y + t * a.y_stride, a.y_stride); break;
      case 1: pass<K, 1>(w, a.x + t * a.x_bytes, a.x_bytes, at(t), a.nb, y + t * a.y_stride, a.y_stride); break;
      default: break;
    }
  }
}

// ---- float weights (nb = number of values) ----
struct FF32 {
  static inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
  static inline float one(float v) { return v; }
  using T = float;
};
struct FF16 {
  static inline __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(load128(p)); }
  static inline float one(uint16_t v) { return h2f(v); }
  using T = uint16_t;
};
struct FBF16 {
  static inline __m256 load8(const uint16_t* p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p)), 16));
  }
  static inline float one(uint16_t v) { return bf16_to_f32(v); }
  using T = uint16_t;
};
template <class F>
void rows_float(const Args& a) {
  using T = typename F::T;
  for (int64_t r = 0; r < a.nrows; ++r) {
    const T* w = reinterpret_cast<const T*>(a.w + r * a.row_bytes);
    for (int64_t t = 0; t < a.n_tok; ++t) {
      const T* x = reinterpret_cast<const T*>(a.x + t * a.x_bytes);
      __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
      int64_t i = 0;
      for (; i + 16 <= a.nb; i += 16) {
        s0 = _mm256_fmadd_ps(F::load8(w + i), F::load8(x + i), s0);
        s1 = _mm256_fmadd_ps(F::load8(w + i + 8), F::load8(x + i + 8), s1);
      }
      for (; i + 8 <= a.nb; i += 8) s0 = _mm256_fmadd_ps(F::load8(w + i), F::load8(x + i), s0);
      float s = hsum(_mm256_add_ps(s0, s1));
      for (; i < a.nb; ++i) s += F::one(w[i]) * F::one(x[i]);
      a.y[t * a.y_stride + r] = s;
    }
  }
}

inline Kernel kernel_for(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return rows_float<FF32>;
    case GgmlType::F16: return rows_float<FF16>;
    case GgmlType::BF16: return rows_float<FBF16>;
    case GgmlType::Q4_0: return rows<KSym32<UQ4_0, block_q4_0>>;
    case GgmlType::Q5_0: return rows<KSym32<UQ5_0, block_q5_0>>;
    case GgmlType::Q8_0: return rows<KSym32<UQ8_0, block_q8_0>>;
    case GgmlType::IQ4_NL: return rows<KSym32<UIQ4NL, block_iq4_nl>>;
    case GgmlType::Q4_1: return rows<KAff32<UQ4_1, block_q4_1>>;
    case GgmlType::Q5_1: return rows<KAff32<UQ5_1, block_q5_1>>;
    case GgmlType::Q2_K: return rows<KQ2K>;
    case GgmlType::Q3_K: return rows<KQ3K>;
    case GgmlType::Q4_K: return rows<KQ4K>;
    case GgmlType::Q5_K: return rows<KQ5K>;
    case GgmlType::Q6_K: return rows<KQ6K>;
    case GgmlType::IQ4_XS: return rows<KIQ4XS>;
    default: return nullptr;
  }
}
