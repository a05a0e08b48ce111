// quant_dot.h kernels against an independent oracle: sum over i of dequantize_row_ref(W)[i] *
// round_activations(x)[i] in double (the dequantizers of src/quant, not the kernels' integer
// arithmetic), for every type and every instruction-set variant this CPU supports, on odd shapes
// (rows not a multiple of 4, n_tok 1..9, cols from one block up to 4096). Weights come from
// samq's quantizer (realistic blocks) and from random bytes (every bit pattern of codes and
// scales, e.g. Q6_K scale -128, Q8_0 code -128).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/quant_dot.h"
#include "common/random.h"
#include "core/fp16.h"
#include "core/ggml_type.h"
#include "quant/quantize.h"
#include "quant/quants_ref.h"

using namespace samq;
using namespace samq::cpu;

namespace {

const GgmlType kTypes[] = {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q5_K, GgmlType::Q3_K,
                           GgmlType::Q2_K, GgmlType::IQ4_XS, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::IQ4_NL,
                           GgmlType::Q4_1, GgmlType::Q5_1, GgmlType::F16, GgmlType::BF16, GgmlType::F32};

using test::randn;

bool is_float(GgmlType t) { return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16; }

std::vector<uint8_t> quantized_weight(GgmlType t, int64_t rows, int64_t cols, std::mt19937& g) {
  const auto src = randn(rows * cols, g, 0.05f);
  const int64_t rb = ggml_row_size(t, cols);
  std::vector<uint8_t> w(rows * rb);
  for (int64_t r = 0; r < rows; ++r) {
    if (t == GgmlType::F32) {
      std::memcpy(w.data() + r * rb, src.data() + r * cols, rb);
    } else if (t == GgmlType::F16) {
      auto* h = reinterpret_cast<uint16_t*>(w.data() + r * rb);
      for (int64_t i = 0; i < cols; ++i) h[i] = f32_to_fp16(src[r * cols + i]);
    } else if (t == GgmlType::BF16) {
      auto* h = reinterpret_cast<uint16_t*>(w.data() + r * rb);
      for (int64_t i = 0; i < cols; ++i) h[i] = f32_to_bf16(src[r * cols + i]);
    } else {
      quantize_row(t, src.data() + r * cols, w.data() + r * rb, cols, nullptr);
    }
  }
  return w;
}

// Random bytes everywhere, then the fp16 scale fields set to finite values of either sign.
template <class B>
void fix_scales(uint8_t* p, int64_t nblocks, std::mt19937& g, bool has_min) {
  std::uniform_real_distribution<float> u(-0.02f, 0.02f);
  for (int64_t i = 0; i < nblocks; ++i) {
    B b;
    std::memcpy(&b, p + i * sizeof(B), sizeof(B));
    b.d = f32_to_fp16(u(g));
    if constexpr (requires { b.dmin; }) b.dmin = f32_to_fp16(has_min ? u(g) : 0.f);
    if constexpr (requires { b.m; }) b.m = f32_to_fp16(u(g));
    std::memcpy(p + i * sizeof(B), &b, sizeof(B));
  }
}

std::vector<uint8_t> random_weight(GgmlType t, int64_t rows, int64_t cols, std::mt19937& g) {
  if (is_float(t)) return quantized_weight(t, rows, cols, g);
  const int64_t rb = ggml_row_size(t, cols);
  std::vector<uint8_t> w(rows * rb);
  for (auto& b : w) b = uint8_t(g());
  const int64_t nblk = rows * (cols / ggml_type_info(t).block_size);
  switch (t) {
    case GgmlType::Q4_0: fix_scales<block_q4_0>(w.data(), nblk, g, false); break;
    case GgmlType::Q4_1: fix_scales<block_q4_1>(w.data(), nblk, g, true); break;
    case GgmlType::Q5_0: fix_scales<block_q5_0>(w.data(), nblk, g, false); break;
    case GgmlType::Q5_1: fix_scales<block_q5_1>(w.data(), nblk, g, true); break;
    case GgmlType::Q8_0: fix_scales<block_q8_0>(w.data(), nblk, g, false); break;
    case GgmlType::Q2_K: fix_scales<block_q2_K>(w.data(), nblk, g, true); break;
    case GgmlType::Q3_K: fix_scales<block_q3_K>(w.data(), nblk, g, false); break;
    case GgmlType::Q4_K: fix_scales<block_q4_K>(w.data(), nblk, g, true); break;
    case GgmlType::Q5_K: fix_scales<block_q5_K>(w.data(), nblk, g, true); break;
    case GgmlType::Q6_K: fix_scales<block_q6_K>(w.data(), nblk, g, false); break;
    case GgmlType::IQ4_NL: fix_scales<block_iq4_nl>(w.data(), nblk, g, false); break;
    case GgmlType::IQ4_XS: fix_scales<block_iq4_xs>(w.data(), nblk, g, false); break;
    default: ADD_FAILURE() << "no random blocks for " << ggml_type_name(t);
  }
  return w;
}

std::vector<float> dequant(GgmlType t, const uint8_t* row, int64_t cols) {
  std::vector<float> v(cols);
  if (t == GgmlType::F32) std::memcpy(v.data(), row, 4 * cols);
  else if (t == GgmlType::F16)
    for (int64_t i = 0; i < cols; ++i) v[i] = fp16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
  else if (t == GgmlType::BF16)
    for (int64_t i = 0; i < cols; ++i) v[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
  else dequantize_row_ref(t, row, v.data(), cols);
  return v;
}

std::vector<DotIsa> isas() {
  std::vector<DotIsa> v{DotIsa::Ref};
  if (dot_isa_supported(DotIsa::Avx2)) v.push_back(DotIsa::Avx2);
  if (dot_isa_supported(DotIsa::Avx512)) v.push_back(DotIsa::Avx512);
  return v;
}

// Checks every supported variant of type t on one shape against the double oracle.
void check_shape(GgmlType t, int64_t rows, int64_t cols, int64_t n_tok, bool random_bytes, uint32_t seed) {
  std::mt19937 g(seed);
  const auto w = random_bytes ? random_weight(t, rows, cols, g) : quantized_weight(t, rows, cols, g);
  const int64_t rb = ggml_row_size(t, cols);
  const auto x = randn(n_tok * cols, g, 1.0f);
  std::vector<uint8_t> xq(n_tok * act_row_bytes(t, cols));
  quantize_activations(t, x.data(), n_tok, cols, xq.data());
  // Oracle: double sums of dequantized weights and rounded activations; `mag` = sum |w||x|.
  std::vector<double> want(n_tok * rows), mag(n_tok * rows);
  std::vector<float> xr(cols);
  for (int64_t k = 0; k < n_tok; ++k) {
    round_activations(act_type_for(t), x.data() + k * cols, xr.data(), cols);
    for (int64_t r = 0; r < rows; ++r) {
      const auto wr = dequant(t, w.data() + r * rb, cols);
      double s = 0, m = 0;
      for (int64_t i = 0; i < cols; ++i) {
        s += double(wr[i]) * double(xr[i]);
        m += std::fabs(double(wr[i]) * double(xr[i]));
      }
      want[k * rows + r] = s;
      mag[k * rows + r] = m;
    }
  }
  // Q4_1/Q5_1 use the activation sum s of Q8_1 rounded to fp16 (as ggml does): ~2^-11 relative.
  const bool q8_1 = act_type_for(t) == ActType::Q8_1;
  const double rel = q8_1 ? 2e-3 : 2e-5;
  for (DotIsa isa : isas()) {
    // Rows [1, rows) with a stride larger than rows: row 0 and the padding stay untouched.
    const int64_t ys = rows + 3;
    std::vector<float> y(n_tok * ys, -7.0f);
    dot_rows_isa(isa, t, w.data(), rb, 1, rows, xq.data(), n_tok, cols, y.data(), ys);
    for (int64_t k = 0; k < n_tok; ++k) {
      EXPECT_EQ(y[k * ys], -7.0f);
      for (int64_t r = 1; r < rows; ++r) {
        const double tol = rel * mag[k * rows + r] + 1e-30;
        ASSERT_NEAR(y[k * ys + r], want[k * rows + r], tol)
            << ggml_type_name(t) << " " << dot_isa_name(isa) << " (runs " << dot_isa_name(dot_isa_effective(t, isa))
            << ") rows " << rows << " cols " << cols << " n_tok " << n_tok << " row " << r << " tok " << k
            << (random_bytes ? " random bytes" : " quantized");
      }
      for (int64_t r = rows; r < ys; ++r) EXPECT_EQ(y[k * ys + r], -7.0f);
    }
  }
}

int64_t base_cols(GgmlType t) { return ggml_type_info(t).block_size == QK_K ? 256 : 32; }

}  // namespace

TEST(QuantDot, AllTypesHaveFusedKernels) {
  for (GgmlType t : kTypes) EXPECT_TRUE(has_fused_dot(t)) << ggml_type_name(t);
  EXPECT_FALSE(has_fused_dot(GgmlType::IQ2_XXS));
  EXPECT_THROW(dot_rows(GgmlType::IQ2_XXS, nullptr, 0, 0, 1, nullptr, 1, 256, nullptr, 1), std::exception);
}

TEST(QuantDot, MatchesDequantizedOracleQuantizedWeights) {
  uint32_t seed = 1;
  for (GgmlType t : kTypes) {
    const int64_t b = base_cols(t);
    check_shape(t, 6, b, 1, false, seed++);
    check_shape(t, 7, b == 32 ? 288 : 768, 5, false, seed++);
    check_shape(t, 3, 4096, 9, false, seed++);
    check_shape(t, 10, 512, 4, false, seed++);
  }
}

TEST(QuantDot, MatchesDequantizedOracleRandomBlocks) {
  uint32_t seed = 100;
  for (GgmlType t : kTypes) {
    if (is_float(t)) continue;
    const int64_t b = base_cols(t);
    for (int64_t n_tok = 1; n_tok <= 9; n_tok += 2) check_shape(t, 5 + n_tok % 4, b * (1 + n_tok), n_tok, true, seed++);
  }
}

TEST(QuantDot, FloatTailsAndOddLengths) {
  // F32/F16/BF16 kernels on lengths that are not multiples of the vector width.
  uint32_t seed = 200;
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16})
    for (int64_t cols : {1, 7, 8, 17, 33, 100}) check_shape(t, 3, cols, 2, false, seed++);
}

