// The analysis of a mixture-of-experts model (tiny random qwen3moe, model/moe.h): the full
// Fisher of a stacked expert tensor is the squared gradient of the backward pass (brute force),
// its factored statistics and importance matrix are per expert from the routed rows only (the
// forward collection and the accumulator agree, counts sum to tokens x experts used), the GGUF
// imatrix has llama-imatrix's 3-D layout (checked against llama.cpp's own file of refmoe-31m),
// and experts never routed to get the routed experts' mean statistics.
#include <gtest/gtest.h>

#include <cmath>

#include "analyze/fisher.h"
#include "analyze/imatrix.h"
#include "analyze/predict.h"
#include "backend/ops_backward.h"
#include "common/test_env.h"
#include "format/gguf.h"
#include "grad/tiny_model.h"
#include "model/backward.h"
#include "quant/quantize.h"

namespace samq {
namespace {

struct TinyMoe {
  test::TinyConfig cfg{.arch = "qwen3moe", .qk_norm = true, .seed = 11};
  std::shared_ptr<Model> model = test::make_tiny_model(cfg);
  std::vector<std::vector<int32_t>> chunks = test::tiny_chunks(cfg, 12, {1, 2});
};

TEST(MoeAnalysis, FullFisherIsSquaredGradientAndCountsFollowRouting) {
  const TinyMoe t;
  SensitivityAccumulator acc(*t.model, cpu_backward_ops());
  for (size_t i = 0; i < t.chunks.size(); ++i) acc.add_chunk(t.chunks[i], int64_t(i));
  // brute force: the empirical chunk gradients from the backward pass, squared and summed
  ModelGradient mg(*t.model, cpu_backward_ops());
  std::map<std::string, std::vector<double>> g2;
  for (const auto& c : t.chunks) {
    mg.forward(c);
    const auto logits = mg.logits_host();
    const int64_t n = int64_t(c.size()), V = t.cfg.n_vocab;
    std::vector<int32_t> labels(size_t(n), -1);
    for (int64_t i = 0; i + 1 < n; ++i) labels[size_t(i)] = c[size_t(i + 1)];
    std::vector<float> dl(size_t(n * V));
    softmax_cross_entropy_backward(cpu_ops(), logits.data(), labels.data(), n, V, 1.0f, dl.data());
    GradientBuffers g(t.model->weights, cpu_ops());
    mg.backward(dl.data(), &g, nullptr);
    for (auto& e : g.entries()) {
      auto& v = g2[e.name];
      v.resize(size_t(e.rows * e.cols), 0.0);
      for (int64_t i = 0; i < e.rows * e.cols; ++i) v[size_t(i)] += double(e.g.data()[i]) * e.g.data()[i];
    }
  }
  int experts_checked = 0;
  for (const TensorStats& s : acc.stats()) {
    if (s.n_mat == 1) continue;
    ++experts_checked;
    EXPECT_EQ(s.n_mat, t.cfg.n_expert) << s.name;
    double routed = 0;
    for (int64_t e = 0; e < s.n_mat; ++e) {
      EXPECT_GT(s.mat_rows_seen[size_t(e)], 0) << s.name << " expert " << e << " (choose another seed)";
      routed += s.mat_rows_seen[size_t(e)];
    }
    EXPECT_EQ(routed, double(24 * t.cfg.n_expert_used)) << s.name;  // every token, k experts
    std::vector<float> row(size_t(s.cols));
    const auto& want = g2.at(s.name);
    for (int64_t r = 0; r < s.rows; ++r) {
      acc.fisher_row(s, kEmpirical, false, r, row.data());
      for (int64_t i = 0; i < s.cols; ++i)
        ASSERT_NEAR(row[size_t(i)] * acc.n_loss_tokens(), want[size_t(r * s.cols + i)],
                    1e-4 * (want[size_t(r * s.cols + i)] + 1e-6))
            << s.name << " row " << r;
    }
    // factored: expert e's rows from its own column sums and count
    const int64_t R = s.mat_rows(), e = 1, r = e * R + 2;
    acc.fisher_row(s, kModelLabels, true, r, row.data());
    for (int64_t i = 0; i < s.cols; ++i)
      EXPECT_NEAR(row[size_t(i)],
                  s.row_sq[kModelLabels][size_t(r)] * s.col_sq[size_t(e * s.cols + i)] / s.mat_rows_seen[size_t(e)] /
                      double(acc.n_loss_tokens()),
                  1e-6 * (std::abs(row[size_t(i)]) + 1e-12));
  }
  EXPECT_EQ(experts_checked, 3 * t.cfg.n_layer);
}

TEST(MoeAnalysis, ImatrixPerExpertMatchesAccumulatorAndHasLlamaImatrixLayout) {
  const TinyMoe t;
  const Imatrix im = collect_imatrix(*t.model, cpu_backward_ops(), t.chunks, false);
  SensitivityAccumulator acc(*t.model, cpu_backward_ops());
  for (size_t i = 0; i < t.chunks.size(); ++i) acc.add_chunk(t.chunks[i], int64_t(i));
  // q, k, v, o, router + 3 expert tensors per layer
  EXPECT_EQ(im.entries.size(), size_t(8 * t.cfg.n_layer));
  int stacked = 0;
  for (const auto& e : im.entries) {
    const TensorStats* s = acc.find(e.name);
    ASSERT_NE(s, nullptr) << e.name;
    ASSERT_EQ(e.sum2.size(), s->col_sq.size()) << e.name;
    for (size_t j = 0; j < e.sum2.size(); ++j) EXPECT_NEAR(e.sum2[j], s->col_sq[j], 1e-5 * (e.sum2[j] + 1e-9)) << e.name;
    if (s->n_mat > 1) {
      ++stacked;
      ASSERT_EQ(e.counts, s->mat_rows_seen) << e.name;
      EXPECT_EQ(e.count, double(24 * t.cfg.n_expert_used));
    } else {
      EXPECT_EQ(e.count, 24.0) << e.name;
    }
  }
  EXPECT_EQ(stacked, 3 * t.cfg.n_layer);
  Imatrix w = im;
  w.datasets = {"calib.txt"};
  const std::string path = test::temp_dir() + "/moe-im.gguf";
  write_imatrix_gguf(path, w);
  const GgufFile f = GgufFile::open(path);
  const auto* s2 = f.find_tensor("blk.1.ffn_down_exps.weight.in_sum2");
  const auto* c = f.find_tensor("blk.1.ffn_down_exps.weight.counts");
  ASSERT_TRUE(s2 && c);
  EXPECT_EQ(s2->ne[0], t.cfg.n_ff_exp);
  EXPECT_EQ(s2->ne[1], t.cfg.n_expert);
  EXPECT_EQ(c->ne[0], 1);
  EXPECT_EQ(c->ne[1], t.cfg.n_expert);
  const Imatrix r = read_imatrix_gguf(path);
  const ImatrixEntry* re = r.find("blk.1.ffn_down_exps.weight");
  ASSERT_NE(re, nullptr);
  EXPECT_EQ(re->counts, im.find("blk.1.ffn_down_exps.weight")->counts);
  // llama.cpp's file of refmoe-31m: the same layout and entries (router included)
  const GgufFile g = GgufFile::open(test::shared_path("golden/anchors/refmoe-31m-imatrix.gguf"));
  const auto* gs = g.find_tensor("blk.0.ffn_gate_exps.weight.in_sum2");
  const auto* gc = g.find_tensor("blk.0.ffn_gate_exps.weight.counts");
  ASSERT_TRUE(gs && gc);
  EXPECT_EQ(gs->ne[0], 512);
  EXPECT_EQ(gs->ne[1], 8);
  EXPECT_EQ(gc->ne[1], 8);
  const Imatrix gold = read_imatrix_gguf(test::shared_path("golden/anchors/refmoe-31m-imatrix.gguf"));
  EXPECT_EQ(gold.entries.size(), size_t(8 * 6));
  int unrouted = 0;
  for (const auto& e : gold.entries) {
    EXPECT_TRUE(imatrix_collects(e.name)) << e.name;
    for (double x : e.counts) unrouted += x == 0;
  }
  EXPECT_GT(unrouted, 0) << "the anchor has experts llama.cpp never routed to (partial data)";
}

TEST(MoeAnalysis, UnroutedExpertGetsRoutedMeanAndUniformImatrix) {
  TensorStats s;
  s.name = "blk.0.ffn_up_exps.weight";
  s.n_mat = 3;
  s.rows = 3 * 2;
  s.cols = 2;
  s.linear = true;
  s.mat_rows_seen = {4, 0, 2};
  s.mat_count.assign(3, 0);
  s.filled.assign(3, false);
  s.n_rows_seen = 6;
  s.col_sq = {4, 8, 0, 0, 2, 6};  // per-token means: {1, 2}, -, {1, 3}
  for (int k = 0; k < 2; ++k) {
    s.row_sq[k] = {8, 4, 0, 0, 2, 2};  // per token: {2, 1}, -, {1, 1}
    s.g2[k] = {1, 2, 3, 4, 0, 0, 0, 0, 3, 2, 1, 0};
  }
  fill_unrouted_experts(s);
  EXPECT_EQ(s.filled, (std::vector<bool>{false, true, false}));
  EXPECT_EQ(s.mat_rows_seen[1], 0);  // the measurement is kept
  EXPECT_EQ(s.mat_count[1], 3);      // mean routed count
  // per-token means of the routed experts, times the mean count
  EXPECT_DOUBLE_EQ(s.col_sq[2], 3.0 * (1 + 1) / 2);
  EXPECT_DOUBLE_EQ(s.col_sq[3], 3.0 * (2 + 3) / 2);
  EXPECT_DOUBLE_EQ(s.row_sq[0][2], 3.0 * (2 + 1) / 2);
  EXPECT_DOUBLE_EQ(s.row_sq[0][3], 3.0 * (1 + 1) / 2);
  EXPECT_FLOAT_EQ(s.g2[0][4], 2.0f);  // (1 + 3) / 2
  EXPECT_FLOAT_EQ(s.g2[0][7], 2.0f);  // (4 + 0) / 2
  fill_unrouted_experts(s);           // idempotent (the statistics are re-synced from the device)
  EXPECT_DOUBLE_EQ(s.col_sq[2], 3.0);
}

}  // namespace
}  // namespace samq
