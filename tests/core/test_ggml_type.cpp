#include <gtest/gtest.h>

#include "core/error.h"
#include "core/ggml_type.h"

using namespace samq;

TEST(GgmlType, TableMatchesFormatsDoc) {
  EXPECT_EQ(ggml_row_size(GgmlType::Q4_K, 512), 2 * 144);
  EXPECT_EQ(ggml_row_size(GgmlType::Q6_K, 256), 210);
  EXPECT_EQ(ggml_row_size(GgmlType::IQ4_XS, 256), 136);
  EXPECT_EQ(ggml_row_size(GgmlType::Q8_0, 64), 68);
  EXPECT_EQ(ggml_row_size(GgmlType::BF16, 7), 14);
  EXPECT_DOUBLE_EQ(ggml_bits_per_weight(GgmlType::Q2_K), 2.625);
  EXPECT_EQ(ggml_type_info(4), nullptr);
  EXPECT_EQ(ggml_type_info(31), nullptr);
  EXPECT_EQ(*ggml_type_from_name("Q4_K"), GgmlType::Q4_K);
  EXPECT_EQ(*ggml_type_from_name("iq4_xs"), GgmlType::IQ4_XS);
  EXPECT_FALSE(ggml_type_from_name("q4_k_m").has_value());
  EXPECT_THROW(ggml_row_size(GgmlType::Q4_K, 100), Error);
}