TEST(QuantDot, SimdVariantsAgreeWithScalarReference) {
  // Same integer sums, only float accumulation order differs: tight agreement.
  std::mt19937 g(7);
  for (GgmlType t : kTypes) {
    const int64_t rows = 9, cols = 1024;
    const auto w = quantized_weight(t, rows, cols, g);
    const int64_t rb = ggml_row_size(t, cols);
    const auto x = randn(3 * cols, g, 1.0f);
    std::vector<uint8_t> xq(3 * act_row_bytes(t, cols));
    quantize_activations(t, x.data(), 3, cols, xq.data());
    std::vector<float> ref(3 * rows), got(3 * rows);
    dot_rows_isa(DotIsa::Ref, t, w.data(), rb, 0, rows, xq.data(), 3, cols, ref.data(), rows);
    for (DotIsa isa : isas()) {
      dot_rows_isa(isa, t, w.data(), rb, 0, rows, xq.data(), 3, cols, got.data(), rows);
      for (int64_t i = 0; i < 3 * rows; ++i)
        EXPECT_NEAR(got[i], ref[i], 1e-5 * (std::fabs(ref[i]) + 1.0)) << ggml_type_name(t) << " " << dot_isa_name(isa);
    }
  }
}

TEST(QuantDot, LegacySingleRowFunctionsMatchDotRows) {
  std::mt19937 g(9);
  const int64_t cols = 512;
  const auto x = randn(cols, g, 1.0f);
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0}) {
    const auto w = quantized_weight(t, 1, cols, g);
    std::vector<uint8_t> xq(act_row_bytes(t, cols));
    quantize_activations(t, x.data(), 1, cols, xq.data());
    float y = 0;
    dot_rows(t, w.data(), 0, 0, 1, xq.data(), 1, cols, &y, 1);
    float old = t == GgmlType::Q4_K   ? dot_q4_K_q8_K(reinterpret_cast<const block_q4_K*>(w.data()),
                                                      reinterpret_cast<const block_q8_K*>(xq.data()), cols)
                : t == GgmlType::Q6_K ? dot_q6_K_q8_K(reinterpret_cast<const block_q6_K*>(w.data()),
                                                      reinterpret_cast<const block_q8_K*>(xq.data()), cols)
                                      : dot_q8_0_q8_0(reinterpret_cast<const block_q8_0*>(w.data()),
                                                      reinterpret_cast<const block_q8_0*>(xq.data()), cols);
    EXPECT_EQ(y, old) << ggml_type_name(t);
  }
}

