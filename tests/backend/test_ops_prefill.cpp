// The many-token paths of cpu_ops() against reference_ops(): blocked attention (sgemm over
// blocks of queries, causal mask, GQA, a KV cache with earlier tokens), matmul tiles of large
// matrices on both prefill paths, and independence of the thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <vector>

#include "backend/ops.h"
#include "common/compare.h"
#include "common/random.h"
#include "core/fp16.h"
#include "core/parallel.h"
#include "quant/quantize.h"

using namespace samq;

namespace {

using test::max_abs_diff;
using test::randn;

}  // namespace

TEST(OpsPrefill, BlockedAttentionMatchesReference) {
  // 32+ queries take the blocked path; 75 = two full blocks of 32 and a partial one.
  for (int64_t n : {32, 75}) {
    for (int64_t past : {0, 9}) {
      const int64_t H = 6, Hkv = 2, hd = 24, nkv = past + n;
      const auto q = randn(n * H * hd, 1), k = randn(nkv * Hkv * hd, 2), v = randn(nkv * Hkv * hd, 3);
      std::vector<int32_t> pos(n);
      for (int64_t i = 0; i < n; ++i) pos[i] = int32_t(past + i);
      std::vector<float> oa(n * H * hd), ob(n * H * hd, 7.0f);
      AttentionArgs a{n, nkv, H, Hkv, hd, q.data(), k.data(), v.data(), pos.data(), 0.2f, oa.data(), nullptr};
      reference_ops().attention(a);
      a.out = ob.data();
      cpu_ops().attention(a);
      EXPECT_LT(max_abs_diff(oa, ob), 1e-5) << "n=" << n << " past=" << past;
      // thread count does not change the result
      std::vector<float> oc(n * H * hd);
      a.out = oc.data();
      set_num_threads(1);
      cpu_ops().attention(a);
      set_num_threads(2);
      EXPECT_EQ(ob, oc);
      set_num_threads(0);
    }
  }
}

// Sliding window (Mistral): the fast paths (blocked for 32+ queries, per query below that; with
// cached keys before the batch) against the reference, and the reference against a brute-force
// double loop that only sees keys pos - window + 1 .. pos.
TEST(OpsPrefill, SlidingWindowAttentionMatchesBruteForce) {
  for (int64_t n : {5, 40}) {
    const int64_t H = 4, Hkv = 2, hd = 8, past = 7, nkv = past + n, W = 6;
    const auto q = randn(n * H * hd, 21), k = randn(nkv * Hkv * hd, 22), v = randn(nkv * Hkv * hd, 23);
    std::vector<int32_t> pos(n);
    for (int64_t i = 0; i < n; ++i) pos[i] = int32_t(past + i);
    std::vector<float> oa(n * H * hd), ob(n * H * hd, 7.0f), want(n * H * hd);
    AttentionArgs a{n, nkv, H, Hkv, hd, q.data(), k.data(), v.data(), pos.data(), 0.3f, oa.data(), nullptr};
    a.window = W;
    reference_ops().attention(a);
    a.out = ob.data();
    cpu_ops().attention(a);
    EXPECT_LT(max_abs_diff(oa, ob), 1e-5) << "n=" << n;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / (H / Hkv), p = pos[t], lo = std::max<int64_t>(0, p - W + 1);
        std::vector<double> e(nkv);
        double mx = -1e300, z = 0;
        for (int64_t j = lo; j <= p; ++j) {
          double d = 0;
          for (int64_t i = 0; i < hd; ++i) d += double(q[(t * H + h) * hd + i]) * k[(j * Hkv + g) * hd + i];
          mx = std::max(mx, e[j] = 0.3 * d);
        }
        for (int64_t j = lo; j <= p; ++j) z += (e[j] = std::exp(e[j] - mx));
        for (int64_t i = 0; i < hd; ++i) {
          double o = 0;
          for (int64_t j = lo; j <= p; ++j) o += e[j] / z * v[(j * Hkv + g) * hd + i];
          want[(t * H + h) * hd + i] = float(o);
        }
      }
    EXPECT_LT(max_abs_diff(oa, want), 1e-5) << "n=" << n;
    // and the window changes the result (it is not silently ignored)
    a.window = 0;
    a.out = ob.data();
    cpu_ops().attention(a);
    EXPECT_GT(max_abs_diff(ob, want), 1e-2) << "n=" << n;
  }
}

