// Input Hessians (analyze/hessian.h): diagonal vs the imatrix of the same tokens, the full matrix
// vs a brute-force sum over hooked activations, the GGUF layout.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "analyze/hessian.h"
#include "analyze/imatrix.h"
#include "common/test_env.h"
#include "format/gguf.h"
#include "grad/tiny_model.h"
#include "model/forward.h"

namespace samq {
namespace {

TEST(Hessian, DiagonalIsImatrixAndMatrixIsBruteForce) {
  const test::TinyCalibration setup;
  const auto& [cfg, m, chunks] = setup;
  const Hessians h = collect_hessians(*m, cpu_backward_ops(), chunks, false);
  const Imatrix im = collect_imatrix(*m, cpu_backward_ops(), chunks, false);
  // 4 inputs per layer + output.
  ASSERT_EQ(h.entries.size(), size_t(4 * cfg.n_layer + 1));
  size_t served = 0;
  for (const auto& e : h.entries) {
    served += e.serves.size();
    EXPECT_EQ(e.count, 24.0) << e.name;
    for (const auto& w : e.serves) {
      if (w == "output.weight") continue;
      const ImatrixEntry* ie = im.find(w);
      ASSERT_NE(ie, nullptr) << w;
      ASSERT_EQ(int64_t(ie->sum2.size()), e.n);
      for (int64_t j = 0; j < e.n; ++j)
        EXPECT_NEAR(e.sum[size_t(j * e.n + j)] / e.count, ie->sum2[size_t(j)] / ie->count,
                    1e-5 * std::fabs(ie->sum2[size_t(j)] / ie->count) + 1e-12)
            << w << " column " << j;
    }
  }
  EXPECT_EQ(served, size_t(7 * cfg.n_layer + 1));

  // Brute force over the activations the forward emits.
  std::map<std::string, std::vector<double>> bf;
  ForwardHooks hooks;
  hooks.on_activation = [&](std::string_view name, int layer, const float* x, int64_t rows, int64_t cols) {
    std::string key;
    if (name == "ffn_act" && layer == 1) key = "blk.1.ffn_down.weight";
    else if (name == "attn_norm" && layer == 0) key = "blk.0.attn_q.weight";
    else if (name == "result_norm") key = "output.weight";
    else return;
    auto& s = bf[key];
    s.resize(size_t(cols * cols), 0.0);
    for (int64_t t = 0; t < rows; ++t)
      for (int64_t i = 0; i < cols; ++i)
        for (int64_t j = 0; j < cols; ++j) s[size_t(i * cols + j)] += double(x[t * cols + i]) * double(x[t * cols + j]);
  };
  ForwardOptions opt;
  opt.hooks = &hooks;
  for (const auto& c : chunks) {
    KvCache cache(*m, int64_t(c.size()));
    Batch b;
    b.add(&cache, c, true);
    forward(*m, cpu_ops(), b, opt);
  }
  ASSERT_EQ(bf.size(), 3u);
  for (const auto& e : h.entries) {
    auto it = bf.find(e.name);
    if (it == bf.end()) continue;
    double worst = 0, scale = 0;
    for (size_t k = 0; k < e.sum.size(); ++k) {
      worst = std::max(worst, std::fabs(e.sum[k] - it->second[k]));
      scale = std::max(scale, std::fabs(it->second[k]));
    }
    EXPECT_LT(worst, 1e-9 * scale) << e.name;
    for (int64_t i = 0; i < e.n; ++i)
      for (int64_t j = 0; j < e.n; ++j) ASSERT_EQ(e.sum[size_t(i * e.n + j)], e.sum[size_t(j * e.n + i)]);
  }
}

TEST(Hessian, GgufLayout) {
  test::TinyConfig cfg;
  auto m = test::make_tiny_model(cfg);
  std::vector<std::vector<int32_t>> chunks = {test::tiny_tokens(10, cfg.n_vocab, 4)};
  Hessians h = collect_hessians(*m, cpu_backward_ops(), chunks, false);
  h.calib_sha256 = "abc";
  const std::string path = test::temp_dir() + "/h.gguf";
  write_hessian_gguf(path, h);
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.get_str("general.type", ""), "samq.hessian");
  EXPECT_EQ(f.get_str("samq.hessian.calib_sha256", ""), "abc");
  EXPECT_EQ(f.get_u32("samq.hessian.chunk_count", 0), 1u);
  const auto aliases = f.get_arr_str("samq.hessian.aliases", {});
  EXPECT_EQ(aliases.size(), size_t(3 * cfg.n_layer));
  EXPECT_NE(std::find(aliases.begin(), aliases.end(), "blk.0.attn_v.weight=blk.0.attn_q.weight"), aliases.end());
  EXPECT_NE(std::find(aliases.begin(), aliases.end(), "blk.1.ffn_up.weight=blk.1.ffn_gate.weight"), aliases.end());
  const GgufTensorInfo* t = f.find_tensor("blk.1.ffn_down.weight.hessian");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->ne[0], cfg.n_ff);
  EXPECT_EQ(t->ne[1], cfg.n_ff);
  const HessianEntry* e = nullptr;
  for (const auto& x : h.entries)
    if (x.name == "blk.1.ffn_down.weight") e = &x;
  ASSERT_NE(e, nullptr);
  const float* d = reinterpret_cast<const float*>(t->data);
  for (size_t k = 0; k < e->sum.size(); ++k) ASSERT_EQ(d[k], float(e->sum[k]));
  const GgufTensorInfo* c = f.find_tensor("output.weight.counts");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(reinterpret_cast<const float*>(c->data)[0], 10.0f);
}