TEST(QuantDot, ErrorsNameTheProblem) {
  std::vector<uint8_t> w(1000), xq(1000);
  float y[4];
  try {
    dot_rows(GgmlType::Q4_K, w.data(), 144, 0, 1, xq.data(), 1, 100, y, 1);
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("q4_K"), std::string::npos) << e.what();
  }
}

namespace {
// Random rows plus edge cases: exact rounding ties (x * scale = k + 0.5), a block whose largest
// magnitude occurs as both -m and +m (the first one sets the sign of d), an all-zero block.
std::vector<float> activation_cases(int64_t n) {
  std::mt19937 g(11);
  auto x = randn(n, g, 3.0f);
  for (int64_t i = 0; i < 256; ++i) x[i] = i == 7 ? 127.0f : float(int(i % 200) - 100) + 0.5f;
  x[256 + 3] = -50.0f;
  x[256 + 40] = 50.0f;
  for (int64_t i = 512; i < 768; ++i) x[i] = 0.0f;
  return x;
}
}  // namespace

TEST(ActQuant, SimdBitIdenticalToScalar) {
  const int64_t n = 4096;
  const auto x = activation_cases(n);
  std::vector<block_q8_K> k1(n / QK_K), k2(n / QK_K);
  quantize_row_q8_K(x.data(), k1.data(), n);
  quantize_row_q8_K_ref(x.data(), k2.data(), n);
  EXPECT_EQ(std::memcmp(k1.data(), k2.data(), sizeof(block_q8_K) * k1.size()), 0);
  // Block 1: largest magnitude first seen as -50, so d = -max/127 = +50/127 and x = -50 -> +127.
  EXPECT_FLOAT_EQ(k1[1].d, 50.0f / 127.0f);
  EXPECT_EQ(k1[1].qs[3], -127);
  std::vector<block_q8_0> a1(n / QK8_0), a2(n / QK8_0);
  quantize_row_q8_0(x.data(), a1.data(), n);
  cpu::quantize_row_q8_0_ref(x.data(), a2.data(), n);
  EXPECT_EQ(std::memcmp(a1.data(), a2.data(), sizeof(block_q8_0) * a1.size()), 0);
  std::vector<block_q8_1> b1(n / QK8_0), b2(n / QK8_0);
  quantize_row_q8_1(x.data(), b1.data(), n);
  quantize_row_q8_1_ref(x.data(), b2.data(), n);
  EXPECT_EQ(std::memcmp(b1.data(), b2.data(), sizeof(block_q8_1) * b1.size()), 0);
  // Ties: block 0 of Q8_0 has d = 127/127 = 1, codes RNE(k + 0.5).
  EXPECT_EQ(a1[0].qs[0], -100);  // -99.5 -> -100 (even)
  EXPECT_EQ(a1[0].qs[1], -98);   // -98.5 -> -98
  // Q8_1 s = d * sum(qs).
  int s = 0;
  for (int i = 0; i < QK8_0; ++i) s += b1[5].qs[i];
  EXPECT_NEAR(fp16_to_f32(b1[5].s), fp16_to_f32(b1[5].d) * s, 1e-3 * std::fabs(fp16_to_f32(b1[5].d) * s) + 1e-6);
}
