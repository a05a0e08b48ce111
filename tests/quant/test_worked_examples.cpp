// Hand-built blocks from the worked examples of ggml-formats.md §2 (each verified there against
// ggml's dequantizers): an oracle independent of both ggml's code and ours, pinning the bit
// layouts (nibble order, high-bit planes, 6-bit scale packing, signs and biases).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "quant/blocks.h"
#include "quant/dequant_fast.h"
#include "quant/quantize.h"
#include "quant/quants_ref.h"

using namespace samq;

namespace {

// One worked example: bytes written into zeroed blocks at byte offsets (ggml-formats.md §2.1
// layouts; comments name the fields), and the floats the dequantizer must produce.
struct Example {
  const char* name;
  GgmlType type;
  int64_t n;                                                  // elements
  std::vector<std::pair<size_t, std::vector<uint8_t>>> bytes;  // (offset, bytes)
  std::vector<std::pair<int, float>> expect;                   // (element, value)
};

const std::vector<Example>& examples() {
  static const std::vector<Example> ex = {
      // d = 0.25, qh = 0x80000001, qs[0] = 0x3A, qs[15] = 0xF0
      {"Q5_0", GgmlType::Q5_0, 32, {{0, {0x00, 0x34, 0x01, 0x00, 0x00, 0x80}}, {6, {0x3A}}, {21, {0xF0}}},
       {{0, 2.5f}, {16, -3.25f}, {15, -4.0f}, {31, 3.75f}}},
      // scales[0..2], scales[12], qs[0], qs[8], qs[17], qs[40], d and dmin
      {"Q2_K", GgmlType::Q2_K, 256,
       {{0, {0x21, 0x13, 0x0F}}, {12, {0xA7}}, {16, {0x03}}, {24, {0x08}}, {33, {0x02}}, {56, {0x30}},
        {80, {0x00, 0x38, 0x00, 0x34}}},
       {{0, 1.0f}, {1, -0.5f}, {17, 2.75f}, {40, 15.0f}, {200, 8.0f}}},
      // hmask[0], hmask[6], qs[0], qs[38], qs[54], scales[0,1], scales[6], scales[8..10], d
      {"Q3_K", GgmlType::Q3_K, 256,
       {{0, {0x01}}, {6, {0x80}}, {32, {0x01}}, {70, {0x80}}, {86, {0x03}}, {96, {0x08, 0x40}}, {102, {0xF0}},
        {104, {0x02, 0x10, 0xC0}}, {108, {0x00, 0x38}}},
       {{0, 4.0f}, {1, -16.0f}, {16, 64.0f}, {150, 6.0f}, {230, 31.0f}}},
      // d, dmin, scales[1] = 0x0A, [2] = 0x80, [5] = 0x03, [6] = 0xC0, [10] = 0x2D, qs[8], qs[104]
      {"Q4_K", GgmlType::Q4_K, 256,
       {{0, {0x00, 0x38, 0x00, 0x34}}, {5, {0x0A, 0x80}}, {9, {0x03, 0xC0}}, {14, {0x2D}}, {24, {0x70}},
        {120, {0x0B}}},
       {{40, 34.25f}, {41, -0.75f}, {200, 235.0f}, {192, -12.5f}}},
      // the same d, dmin and scales as Q4_K; qh[8], qs[8], qs[104]
      {"Q5_K", GgmlType::Q5_K, 256,
       {{0, {0x00, 0x38, 0x00, 0x34}}, {5, {0x0A, 0x80}}, {9, {0x03, 0xC0}}, {14, {0x2D}}, {24, {0x42}},
        {56, {0x70}}, {152, {0x0B}}},
       {{40, 114.25f}, {200, 595.0f}, {8, 0.0f}}},
      // ql[0], ql[83], qh[0], scales[0], scales[13], d
      {"Q6_K", GgmlType::Q6_K, 256,
       {{0, {0x05}}, {83, {0xC0}}, {128, {0x02}}, {192, {0x02}}, {205, {0xFD}}, {208, {0x00, 0x38}}},
       {{0, 5.0f}, {1, -32.0f}, {211, 30.0f}}},
      // d, scales_h, scales_l[0], qs[0], qs[21]
      {"IQ4_XS", GgmlType::IQ4_XS, 256, {{0, {0x00, 0x38, 0x06, 0x00, 0x3F}}, {8, {0x8F}}, {29, {0x07}}},
       {{0, 847.5f}, {16, 7.5f}, {37, 65.0f}, {53, 825.5f}}},
  };
  return ex;
}

// Parameters: (example index, SIMD dequantizer or the scalar reference).
class WorkedExample : public ::testing::TestWithParam<std::tuple<size_t, bool>> {};

}  // namespace

