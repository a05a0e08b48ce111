// Whole-model gradient check on tiny random models covering the four architectures' features:
// the backward pass (model/backward.h) against central finite differences of the engine's own
// forward (reference ops, double accumulation), for every weight tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/ops_backward.h"
#include "grad/tiny_model.h"
#include "model/backward.h"
#include "model/forward.h"

namespace samq {
namespace {

double loss_of(const Model& m, const std::vector<int32_t>& tokens) {
  const auto logits = forward_logits(m, reference_ops(), tokens);
  const int64_t n = int64_t(tokens.size()), v = m.hparams.n_vocab;
  double L = 0;
  for (int64_t t = 0; t + 1 < n; ++t) {
    const float* l = logits.data() + t * v;
    double mx = l[0], z = 0;
    for (int64_t i = 1; i < v; ++i) mx = std::max<double>(mx, l[i]);
    for (int64_t i = 0; i < v; ++i) z += std::exp(l[i] - mx);
    L += std::log(z) + mx - l[tokens[t + 1]];
  }
  return L;
}

void check_model(const test::TinyConfig& cfg) {
  auto m = test::make_tiny_model(cfg);
  const auto tokens = test::tiny_tokens(9, cfg.n_vocab, 77);
  const int64_t n = int64_t(tokens.size()), v = cfg.n_vocab;
  for (const BackwardOps* bops : {&reference_backward_ops(), &cpu_backward_ops()}) {
    const Ops* ops = &bops->ops();
    ModelGradient mg(*m, *bops);
    mg.forward(tokens);
    const auto logits = mg.logits_host();
    std::vector<int32_t> labels(n, -1);
    for (int64_t t = 0; t + 1 < n; ++t) labels[t] = tokens[t + 1];
    std::vector<float> dl(size_t(n * v));
    const double loss = softmax_cross_entropy_backward(*ops, logits.data(), labels.data(), n, v, 1.0f, dl.data());
    EXPECT_NEAR(loss, loss_of(*m, tokens), 1e-3 * std::abs(loss));
    GradientBuffers grads(m->weights, *ops);
    int linear_calls = 0;
    BackwardHooks hooks;
    hooks.on_linear = [&](const Tensor&, const float*, const float*, int64_t rows) {
      EXPECT_EQ(rows, n);
      ++linear_calls;
    };
    mg.backward(dl.data(), &grads, &hooks);
    EXPECT_EQ(linear_calls, 7 * cfg.n_layer + 1);

    // every tensor: a few elements by central differences (h chosen for float forward)
    std::mt19937 g(5);
    int checked = 0;
    for (auto& gt : grads.entries()) {
      if (gt.name == "rope_freqs.weight") continue;
      Tensor* wt = m->find(gt.name);
      ASSERT_NE(wt, nullptr) << gt.name;
      float* w = reinterpret_cast<float*>(wt->owned->data());
      const float* gr = gt.g.data();
      const int64_t ne = gt.rows * gt.cols;
      double gmax = 0;
      for (int64_t i = 0; i < ne; ++i) gmax = std::max(gmax, std::abs(double(gr[i])));
      for (int s = 0; s < 4; ++s) {
        // the largest-gradient element first, then random ones
        int64_t i = 0;
        if (s == 0) {
          for (int64_t j = 1; j < ne; ++j)
            if (std::abs(gr[j]) > std::abs(gr[i])) i = j;
        } else {
          i = int64_t(g() % uint64_t(ne));
        }
        const float w0 = w[i];
        const float h = 1e-2f * std::max(1.0f, std::abs(w0));
        w[i] = w0 + h;
        const double lp = loss_of(*m, tokens);
        w[i] = w0 - h;
        const double lm = loss_of(*m, tokens);
        w[i] = w0;
        const double fd = (lp - lm) / (double(w0 + h) - double(w0 - h));
        EXPECT_NEAR(gr[i], fd, 2e-2 * gmax + 2e-4)
            << ops->name() << " " << gt.name << "[" << i << "] (max |g| " << gmax << ")";
        ++checked;
      }
    }
    EXPECT_GT(checked, 40);
  }
}

TEST(GradModel, LlamaUntied) { check_model({}); }

TEST(GradModel, Llama3RopeFreqs) { check_model({.rope_freqs = true, .seed = 2}); }

TEST(GradModel, Qwen2BiasTiedNeox) { check_model({.arch = "qwen2", .bias = true, .tied = true, .seed = 3}); }

TEST(GradModel, Qwen3QkNorm) { check_model({.arch = "qwen3", .qk_norm = true, .seed = 4}); }

TEST(GradModel, MhaNoGqa) { check_model({.n_head_kv = 4, .seed = 6}); }

}  // namespace
}  // namespace samq
