// Repacked weights (backend/cpu/packed_gemm.h) on real blocks: the Q4_K_M imatrix anchor
// (Q4_K + Q6_K tensors), forward with the prepared weights
// Model::load made against the same model with them dropped (fused kernels for few tokens,
// dequantize + sgemm for many). Integer sums are exact on both paths; only float accumulation
// order differs: per matmul the two agree to ~1e-6 of the outputs (each is within ~1 ulp of
// reference_ops, measured), at the logits see check_model. Skipped without AVX-512 VNNI.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <vector>

#include "backend/cpu/packed_gemm.h"
#include "model/forward.h"
#include "model/model.h"
#include "common/test_env.h"

using namespace samq;

namespace {

int count_prepared(Model& m) {
  int n = 0;
  for_each_tensor(m.weights, [&](Tensor& t) { n += t.prepared != nullptr; });
  return n;
}

double mean_abs_diff(const std::vector<float>& a, const std::vector<float>& b, double* maxd) {
  double s = 0;
  *maxd = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    s += std::fabs(double(a[i]) - double(b[i]));
    *maxd = std::max(*maxd, std::fabs(double(a[i]) - double(b[i])));
  }
  return s / double(a.size());
}

// Logits with the prepared weights vs without. A float difference of 1e-7 in one matmul output
// can flip the Q8_K rounding of an activation downstream (ggml numerics), so whole logit rows
// move by a few hundredths even between today's two unprepared paths (fused kernels vs
// dequantize + sgemm: measured mean |Δ| 0.038, max 0.26 at 40 tokens): the bound compares the
// packed path's spread with that inherent one.
void check_model(const std::string& path, int64_t n_tok) {
  auto m = Model::load(path);
  ASSERT_GT(count_prepared(*m), 7 * int(m->hparams.n_layer)) << path;
  std::vector<int32_t> ids(n_tok);
  for (int64_t i = 0; i < n_tok; ++i) ids[i] = int32_t(1 + (i * 7919) % 8000);
  const auto packed = forward_logits(*m, cpu_ops(), ids);
  for_each_tensor(m->weights, [](Tensor& t) { t.prepared.reset(); });
  const auto plain = forward_logits(*m, cpu_ops(), ids);
  setenv("SAMQ_PREFILL_PATH", "fused", 1);
  const auto fused = forward_logits(*m, cpu_ops(), ids);
  unsetenv("SAMQ_PREFILL_PATH");
  ASSERT_EQ(packed.size(), plain.size());
  double mean = 0, var = 0;
  for (float v : plain) mean += v;
  mean /= double(plain.size());
  for (float v : plain) var += (v - mean) * (v - mean);
  const double sd = std::sqrt(var / double(plain.size()));
  double maxd, maxi;
  const double d = mean_abs_diff(packed, plain, &maxd), inherent = mean_abs_diff(fused, plain, &maxi);
  std::printf("%s, %lld tokens: packed vs unpacked mean |Δ logit| %.3f max %.3f; unpacked fused vs default %.3f "
              "max %.3f (logit sd %.2f)\n",
              std::filesystem::path(path).filename().c_str(), (long long)n_tok, d, maxd, inherent, maxi, sd);
  EXPECT_LT(d, std::max(3 * inherent, 0.025 * sd)) << path;
  EXPECT_LT(maxd, 0.2 * sd) << path;
  // Same top-1 token at most positions.
  const int64_t nv = m->hparams.n_vocab;
  int same = 0;
  for (int64_t t = 0; t < n_tok; ++t) {
    const auto* p = packed.data() + t * nv;
    const auto* q = plain.data() + t * nv;
    same += std::max_element(p, p + nv) - p == std::max_element(q, q + nv) - q;
  }
  EXPECT_GE(same, n_tok * 9 / 10) << path;
}

}  // namespace

TEST(PackedModel, AnchorLogitsMatchUnpackedPaths) {
  if (!cpu::repack_enabled()) GTEST_SKIP() << "repacking off (no AVX-512 VNNI or SAMQ_REPACK=0)";
  const std::string anchor = test::shared_path("golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf");
  check_model(anchor, 5);   // fused kernels below 8 tokens
  check_model(anchor, 40);  // dequantize + sgemm
}

TEST(PackedModel, AnchorTensorsMatmulMatchesFusedKernels) {
  if (!cpu::repack_enabled()) GTEST_SKIP() << "repacking off (no AVX-512 VNNI or SAMQ_REPACK=0)";
  auto m = Model::load(test::shared_path("golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf"));
  int checked = 0;
  for_each_tensor(m->weights, [&](Tensor& t) {
    if (!t.prepared) return;
    const int64_t n = 3;
    std::vector<float> x(n * t.cols);
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(0.37 * double(i) + 0.1 * double(t.rows)));
    std::vector<float> a(n * t.rows), b(n * t.rows);
    WeightView v = t.view();
    cpu_ops().matmul(x.data(), n, v, nullptr, a.data());
    v.prepared = nullptr;
    cpu_ops().matmul(x.data(), n, v, nullptr, b.data());
    double maxd = 0, maxy = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      maxd = std::max(maxd, double(std::fabs(a[i] - b[i])));
      maxy = std::max(maxy, double(std::fabs(b[i])));
    }
    EXPECT_LT(maxd, 1e-5 * maxy + 1e-6) << t.name << " " << ggml_type_name(t.type) << " max |y| " << maxy;
    ++checked;
  });
  EXPECT_GT(checked, 50);
}