TEST(BlockLayout, SizesMatchTheTypeTable) {
  EXPECT_EQ(sizeof(block_q4_0), size_t(ggml_type_info(GgmlType::Q4_0).type_size));
  EXPECT_EQ(sizeof(block_q4_1), size_t(ggml_type_info(GgmlType::Q4_1).type_size));
  EXPECT_EQ(sizeof(block_q5_0), size_t(ggml_type_info(GgmlType::Q5_0).type_size));
  EXPECT_EQ(sizeof(block_q5_1), size_t(ggml_type_info(GgmlType::Q5_1).type_size));
  EXPECT_EQ(sizeof(block_q8_0), size_t(ggml_type_info(GgmlType::Q8_0).type_size));
  EXPECT_EQ(sizeof(block_q2_K), size_t(ggml_type_info(GgmlType::Q2_K).type_size));
  EXPECT_EQ(sizeof(block_q3_K), size_t(ggml_type_info(GgmlType::Q3_K).type_size));
  EXPECT_EQ(sizeof(block_q4_K), size_t(ggml_type_info(GgmlType::Q4_K).type_size));
  EXPECT_EQ(sizeof(block_q5_K), size_t(ggml_type_info(GgmlType::Q5_K).type_size));
  EXPECT_EQ(sizeof(block_q6_K), size_t(ggml_type_info(GgmlType::Q6_K).type_size));
  EXPECT_EQ(sizeof(block_q8_K), size_t(ggml_type_info(GgmlType::Q8_K).type_size));
  EXPECT_EQ(sizeof(block_iq4_nl), size_t(ggml_type_info(GgmlType::IQ4_NL).type_size));
  EXPECT_EQ(sizeof(block_iq4_xs), size_t(ggml_type_info(GgmlType::IQ4_XS).type_size));
  // Field offsets of ggml-formats.md §2.1.
  EXPECT_EQ(offsetof(block_q2_K, d), 80u);
  EXPECT_EQ(offsetof(block_q3_K, scales), 96u);
  EXPECT_EQ(offsetof(block_q3_K, d), 108u);
  EXPECT_EQ(offsetof(block_q5_K, qs), 48u);
  EXPECT_EQ(offsetof(block_q6_K, scales), 192u);
  EXPECT_EQ(offsetof(block_q6_K, d), 208u);
  EXPECT_EQ(offsetof(block_iq4_xs, qs), 8u);
}

TEST_P(WorkedExample, Dequantizes) {
  const auto [index, simd] = GetParam();
  const Example& e = examples()[index];
  std::vector<uint8_t> blocks(size_t(ggml_row_size(e.type, e.n)), 0);
  for (const auto& [off, bytes] : e.bytes) {
    ASSERT_LE(off + bytes.size(), blocks.size()) << e.name;
    std::memcpy(blocks.data() + off, bytes.data(), bytes.size());
  }
  std::vector<float> y(size_t(e.n));
  if (simd) dequantize_row(e.type, blocks.data(), y.data(), e.n);
  else dequantize_row_ref(e.type, blocks.data(), y.data(), e.n);
  for (const auto& [i, v] : e.expect) EXPECT_EQ(y[size_t(i)], v) << e.name << " element " << i;
}

INSTANTIATE_TEST_SUITE_P(ScalarAndSimd, WorkedExample,
                         ::testing::Combine(::testing::Range(size_t(0), examples().size()), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(examples()[std::get<0>(info.param)].name) +
                                  (std::get<1>(info.param) ? "_simd" : "_scalar");
                         });
