// Repacked int8 GEMM (backend/cpu/packed_gemm.h) against independent oracles:
// - the packed layout dequantizes to exactly what src/quant's reference dequantizer gives;
// - the scalar packed kernel matches double sums of dequantized weights x ggml-rounded
//   activations (round_activations), on realistic (quantizer) and random-byte blocks;
// - the AVX-512 VNNI kernel matches the scalar packed kernel for every token count 1..70 and
//   rows not a multiple of 16 (skipped without AVX-512 VNNI);
// - cpu_ops().matmul with a prepared weight matches the unprepared matmul (fused kernels), is
//   independent of the thread count, and SAMQ_REPACK=0 turns repacking off.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/packed_gemm.h"
#include "backend/ops.h"
#include "common/random.h"
#include "core/fp16.h"
#include "core/parallel.h"
#include "quant/blocks.h"
#include "quant/quantize.h"
#include "quant/quants_ref.h"

using namespace samq;
using namespace samq::cpu;

namespace {

const GgmlType kTypes[] = {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q5_K, GgmlType::Q3_K,
                           GgmlType::Q2_K, GgmlType::IQ4_XS, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::IQ4_NL};

using test::randn;

int64_t sb_of(GgmlType t) { return ggml_type_info(t).block_size; }

template <class B>
void fix_scales(uint8_t* p, int64_t nblocks, std::mt19937& g) {
  std::uniform_real_distribution<float> u(-0.02f, 0.02f);
  for (int64_t i = 0; i < nblocks; ++i) {
    B b;
    std::memcpy(&b, p + i * sizeof(B), sizeof(B));
    b.d = f32_to_fp16(u(g));
    if constexpr (requires { b.dmin; }) b.dmin = f32_to_fp16(u(g));
    std::memcpy(p + i * sizeof(B), &b, sizeof(B));
  }
}

// Quantizer output (random_bytes false) or random bytes with finite fp16 scales (every code and
// scale bit pattern: Q8_0 code -128, Q6_K scale -128, negative dmin ...).
std::vector<uint8_t> weight(GgmlType t, int64_t rows, int64_t cols, bool random_bytes, std::mt19937& g) {
  const int64_t rb = ggml_row_size(t, cols);
  std::vector<uint8_t> w(rows * rb);
  if (!random_bytes) {
    const auto src = randn(rows * cols, g, 0.05f);
    for (int64_t r = 0; r < rows; ++r) quantize_row(t, src.data() + r * cols, w.data() + r * rb, cols, nullptr);
    return w;
  }
  for (auto& b : w) b = uint8_t(g());
  const int64_t nb = rows * (cols / sb_of(t));
  switch (t) {
    case GgmlType::Q4_0: fix_scales<block_q4_0>(w.data(), nb, g); break;
    case GgmlType::Q5_0: fix_scales<block_q5_0>(w.data(), nb, g); break;
    case GgmlType::Q8_0: fix_scales<block_q8_0>(w.data(), nb, g); break;
    case GgmlType::Q2_K: fix_scales<block_q2_K>(w.data(), nb, g); break;
    case GgmlType::Q3_K: fix_scales<block_q3_K>(w.data(), nb, g); break;
    case GgmlType::Q4_K: fix_scales<block_q4_K>(w.data(), nb, g); break;
    case GgmlType::Q5_K: fix_scales<block_q5_K>(w.data(), nb, g); break;
    case GgmlType::Q6_K: fix_scales<block_q6_K>(w.data(), nb, g); break;
    case GgmlType::IQ4_NL: fix_scales<block_iq4_nl>(w.data(), nb, g); break;
    case GgmlType::IQ4_XS: fix_scales<block_iq4_xs>(w.data(), nb, g); break;
    default: ADD_FAILURE() << "no random blocks for " << ggml_type_name(t);
  }
  return w;
}

WeightView view_of(GgmlType t, int64_t rows, int64_t cols, const std::vector<uint8_t>& w) {
  WeightView v;
  v.type = t;
  v.rows = rows;
  v.cols = cols;
  v.data = w.data();
  v.row_bytes = ggml_row_size(t, cols);
  return v;
}

// Scalar packed kernel against double sums of dequantize_row_ref(W) x round_activations(x).
void check_ref(GgmlType t, int64_t rows, int64_t cols, int64_t n, bool random_bytes, uint32_t seed) {
  std::mt19937 g(seed);
  const auto w = weight(t, rows, cols, random_bytes, g);
  const WeightView v = view_of(t, rows, cols, w);
  const auto p = pack_weight(v);
  ASSERT_TRUE(p) << ggml_type_name(t);
  const auto x = randn(n * cols, g, 1.0f);
  PackedActs a;
  pack_activations(*p, x.data(), n, a);
  std::vector<float> y(n * rows, -7.0f);
  packed_gemm_ref(*p, a, 0, p->groups, 0, n, y.data(), rows);
  std::vector<float> xr(cols), wr(cols);
  for (int64_t t_ = 0; t_ < n; ++t_) {
    round_activations(act_type_for(t), x.data() + t_ * cols, xr.data(), cols);
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row_ref(t, w.data() + r * v.row_bytes, wr.data(), cols);
      double s = 0, m = 0;
      for (int64_t i = 0; i < cols; ++i) {
        s += double(wr[i]) * double(xr[i]);
        m += std::fabs(double(wr[i]) * double(xr[i]));
      }
      ASSERT_NEAR(y[t_ * rows + r], s, 2e-5 * m + 1e-30)
          << ggml_type_name(t) << " rows " << rows << " cols " << cols << " n " << n << " row " << r << " tok " << t_
          << (random_bytes ? " random bytes" : " quantized");
    }
  }
}

}  // namespace

