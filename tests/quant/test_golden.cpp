// Every format against ggml's own output in ../shared/golden/quant-golden.gguf:
// - dequantizing ggml's blocks reproduces ggml's floats bit for bit (scalar and SIMD paths);
// - quantizing `rows` (with and without the importance vector) is no less accurate than ggml,
//   in plain and importance-weighted squared error;
// - byte identity with ggml's blocks is counted, and asserted for the types that reach it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "quant/dequant_fast.h"
#include "quant/golden_data.h"
#include "quant/quantize.h"
#include "quant/quants_ref.h"
#include "quant/search.h"

using namespace samq;
using samq::test::quant_golden;

namespace {

std::string key(GgmlType t, bool im) { return std::string(ggml_type_name(t)) + (im ? ".imatrix" : ""); }

// Index of the first float whose bits differ, or -1.
int64_t first_bit_mismatch(const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (std::memcmp(a + i, b + i, 4) != 0) return i;
  return -1;
}

double sq_err(const std::vector<float>& x, const float* deq) {
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = double(deq[i]) - double(x[i]);
    s += e * e;
  }
  return s;
}

}  // namespace

TEST(QuantGolden, FileHasEveryType) {
  const auto& g = quant_golden();
  EXPECT_EQ(g.rows, 40);
  EXPECT_EQ(g.cols, 1536);
  for (GgmlType t : samq::test::golden_types())
    for (bool im : {false, true}) {
      const auto& q = g.tensor("q." + key(t, im));
      EXPECT_EQ(q.type, t) << key(t, im);
      EXPECT_EQ(q.nbytes, uint64_t(g.rows * ggml_row_size(t, g.cols))) << key(t, im);
      EXPECT_TRUE(g.errors.count(key(t, im))) << "no ggml error line for " << key(t, im);
    }
}

TEST(QuantGolden, DequantizeIsBitExact) {
  const auto& g = quant_golden();
  const int64_t n = g.rows * g.cols;
  std::vector<float> out(static_cast<size_t>(n)), ref(static_cast<size_t>(n));
  for (GgmlType t : samq::test::golden_types())
    for (bool im : {false, true}) {
      const auto& q = g.tensor("q." + key(t, im));
      const auto& d = g.tensor("deq." + key(t, im));
      const auto* expect = reinterpret_cast<const float*>(d.data);
      // Reference path, row by row through quants_ref.h.
      const int64_t rb = ggml_row_size(t, g.cols);
      for (int64_t r = 0; r < g.rows; ++r) dequantize_row_ref(t, q.data + r * rb, ref.data() + r * g.cols, g.cols);
      EXPECT_EQ(first_bit_mismatch(ref.data(), expect, n), -1) << "scalar dequantize of q." << key(t, im);
      // Public path (SIMD where available), whole tensor, multithreaded.
      dequantize_tensor(t, q.data, out.data(), g.rows, g.cols);
      EXPECT_EQ(first_bit_mismatch(out.data(), expect, n), -1) << "dequantize_tensor of q." << key(t, im);
    }
}

// Types whose blocks are byte-identical to ggml's on the golden rows (without / with the
// importance vector). A type in these sets must stay identical.
const std::set<std::string> kByteIdentical = {
    "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs",
    "f16.imatrix", "bf16.imatrix", "q8_0.imatrix", "q4_0.imatrix", "q4_1.imatrix", "q5_0.imatrix",
    "q5_1.imatrix", "q2_K.imatrix", "q3_K.imatrix", "q4_K.imatrix", "q5_K.imatrix", "q6_K.imatrix",
    "iq4_nl.imatrix", "iq4_xs.imatrix"};

class QuantizeGolden : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { samq::quant_detail::set_search_simd(GetParam()); }
  void TearDown() override { samq::quant_detail::set_search_simd(true); }
};

// Runs with the eight-lane SIMD searches (where the CPU has AVX2) and with the scalar ones.
TEST_P(QuantizeGolden, MatchesOrBeatsGgml) {
  const auto& g = quant_golden();
  const int64_t n = g.rows * g.cols;
  std::vector<float> mine(static_cast<size_t>(n));
  int identical = 0, total = 0;
  std::string report;
  for (GgmlType t : samq::test::golden_types())
    for (bool im : {false, true}) {
      const float* qw = im ? g.imatrix.data() : nullptr;
      const auto& q = g.tensor("q." + key(t, im));
      const auto* ggml_deq = reinterpret_cast<const float*>(g.tensor("deq." + key(t, im)).data);
      std::vector<uint8_t> blocks(static_cast<size_t>(q.nbytes));
      ASSERT_EQ(quantize_tensor(t, g.x.data(), blocks.data(), g.rows, g.cols, qw), q.nbytes);
      int64_t diff_bytes = 0;
      for (size_t i = 0; i < blocks.size(); ++i) diff_bytes += blocks[i] != q.data[i];
      ++total;
      const bool same = diff_bytes == 0;
      identical += same;
      if (!same) {
        report.append(" ").append(key(t, im)).append("(").append(std::to_string(diff_bytes));
        report.append(" bytes differ)");
      }
      if (kByteIdentical.count(key(t, im))) {
        EXPECT_EQ(diff_bytes, 0) << key(t, im) << " lost byte identity with ggml";
      }

      dequantize_tensor(t, blocks.data(), mine.data(), g.rows, g.cols);
      const double my_w = weighted_sq_error(g.x.data(), mine.data(), g.rows, g.cols, g.imatrix.data());
      const double gg_w = weighted_sq_error(g.x.data(), ggml_deq, g.rows, g.cols, g.imatrix.data());
      const double my_p = sq_err(g.x, mine.data()), gg_p = sq_err(g.x, ggml_deq);
      // Our error formula reproduces the table ggml's generator printed.
      const auto& e = g.errors.at(key(t, im));
      EXPECT_NEAR(gg_w, e.weighted_sq_err, 1e-5 * e.weighted_sq_err + 1e-12) << key(t, im);
      const double rel = std::sqrt(gg_p / sq_err(g.x, std::vector<float>(size_t(n), 0.f).data()));
      EXPECT_NEAR(rel, e.rel_err, 1e-6) << key(t, im);
      // No worse than ggml (1e-9 relative slack for summation order only).
      EXPECT_LE(my_w, gg_w * (1 + 1e-9)) << key(t, im) << " weighted error";
      EXPECT_LE(my_p, gg_p * (1 + 1e-9)) << key(t, im) << " plain error";
    }
  std::printf("[ quant ] %s search: byte-identical with ggml: %d of %d type/imatrix combinations%s%s\n",
              samq::quant_detail::search_simd_enabled() ? "SIMD" : "scalar", identical, total,
              report.empty() ? "" : "; differing:", report.c_str());
}

INSTANTIATE_TEST_SUITE_P(SearchPath, QuantizeGolden, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "simd" : "scalar"; });
