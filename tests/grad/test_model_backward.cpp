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

// The experts chosen for every token of every layer (MoE): the loss is smooth only while it stays
// the same, so finite differences are taken only where w +- h keeps it.
std::vector<int32_t> routing_of(const Model& m, const std::vector<int32_t>& tokens) {
  std::vector<int32_t> ids;
  if (!m.hparams.is_moe()) return ids;
  ForwardHooks h;
  const int64_t NE = m.hparams.n_expert, K = m.hparams.n_expert_used;
  h.on_activation = [&](std::string_view name, int, const float* d, int64_t rows, int64_t) {
    if (name != "ffn_moe_logits") return;
    std::vector<int32_t> part(size_t(rows * K));
    std::vector<float> w(size_t(rows * K));
    reference_ops().moe_route(d, rows, NE, K, false, part.data(), w.data());
    ids.insert(ids.end(), part.begin(), part.end());
  };
  KvCache c(m, int64_t(tokens.size()), reference_ops());
  Batch b;
  b.add(&c, tokens, true);
  ForwardOptions o;
  o.hooks = &h;
  forward(m, reference_ops(), b, o);
  return ids;
}

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
    int64_t expert_rows = 0;
    BackwardHooks hooks;
    hooks.on_linear = [&](const Tensor&, const float*, const float*, int64_t rows) {
      EXPECT_EQ(rows, n);
      ++linear_calls;
    };
    hooks.on_expert_linear = [&](const Tensor& w, int e, const float*, const float*, int64_t rows) {
      EXPECT_GE(e, 0);
      EXPECT_LT(e, w.n_mat);
      expert_rows += rows;
    };
    mg.backward(dl.data(), &grads, &hooks);
    const bool moe = m->hparams.is_moe();
    // dense: q, k, v, o, gate, up, down per layer; MoE: q, k, v, o, router (+ experts); phi3:
    // qkv, o, gate+up, down; + head
    const bool fused = cfg.arch == "phi3";
    EXPECT_EQ(linear_calls, (moe ? 5 : fused ? 4 : 7) * cfg.n_layer + 1);
    // every token's k experts, for gate, up and down, in every layer
    EXPECT_EQ(expert_rows, moe ? 3 * n * cfg.n_expert_used * cfg.n_layer : 0);
    const auto routing = routing_of(*m, tokens);
    int skipped = 0;

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
        const float h = (moe ? 2e-3f : 1e-2f) * std::max(1.0f, std::abs(w0));
        w[i] = w0 + h;
        const double lp = loss_of(*m, tokens);
        const bool same_p = routing_of(*m, tokens) == routing;
        w[i] = w0 - h;
        const double lm = loss_of(*m, tokens);
        const bool same_m = routing_of(*m, tokens) == routing;
        w[i] = w0;
        if (!same_p || !same_m) {  // a routing boundary inside [w - h, w + h]: not differentiable there
          ++skipped;
          continue;
        }
        const double fd = (lp - lm) / (double(w0 + h) - double(w0 - h));
        EXPECT_NEAR(gr[i], fd, 2e-2 * gmax + 2e-4)
            << ops->name() << " " << gt.name << "[" << i << "] (max |g| " << gmax << ")";
        ++checked;
      }
    }
    EXPECT_GT(checked, 40);
    EXPECT_LE(skipped, checked / 4) << "too many routing flips for a meaningful check";
  }
}

TEST(GradModel, LlamaUntied) { check_model({}); }

TEST(GradModel, Llama3RopeFreqs) { check_model({.rope_freqs = true, .seed = 2}); }

TEST(GradModel, Qwen2BiasTiedNeox) { check_model({.arch = "qwen2", .bias = true, .tied = true, .seed = 3}); }

TEST(GradModel, Qwen3QkNorm) { check_model({.arch = "qwen3", .qk_norm = true, .seed = 4}); }

TEST(GradModel, MhaNoGqa) { check_model({.n_head_kv = 4, .seed = 6}); }

// MoE: experts (stacked 3-D tensors, each expert's slice), the router through softmax, top-k and
// renormalisation, and everything below them.
TEST(GradModel, Qwen3MoeRenormalised) { check_model({.arch = "qwen3moe", .qk_norm = true, .seed = 7}); }

// Mistral: sliding window 3 over 9 tokens, so most queries lose keys to the window; and the check
// that the window is not ignored: the gradient differs from the full-attention model's.
TEST(GradModel, MistralSlidingWindow) {
  check_model({.n_swa = 3, .seed = 9});
  auto windowed = test::make_tiny_model({.n_swa = 3, .seed = 9});
  auto full = test::make_tiny_model({.seed = 9});
  const auto tokens = test::tiny_tokens(9, 23, 77);
  EXPECT_GT(std::abs(loss_of(*windowed, tokens) - loss_of(*full, tokens)), 1e-3);
}

// Mixtral: the llama graph (interleaved RoPE, no q/k norm) with renormalised top-2 experts.
TEST(GradModel, MixtralRenormalised) { check_model({.arch = "mixtral", .seed = 10}); }

// Phi-3: fused attn_qkv and gate+up ffn_up (the gradient of each block of rows reaches the right
// part of the fused matrix).
TEST(GradModel, Phi3Fused) { check_model({.arch = "phi3", .seed = 11}); }

TEST(GradModel, Qwen3MoeTop1NotRenormalised) {
  check_model({.arch = "qwen3moe", .n_expert_used = 1, .norm_topk = false, .qk_norm = true, .seed = 8});
}

}  // namespace
}  // namespace samq