TEST(PackedGemm, CoversTheBenchmarkTypes) {
  for (GgmlType t : kTypes) EXPECT_TRUE(packable(t)) << ggml_type_name(t);
  EXPECT_FALSE(packable(GgmlType::F32));
  EXPECT_FALSE(packable(GgmlType::Q4_1));
  std::vector<uint8_t> w(ggml_row_size(GgmlType::Q4_K, 512) * 3);
  EXPECT_FALSE(pack_weight(view_of(GgmlType::Q4_1, 3, 512, w)));
}

TEST(PackedGemm, LayoutDequantizesAsReference) {
  std::mt19937 g(1);
  for (GgmlType t : kTypes)
    for (bool rnd : {false, true}) {
      const int64_t rows = 21, cols = 2 * sb_of(t) * (sb_of(t) == 32 ? 3 : 1);
      const auto w = weight(t, rows, cols, rnd, g);
      const WeightView v = view_of(t, rows, cols, w);
      const auto p = pack_weight(v);
      ASSERT_TRUE(p);
      std::vector<float> want(cols), got(cols);
      for (int64_t r = 0; r < rows; ++r) {
        dequantize_row_ref(t, w.data() + r * v.row_bytes, want.data(), cols);
        packed_dequant_row(*p, r, got.data());
        for (int64_t i = 0; i < cols; ++i)
          ASSERT_NEAR(got[i], want[i], 1e-6 * std::fabs(want[i]) + 1e-12)
              << ggml_type_name(t) << " row " << r << " col " << i << (rnd ? " random" : "");
      }
    }
}

TEST(PackedGemm, ScalarKernelMatchesDequantizedOracle) {
  uint32_t seed = 10;
  for (GgmlType t : kTypes) {
    const int64_t b = sb_of(t);
    check_ref(t, 21, b, 3, false, seed++);
    check_ref(t, 16, b == 32 ? 288 : 768, 9, false, seed++);
    check_ref(t, 5, 2 * b, 2, true, seed++);
    check_ref(t, 33, b == 32 ? 96 : 512, 1, true, seed++);
  }
}