// MoE: one entry per expert matrix from the rows routed to it; its diagonal / count is that
// expert's slice of the per-expert importance matrix (itself checked against llama-imatrix).
TEST(Hessian, PerExpertEntriesMatchPerExpertImatrix) {
  test::TinyConfig cfg{.arch = "qwen3moe", .qk_norm = true, .seed = 11};
  auto m = test::make_tiny_model(cfg);
  const auto chunks = test::tiny_chunks(cfg, 12, {1, 2});
  const Hessians h = collect_hessians(*m, cpu_backward_ops(), chunks, false);
  const Imatrix im = collect_imatrix(*m, cpu_backward_ops(), chunks, false);
  int experts = 0;
  for (const auto& e : h.entries) {
    const size_t dot = e.name.rfind(".weight.");
    if (dot == std::string::npos) continue;
    ++experts;
    const std::string weight = e.name.substr(0, dot + 7);
    const int64_t x = std::stoll(e.name.substr(dot + 8));
    EXPECT_EQ(e.name, hessian_expert_name(weight, x));
    const ImatrixEntry* ie = im.find(weight);
    ASSERT_NE(ie, nullptr) << weight;
    ASSERT_EQ(ie->counts.size(), size_t(cfg.n_expert));
    EXPECT_EQ(e.count, ie->counts[size_t(x)]) << e.name;
    for (int64_t j = 0; j < e.n; ++j)
      EXPECT_NEAR(e.sum[size_t(j * e.n + j)] / e.count, ie->sum2[size_t(x * e.n + j)] / ie->counts[size_t(x)],
                  1e-5 * std::fabs(ie->sum2[size_t(x * e.n + j)] / ie->counts[size_t(x)]) + 1e-12)
          << e.name << " column " << j;
    if (weight.find("gate_exps") != std::string::npos) {
      ASSERT_EQ(e.serves.size(), 2u) << e.name;  // the up expert reads the same rows
      EXPECT_EQ(e.serves[1], hessian_expert_name("blk." + std::to_string(e.name[4] - '0') + ".ffn_up_exps.weight", x));
    }
  }
  EXPECT_EQ(experts, 2 * int(cfg.n_expert * cfg.n_layer));  // every expert routed: gate(+up) and down
}

}  // namespace
}  // namespace samq
