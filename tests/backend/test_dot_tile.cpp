// dot_tile_f32 (the register-blocked kernel of batched decode over float weights) must give
// exactly what one dot_f32 per (row, token) gives, on every SIMD level, for odd shapes and
// strides; and float-weight matmuls must not depend on how many tokens share the call.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "backend/cpu/simd.h"
#include "backend/ops.h"
#include "common/random.h"
#include "core/fp16.h"

using namespace samq;

namespace {

void restore_best() { cpu::force_simd_level("avx512") || cpu::force_simd_level("avx2"); }

using test::randn;

// Every output of the tile kernel over W (float or bf16) weight rows equals dot_f32 of the token
// and the widened row, bit for bit, on every SIMD level; odd shapes and strides wider than the
// data; nothing is written outside the tile; and the value matches a double-precision sum.
template <class W>
void check_tiles(void (*tile)(const W*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, float*, int64_t)) {
  for (const char* lvl : {"scalar", "avx2", "avx512"}) {
    if (!cpu::force_simd_level(lvl)) continue;
    for (int64_t cols : {1, 15, 16, 17, 31, 32, 33, 48, 100, 512, 777}) {
      for (int64_t rows : {1, 2, 3, 5, 8}) {
        for (int64_t ntok : {1, 3, 4, 5, 8, 9, 17}) {
          const int64_t ws = cols + 3, xs = cols + 5, ys = rows + 2;
          const auto wf = randn(size_t(rows * ws), uint32_t(cols * 131 + rows));
          const auto x = randn(size_t(ntok * xs), uint32_t(cols * 17 + ntok));
          std::vector<W> w(wf.size());
          std::vector<float> wide(wf.size());
          for (size_t i = 0; i < w.size(); ++i) {
            if constexpr (std::is_same_v<W, float>) w[i] = wide[i] = wf[i];
            else wide[i] = bf16_to_f32(w[i] = f32_to_bf16(wf[i]));
          }
          std::vector<float> y(static_cast<size_t>(ntok * ys), NAN);
          tile(w.data(), ws, rows, x.data(), xs, ntok, cols, y.data(), ys);
          for (int64_t t = 0; t < ntok; ++t)
            for (int64_t r = 0; r < ys; ++r) {
              const float got = y[size_t(t * ys + r)];
              if (r >= rows) {
                EXPECT_TRUE(std::isnan(got)) << "wrote outside the tile at row " << r;
                continue;
              }
              const float want = cpu::dot_f32(x.data() + t * xs, wide.data() + r * ws, cols);
              ASSERT_EQ(std::memcmp(&got, &want, sizeof got), 0)
                  << lvl << " cols " << cols << " rows " << rows << " ntok " << ntok << " (" << r << ", " << t
                  << "): " << got << " vs " << want;
              double ref = 0;
              for (int64_t i = 0; i < cols; ++i) ref += double(x[size_t(t * xs + i)]) * wide[size_t(r * ws + i)];
              ASSERT_NEAR(got, ref, 1e-4 * std::sqrt(double(cols)) * 4);
            }
        }
      }
    }
  }
  restore_best();
}

}  // namespace

TEST(DotTile, BitIdenticalToDotF32OnEveryLevel) { check_tiles<float>(cpu::dot_tile_f32); }

TEST(DotTile, Bf16WeightsBitIdenticalToDotF32OfWidenedRows) { check_tiles<uint16_t>(cpu::dot_tile_f32_bf16w); }


TEST(DotTile, WideningRowsAreExact) {
  std::mt19937 g(3);
  std::vector<uint16_t> h(1000);
  for (auto& v : h) v = uint16_t(g());
  std::vector<float> a(h.size()), b(h.size());
  for (const char* lvl : {"scalar", "avx512"}) {
    if (!cpu::force_simd_level(lvl)) continue;
    cpu::bf16_to_f32_row(h.data(), a.data(), int64_t(h.size()));
    cpu::f16_to_f32_row(h.data(), b.data(), int64_t(h.size()));
    for (size_t i = 0; i < h.size(); ++i) {
      const float wa = bf16_to_f32(h[i]), wb = fp16_to_f32(h[i]);
      EXPECT_EQ(std::memcmp(&a[i], &wa, 4), 0) << lvl << " bf16 " << h[i];
      if (std::isnan(wb)) EXPECT_TRUE(std::isnan(b[i])) << lvl << " f16 " << h[i];  // cvtph quiets NaNs
      else EXPECT_EQ(std::memcmp(&b[i], &wb, 4), 0) << lvl << " f16 " << h[i];
    }
  }
  restore_best();
}

// Float weights: the logits of token t must not depend on which other tokens share the matmul
// (batched decode of independent sequences must equal decoding each alone), below the sgemm
// threshold where the tile kernels serve: bit for bit.
TEST(DotTile, BatchedFloatMatmulEqualsOneTokenAtATime) {
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16}) {
    const int64_t rows = 37, cols = 100, n = 9;
    const auto wf = randn(size_t(rows * cols), 11);
    std::vector<uint8_t> wb(size_t(rows * cols) * (type == GgmlType::F32 ? 4 : 2));
    for (size_t i = 0; i < wf.size(); ++i) {
      if (type == GgmlType::F32) std::memcpy(wb.data() + 4 * i, &wf[i], 4);
      else {
        const uint16_t v = type == GgmlType::F16 ? f32_to_fp16(wf[i]) : f32_to_bf16(wf[i]);
        std::memcpy(wb.data() + 2 * i, &v, 2);
      }
    }
    WeightView w{type, rows, cols, wb.data(), int64_t(wb.size()) / rows};
    const auto x = randn(size_t(n * cols), 5);
    std::vector<float> all(static_cast<size_t>(n * rows)), one(static_cast<size_t>(rows));
    cpu_ops().matmul(x.data(), n, w, nullptr, all.data());
    for (int64_t t = 0; t < n; ++t) {
      cpu_ops().matmul(x.data() + t * cols, 1, w, nullptr, one.data());
      for (int64_t r = 0; r < rows; ++r)
        ASSERT_EQ(std::memcmp(&one[size_t(r)], &all[size_t(t * rows + r)], 4), 0)
            << ggml_type_info(type).name << " token " << t << " row " << r;
    }
  }
}