TEST(PackedGemm, SimdMatchesScalarKernelAllTokenCounts) {
  if (!packed_simd_supported()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  std::mt19937 g(3);
  for (GgmlType t : kTypes)
    for (bool rnd : {false, true}) {
      const int64_t rows = 37, cols = sb_of(t) == 32 ? 160 : 768, nmax = 70;
      const auto w = weight(t, rows, cols, rnd, g);
      const auto p = pack_weight(view_of(t, rows, cols, w));
      const auto x = randn(nmax * cols, g, 1.0f);
      PackedActs a;
      pack_activations(*p, x.data(), nmax, a);
      std::vector<float> ref(nmax * rows);
      packed_gemm_ref(*p, a, 0, p->groups, 0, nmax, ref.data(), rows);
      // Tolerance from the sizes of the summed terms, sum |w| |x| (the min terms cancel).
      std::vector<double> mag(nmax * rows);
      std::vector<float> wr(cols), xr(cols);
      for (int64_t r = 0; r < rows; ++r) {
        packed_dequant_row(*p, r, wr.data());
        for (int64_t k = 0; k < nmax; ++k) {
          round_activations(act_type_for(t), x.data() + k * cols, xr.data(), cols);
          double m = 0;
          for (int64_t i = 0; i < cols; ++i) m += std::fabs(double(wr[i]) * double(xr[i]));
          mag[k * rows + r] = m;
        }
      }
      for (int64_t n = 1; n <= nmax; n += (n < 20 ? 1 : 7)) {
        // Row stride larger than rows: the padding between rows must stay untouched.
        const int64_t ys = rows + 5;
        std::vector<float> y(n * ys, -7.0f);
        packed_gemm_avx512(*p, a, 0, p->groups, 0, n, y.data(), ys);
        for (int64_t k = 0; k < n; ++k) {
          for (int64_t r = 0; r < rows; ++r)
            ASSERT_NEAR(y[k * ys + r], ref[k * rows + r], 2e-6 * mag[k * rows + r] + 1e-30)
                << ggml_type_name(t) << " n " << n << " row " << r << " tok " << k;
          for (int64_t r = rows; r < ys; ++r) ASSERT_EQ(y[k * ys + r], -7.0f);
        }
      }
    }
}

TEST(PackedGemm, MatmulWithPreparedWeightMatchesFusedAndIgnoresThreads) {
  const Ops& ops = cpu_ops();
  std::mt19937 g(5);
  const int saved = num_threads();
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::IQ4_XS}) {
    const int64_t rows = 70, cols = sb_of(t) == 32 ? 320 : 512;
    const auto w = weight(t, rows, cols, false, g);
    WeightView v = view_of(t, rows, cols, w);
    const auto prep = ops.prepare_weight(v);
    if (!repack_enabled()) {
      EXPECT_FALSE(prep);
      continue;
    }
    ASSERT_TRUE(prep);
    const auto bias = randn(rows, g, 1.0f);
    for (int64_t n : {1, 2, 5, 8, 13, 64, 70}) {
      const auto x = randn(n * cols, g, 1.0f);
      std::vector<float> plain(n * rows), packed1(n * rows), packed2(n * rows);
      // Reference: the fused kernels (few tokens) or dequantize + sgemm, same rounding of x.
      v.prepared = nullptr;
      ops.matmul(x.data(), n, v, bias.data(), plain.data());
      v.prepared = prep.get();
      set_num_threads(1);
      ops.matmul(x.data(), n, v, bias.data(), packed1.data());
      set_num_threads(2);
      ops.matmul(x.data(), n, v, bias.data(), packed2.data());
      set_num_threads(saved);
      for (int64_t i = 0; i < n * rows; ++i) {
        ASSERT_NEAR(packed1[i], plain[i], 1e-4 * (std::fabs(plain[i]) + 1.0)) << ggml_type_name(t) << " n " << n;
        ASSERT_EQ(packed1[i], packed2[i]) << ggml_type_name(t) << " n " << n << " differs between 1 and 2 threads";
      }
    }
  }
  set_num_threads(saved);
}

TEST(PackedGemm, RepackCanBeTurnedOff) {
  std::mt19937 g(8);
  const auto w = weight(GgmlType::Q4_K, 16, 256, false, g);
  setenv("SAMQ_REPACK", "0", 1);
  EXPECT_FALSE(cpu_ops().prepare_weight(view_of(GgmlType::Q4_K, 16, 256, w)));
  EXPECT_FALSE(repack_enabled());
  unsetenv("SAMQ_REPACK");
  EXPECT_EQ(repack_enabled(), packed_simd_supported());
  // The scalar oracle never prepares anything.
  EXPECT_FALSE(reference_ops().prepare_weight(view_of(GgmlType::Q4_K, 16, 256, w)));
}
