// Repacked int8 GEMM for many-token matmuls (prefill, batched decode) over quantized weights.
//
// A weight matrix is repacked once (at model load, Ops::prepare_weight) into groups of 16 output
// rows. Per group and per activation block ("superblock": 256 values for Q8_K activations, 32 for
// Q8_0) the layout is (64-byte aligned)
//   codes     [SB/4 k-groups][16 rows][4 consecutive k] u8 (SB*16 bytes), or for codes < 16
//             (Q4_K, Q4_0, Q3_K, Q2_K) two k-groups per byte: k-group 2m in the low nibbles,
//             2m+1 in the high nibbles of [m][16 rows][4] (SB*8 bytes); IQ4_XS/IQ4_NL the same
//             with codebook indices (looked up by vpshufb)
//   sc  [J][16 rows] int8   sub-block scales (only when J > 1)
//   min [J/2][16 rows][2] int16  sub-block mins as pairs (affine types)
//   d   [16 rows] f32, dmin [16 rows] f32 (affine types)
// so that dequantized weight = (d * sc_j) * (u - off) - dmin * min_j for the code u: the type's
// quant value made unsigned by a per-type offset (Q6_K +32, Q8_0/IQ4 +128, ...). d * sc_j and
// dmin * min_j are exact in float (11-bit x 8-bit), so this equals ggml's dequantization. The
// packed matrix is about as large as the GGUF one (Q4_K 1.11x, Q8_0 1.06x, IQ4_XS 1.1x, Q6_K
// 1.31x, Q5_K and Q5_0 ~1.7x: codes kept as bytes), held next to the mmapped original, which one-token matmuls
// still read (fused kernels, see ops_cpu.cpp packed_min_tokens).
// A tile of 16 rows x NT tokens is then computed by vpdpbusd (u8 weights x s8 activations,
// 4 k-values per 32-bit lane) into int32 sub-block sums that start at -off * sum(x of the
// sub-block), times the int8 sub-block scale (vpmulld) into an exact int32 superblock sum, and
// mins times activation sums by vpdpwssd; per superblock then, as ggml's vec_dot kernels,
// acc += d * xd * isum - dmin * xd * msum. Only the float accumulation over superblocks differs
// in order from ggml (and from quant_dot_ref.cpp).
//
// Covered weight types: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS (Q8_K activations), Q4_0, Q5_0,
// Q8_0, IQ4_NL (Q8_0 activations). Every path has a scalar reference (packed_gemm_ref), tested
// against quant_dot's scalar kernels; the AVX-512 VNNI kernel is tested against it. On CPUs
// without AVX-512 VNNI, pack_weight returns nullptr (matmul keeps the fused / sgemm paths).
// SAMQ_REPACK=0 disables repacking.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/ops.h"
#include "core/ggml_type.h"

namespace samq::cpu {

constexpr int kPackRows = 16;  // output rows per group

struct PackedWeight final : PreparedWeight {
  GgmlType type = GgmlType::F32;
  int64_t rows = 0, cols = 0;
  int S = 32;          // values per sub-block (one scale)
  int SB = 256;        // values per superblock (activation block)
  int J = 8;           // sub-blocks per superblock
  int off = 0;         // u = q + off
  bool has_min = false;
  bool nib = false;    // codes stored as nibbles
  bool lut = false;    // nibbles are indices into kvalues_iq4nl + 128 (IQ4_XS, IQ4_NL)
  int64_t off_sc = 0, off_min = 0, off_d = 0;  // byte offsets inside a (group, superblock)
  int64_t groups = 0;  // ceil(rows / 16)
  int64_t nsb = 0;     // superblocks per row
  int64_t sb_bytes = 0;  // bytes per (group, superblock)
  // groups * nsb * sb_bytes, 64-byte aligned (vector<uint8_t> over-allocated, base rounded up).
  std::vector<uint8_t> storage;
  uint8_t* base = nullptr;

  const uint8_t* block(int64_t g, int64_t b) const { return base + (g * nsb + b) * sb_bytes; }
  int64_t bytes() const { return int64_t(storage.size()); }
};

// True when pack_weight can repack this type (independent of the CPU).
bool packable(GgmlType t);
// Repack w (rows x cols of a packable type, cols a multiple of the type's superblock). Returns
// nullptr when the type is not packable or w.cols does not fit. Parallel over row groups.
std::unique_ptr<PackedWeight> pack_weight(const WeightView& w);
// Repacked weights enabled: CPU has AVX-512 VNNI (the kernel) and SAMQ_REPACK is not "0".
bool repack_enabled();
// The AVX-512 VNNI kernel is available on this CPU.
bool packed_simd_supported();

// Dequantized row r of a packed weight (tests: must equal dequantize_weight_row).
void packed_dequant_row(const PackedWeight& p, int64_t r, float* out);

// Quantized activations in the form the packed kernels read: per token, the int8 codes
// (cols, contiguous), the activation block scales d (nsb), -off * sum of codes per sub-block
// (nsb*J, int32) and, for affine weights, the sums per sub-block as int16 pairs.
struct PackedActs {
  int64_t n = 0, cols = 0, nsub = 0, nsb = 0;
  std::vector<int8_t> q;
  std::vector<float> d;
  std::vector<int32_t> xoff;
  std::vector<int32_t> xpair;  // affine weights: int16 pairs of per-sub-block sums (nsb*J/2)
};
// Quantize x (n, cols) as ggml does for p's type (act_quant.h) and lay it out for p.
void pack_activations(const PackedWeight& p, const float* x, int64_t n, PackedActs& a);

// y[t * y_stride + r] for tokens [t0, t1) and rows of groups [g0, g1) (rows past p.rows are
// not written). Token tiles start at t0 in steps of 8: callers keep t0 fixed by the shape.
void packed_gemm_ref(const PackedWeight& p, const PackedActs& a, int64_t g0, int64_t g1, int64_t t0, int64_t t1,
                     float* y, int64_t y_stride);
void packed_gemm_avx512(const PackedWeight& p, const PackedActs& a, int64_t g0, int64_t g1, int64_t t0,
                        int64_t t1, float* y, int64_t y_stride);
// The best available of the two.
void packed_gemm(const PackedWeight& p, const PackedActs& a, int64_t g0, int64_t g1, int64_t t0, int64_t t1,
                 float* y, int64_t y_stride);

}  // namespace samq::cpu
