// Hand-built blocks from the worked examples of ggml-formats.md §2 (each verified there against
// ggml's dequantizers): an oracle independent of both ggml's code and ours, pinning the bit
// layouts (nibble order, high-bit planes, 6-bit scale packing, signs and biases).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "quant/blocks.h"
#include "quant/dequant_fast.h"
#include "quant/quantize.h"
#include "quant/quants_ref.h"

using namespace samq;

namespace {

template <typename B>
std::vector<float> deq(GgmlType t, const B& b, int64_t n, bool simd) {
  std::vector<float> y(static_cast<size_t>(n));
  if (simd) dequantize_row(t, &b, y.data(), n);
  else dequantize_row_ref(t, &b, y.data(), n);
  return y;
}

void put(void* blk, size_t off, std::initializer_list<uint8_t> bytes) {
  std::memcpy(static_cast<uint8_t*>(blk) + off, bytes.begin(), bytes.size());
}

class WorkedExample : public ::testing::TestWithParam<bool> {};

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

TEST_P(WorkedExample, Q5_0) {
  block_q5_0 b{};
  put(&b, 0, {0x00, 0x34});              // d = 0.25
  put(&b, 2, {0x01, 0x00, 0x00, 0x80});  // qh = 0x80000001
  b.qs[0] = 0x3A;
  b.qs[15] = 0xF0;
  auto y = deq(GgmlType::Q5_0, b, 32, GetParam());
  EXPECT_EQ(y[0], 2.5f);
  EXPECT_EQ(y[16], -3.25f);
  EXPECT_EQ(y[15], -4.0f);
  EXPECT_EQ(y[31], 3.75f);
}

TEST_P(WorkedExample, Q2_K) {
  block_q2_K b{};
  put(&b, 0, {0x21, 0x13, 0x0F});
  put(&b, 12, {0xA7});
  put(&b, 16, {0x03});
  put(&b, 24, {0x08});
  put(&b, 33, {0x02});
  put(&b, 56, {0x30});
  put(&b, 80, {0x00, 0x38, 0x00, 0x34});
  auto y = deq(GgmlType::Q2_K, b, 256, GetParam());
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -0.5f);
  EXPECT_EQ(y[17], 2.75f);
  EXPECT_EQ(y[40], 15.0f);
  EXPECT_EQ(y[200], 8.0f);
}

TEST_P(WorkedExample, Q3_K) {
  block_q3_K b{};
  put(&b, 108, {0x00, 0x38});
  put(&b, 96 + 0, {0x08, 0x40});
  put(&b, 96 + 6, {0xF0});
  put(&b, 96 + 8, {0x02, 0x10, 0xC0});
  b.hmask[0] = 0x01;
  b.hmask[6] = 0x80;
  b.qs[0] = 0x01;
  b.qs[38] = 0x80;
  b.qs[54] = 0x03;
  auto y = deq(GgmlType::Q3_K, b, 256, GetParam());
  EXPECT_EQ(y[0], 4.0f);
  EXPECT_EQ(y[1], -16.0f);
  EXPECT_EQ(y[16], 64.0f);
  EXPECT_EQ(y[150], 6.0f);
  EXPECT_EQ(y[230], 31.0f);
}

TEST_P(WorkedExample, Q4_K) {
  block_q4_K b{};
  put(&b, 0, {0x00, 0x38, 0x00, 0x34});
  b.scales[1] = 0x0A;
  b.scales[2] = 0x80;
  b.scales[5] = 0x03;
  b.scales[6] = 0xC0;
  b.scales[10] = 0x2D;
  b.qs[8] = 0x70;
  b.qs[104] = 0x0B;
  auto y = deq(GgmlType::Q4_K, b, 256, GetParam());
  EXPECT_EQ(y[40], 34.25f);
  EXPECT_EQ(y[41], -0.75f);
  EXPECT_EQ(y[200], 235.0f);
  EXPECT_EQ(y[192], -12.5f);
}

TEST_P(WorkedExample, Q5_K) {
  block_q5_K b{};
  put(&b, 0, {0x00, 0x38, 0x00, 0x34});
  b.scales[1] = 0x0A;
  b.scales[2] = 0x80;
  b.scales[5] = 0x03;
  b.scales[6] = 0xC0;
  b.scales[10] = 0x2D;
  put(&b, 24, {0x42});
  put(&b, 56, {0x70});
  put(&b, 152, {0x0B});
  auto y = deq(GgmlType::Q5_K, b, 256, GetParam());
  EXPECT_EQ(y[40], 114.25f);
  EXPECT_EQ(y[200], 595.0f);
  EXPECT_EQ(y[8], 0.0f);
}

TEST_P(WorkedExample, Q6_K) {
  block_q6_K b{};
  put(&b, 208, {0x00, 0x38});
  put(&b, 192, {0x02});
  put(&b, 205, {0xFD});
  b.ql[0] = 0x05;
  b.qh[0] = 0x02;
  b.ql[83] = 0xC0;
  auto y = deq(GgmlType::Q6_K, b, 256, GetParam());
  EXPECT_EQ(y[0], 5.0f);
  EXPECT_EQ(y[1], -32.0f);
  EXPECT_EQ(y[211], 30.0f);
}

TEST_P(WorkedExample, IQ4_XS) {
  block_iq4_xs b{};
  put(&b, 0, {0x00, 0x38, 0x06, 0x00, 0x3F});
  b.qs[0] = 0x8F;
  b.qs[21] = 0x07;
  auto y = deq(GgmlType::IQ4_XS, b, 256, GetParam());
  EXPECT_EQ(y[0], 847.5f);
  EXPECT_EQ(y[16], 7.5f);
  EXPECT_EQ(y[37], 65.0f);
  EXPECT_EQ(y[53], 825.5f);
}

INSTANTIATE_TEST_SUITE_P(ScalarAndSimd, WorkedExample, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "simd" : "scalar"; });