TEST(OpsPrefill, BlockedAttentionFirstQuerySeesOnlyFirstKey) {
  // Query at position 0 must return value row 0 exactly (one visible key, weight 1).
  const int64_t n = 40, H = 2, Hkv = 1, hd = 8;
  const auto q = randn(n * H * hd, 4), k = randn(n * Hkv * hd, 5, 10.0f), v = randn(n * Hkv * hd, 6);
  std::vector<int32_t> pos(n);
  for (int64_t i = 0; i < n; ++i) pos[i] = int32_t(i);
  std::vector<float> o(n * H * hd);
  AttentionArgs a{n, n, H, Hkv, hd, q.data(), k.data(), v.data(), pos.data(), 1.0f, o.data(), nullptr};
  cpu_ops().attention(a);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < hd; ++i) EXPECT_FLOAT_EQ(o[h * hd + i], v[i]);
}

TEST(OpsPrefill, LargeMatmulBothPathsMatchReferenceAndThreadCount) {
  // 600 rows: sgemm tiles of 160 rows (last one partial); 40 tokens.
  const int64_t rows = 600, cols = 512, n = 40;
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::F16}) {
    const auto src = randn(rows * cols, 11, 0.5f);
    const int64_t rb = ggml_row_size(t, cols);
    std::vector<uint8_t> bytes(rows * rb);
    if (t == GgmlType::F16)
      for (int64_t i = 0; i < rows * cols; ++i) reinterpret_cast<uint16_t*>(bytes.data())[i] = f32_to_fp16(src[i]);
    else
      for (int64_t r = 0; r < rows; ++r) quantize_row(t, &src[r * cols], &bytes[r * rb], cols, nullptr);
    const WeightView w{t, rows, cols, bytes.data(), rb};
    const auto x = randn(n * cols, 12);
    const auto bias = randn(rows, 13);
    std::vector<float> yr(n * rows);
    reference_ops().matmul(x.data(), n, w, bias.data(), yr.data());
    for (const char* path : {"sgemm", "fused", ""}) {
      setenv("SAMQ_PREFILL_PATH", path, 1);  // "": the per-type default
      std::vector<float> y1(n * rows), y2(n * rows);
      set_num_threads(1);
      cpu_ops().matmul(x.data(), n, w, bias.data(), y1.data());
      set_num_threads(2);
      cpu_ops().matmul(x.data(), n, w, bias.data(), y2.data());
      set_num_threads(0);
      EXPECT_LT(max_abs_diff(yr, y1), 2e-4 * std::sqrt(double(cols))) << ggml_type_name(t);
      EXPECT_EQ(y1, y2) << ggml_type_name(t);
    }
    unsetenv("SAMQ_PREFILL_PATH");
  }
}

TEST(OpsPrefill, RopeTableMatchesReferenceIncludingNegativeAndLargePositions) {
  // cos/sin come from a per-thread table for positions >= 0 (grown on demand), and are
  // computed per call when a position is negative (the backward pass rotates by -pos).
  const int64_t H = 2, hd = 8;
  for (bool neox : {false, true}) {
    RopeParams p{hd, 10000.0f, 1.0f, neox, nullptr};
    for (const std::vector<int32_t>& pos : {std::vector<int32_t>{0, 3, 5000, 17}, std::vector<int32_t>{-1, 2, -300, 0},
                                            std::vector<int32_t>{40, 41, 42, 43}}) {
      const int64_t n = int64_t(pos.size());
      auto a = randn(n * H * hd, 21), b = a;
      reference_ops().rope(a.data(), n, H, hd, pos.data(), p);
      cpu_ops().rope(b.data(), n, H, hd, pos.data(), p);
      EXPECT_EQ(a, b) << "neox=" << neox << " first pos " << pos[0];
    }
  }
}
