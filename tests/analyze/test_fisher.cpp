// Sensitivity accumulators on tiny random models: against brute force (the chunk gradient
// from the backward pass, squared), independent of the thread count, and the core claim of
// the analysis checked directly: 0.5 * sum F * d^2 with the model Fisher predicts the KL
// divergence caused by a small random perturbation d of one tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "analyze/fisher.h"
#include "backend/ops_backward.h"
#include "core/parallel.h"
#include "grad/tiny_model.h"
#include "model/backward.h"
#include "model/forward.h"

namespace samq {
namespace {

std::vector<std::vector<int32_t>> tiny_chunks(int n, int64_t len, int64_t vocab) {
  std::vector<std::vector<int32_t>> c;
  for (int i = 0; i < n; ++i) c.push_back(test::tiny_tokens(len, vocab, 100 + i));
  return c;
}

TEST(Fisher, FullEqualsSquaredChunkGradientAndGradNorm) {
  test::TinyConfig cfg;
  auto m = test::make_tiny_model(cfg);
  SensitivityAccumulator acc(*m, cpu_backward_ops());
  const auto chunks = tiny_chunks(2, 12, cfg.n_vocab);
  for (size_t i = 0; i < chunks.size(); ++i) acc.add_chunk(chunks[i], int64_t(i));
  // brute force: empirical gradient of each chunk, squared and summed
  ModelGradient mg(*m, cpu_backward_ops());
  std::vector<std::vector<float>> g2;
  std::vector<double> gn;
  for (const auto& c : chunks) {
    mg.forward(c);
    const auto logits = mg.logits_host();
    const int64_t n = int64_t(c.size()), V = cfg.n_vocab;
    std::vector<int32_t> labels(n, -1);
    for (int64_t t = 0; t + 1 < n; ++t) labels[t] = c[t + 1];
    std::vector<float> dl(size_t(n * V));
    softmax_cross_entropy_backward(cpu_ops(), logits.data(), labels.data(), n, V, 1.0f, dl.data());
    GradientBuffers g(m->weights, cpu_ops());
    mg.backward(dl.data(), &g, nullptr);
    size_t k = 0;
    for (auto& t : g.entries()) {
      const float* p = t.g.data();
      const int64_t ne = t.rows * t.cols;
      if (g2.size() <= k) { g2.emplace_back(size_t(ne), 0.0f); gn.push_back(0); }
      double ss = 0;
      for (int64_t i = 0; i < ne; ++i) { g2[k][i] += p[i] * p[i]; ss += double(p[i]) * p[i]; }
      gn[k] += std::sqrt(ss);
      ++k;
    }
  }
  ASSERT_EQ(g2.size(), acc.stats().size());
  for (size_t k = 0; k < g2.size(); ++k) {
    const TensorStats& s = acc.stats()[k];
    EXPECT_NEAR(s.grad_norm_sum, gn[k], 1e-4 * gn[k]) << s.name;
    std::vector<float> row(size_t(s.cols));
    for (int64_t r = 0; r < s.rows; ++r) {
      acc.fisher_row(s, kEmpirical, false, r, row.data());
      for (int64_t i = 0; i < s.cols; ++i)
        ASSERT_NEAR(row[i] * acc.n_loss_tokens(), g2[k][r * s.cols + i], 1e-4 * (g2[k][r * s.cols + i] + 1e-6)) << s.name;
    }
  }
  EXPECT_EQ(acc.n_loss_tokens(), 2 * 11);
}

TEST(Fisher, FactoredFromRowAndColumnSums) {
  test::TinyConfig cfg;
  auto m = test::make_tiny_model(cfg);
  SensitivityAccumulator acc(*m, cpu_backward_ops());
  const auto chunks = tiny_chunks(1, 10, cfg.n_vocab);
  acc.add_chunk(chunks[0], 0);
  // x of blk.0.ffn_down is the swiglu output: sum of squares per column, from the forward
  ModelGradient mg(*m, cpu_backward_ops());
  mg.forward(chunks[0]);
  const float* act = mg.activation("ffn_act", 0);
  const TensorStats* s = acc.find("blk.0.ffn_down.weight");
  ASSERT_NE(s, nullptr);
  for (int64_t i = 0; i < s->cols; ++i) {
    double x2 = 0;
    for (int64_t t = 0; t < 10; ++t) x2 += double(act[t * s->cols + i]) * act[t * s->cols + i];
    EXPECT_NEAR(s->col_sq[i], x2, 1e-5 * (x2 + 1e-9));
  }
  EXPECT_EQ(s->n_rows_seen, 10);
  std::vector<float> row(size_t(s->cols));
  acc.fisher_row(*s, kModelLabels, true, 3, row.data());
  for (int64_t i = 0; i < s->cols; ++i)
    EXPECT_NEAR(row[i], s->row_sq[kModelLabels][3] * s->col_sq[i] / 10.0 / acc.n_loss_tokens(), 1e-6 * (row[i] + 1e-12));
}

TEST(Fisher, IndependentOfThreadCount) {
  test::TinyConfig cfg;
  cfg.arch = "qwen2";
  cfg.bias = true;
  auto m = test::make_tiny_model(cfg);
  const auto chunks = tiny_chunks(3, 16, cfg.n_vocab);
  auto run = [&](int threads) {
    set_num_threads(threads);
    auto acc = std::make_unique<SensitivityAccumulator>(*m, cpu_backward_ops());
    for (size_t i = 0; i < chunks.size(); ++i) acc->add_chunk(chunks[i], int64_t(i));
    return acc;
  };
  auto a = run(1), b = run(2), c = run(3);
  set_num_threads(0);
  for (size_t k = 0; k < a->stats().size(); ++k) {
    const auto &sa = a->stats()[k], &sb = b->stats()[k], &sc = c->stats()[k];
    EXPECT_EQ(sa.grad_norm_sum, sb.grad_norm_sum) << sa.name;
    EXPECT_EQ(sa.grad_norm_sum, sc.grad_norm_sum) << sa.name;
    for (int l = 0; l < 2; ++l) {
      EXPECT_EQ(sa.g2[l], sb.g2[l]) << sa.name;
      EXPECT_EQ(sa.g2[l], sc.g2[l]) << sa.name;
      EXPECT_EQ(sa.row_sq[l], sb.row_sq[l]) << sa.name;
    }
    EXPECT_EQ(sa.col_sq, sc.col_sq) << sa.name;
  }
}

// KL(p_base || p_perturbed) averaged over the scored positions, from the logits.
double mean_kl(const std::vector<float>& a, const std::vector<float>& b, int64_t n, int64_t V) {
  double kl = 0;
  for (int64_t t = 0; t + 1 < n; ++t) {
    auto lse = [&](const float* l) {
      double mx = l[0], z = 0;
      for (int64_t i = 1; i < V; ++i) mx = std::max<double>(mx, l[i]);
      for (int64_t i = 0; i < V; ++i) z += std::exp(l[i] - mx);
      return mx + std::log(z);
    };
    const float* la = &a[t * V];
    const float* lb = &b[t * V];
    const double za = lse(la), zb = lse(lb);
    for (int64_t i = 0; i < V; ++i) {
      const double lpa = la[i] - za, lpb = lb[i] - zb;
      kl += std::exp(lpa) * (lpa - lpb);
    }
  }
  return kl / double(n - 1);
}

TEST(Fisher, ModelFisherPredictsKlOfSmallPerturbation) {
  test::TinyConfig cfg;
  cfg.n_vocab = 37;
  auto m = test::make_tiny_model(cfg);
  const auto chunks = tiny_chunks(48, 16, cfg.n_vocab);
  SensitivityAccumulator acc(*m, cpu_backward_ops());
  for (size_t i = 0; i < chunks.size(); ++i) acc.add_chunk(chunks[i], int64_t(i));
  std::mt19937 g(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const char* name : {"blk.0.attn_v.weight", "blk.1.ffn_down.weight", "output.weight"}) {
    const TensorStats* s = acc.find(name);
    Tensor* t = m->find(name);
    float* w = reinterpret_cast<float*>(t->owned->data());
    const std::vector<float> w0(w, w + t->n_elements());
    std::vector<float> d(w0.size());
    for (auto& x : d) x = 0.02f * nd(g);
    double pred = 0;
    std::vector<float> row(size_t(s->cols));
    for (int64_t r = 0; r < s->rows; ++r) {
      acc.fisher_row(*s, kModelLabels, false, r, row.data());
      for (int64_t i = 0; i < s->cols; ++i) pred += 0.5 * row[i] * d[r * s->cols + i] * d[r * s->cols + i];
    }
    double meas = 0;
    for (const auto& c : chunks) {
      const auto base = forward_logits(*m, cpu_ops(), c);
      for (size_t i = 0; i < d.size(); ++i) w[i] = w0[i] + d[i];
      const auto pert = forward_logits(*m, cpu_ops(), c);
      std::copy(w0.begin(), w0.end(), w);
      meas += mean_kl(base, pert, int64_t(c.size()), cfg.n_vocab) / double(chunks.size());
    }
    EXPECT_GT(pred / meas, 0.6) << name << " predicted " << pred << " measured " << meas;
    EXPECT_LT(pred / meas, 1.6) << name << " predicted " << pred << " measured " << meas;
  }
}

}  // namespace
}  // namespace samq
