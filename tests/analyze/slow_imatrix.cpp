// The importance matrix against llama-imatrix's own output for the same input
// (../shared/golden/anchors/refcode-32m-imatrix.gguf: llama-imatrix -c 512 on the first 600000
// bytes of calib.txt): same tensors, counts within 1e-4, per-tensor cosine similarity >= 0.999.
#include <gtest/gtest.h>

#include <cstdio>

#include "analyze/calibration.h"
#include "analyze/imatrix.h"
#include "common/test_env.h"
#include "core/atomic_file.h"
#include "model/tokenizer.h"

namespace samq {
namespace {

TEST(ImatrixGolden, MatchesLlamaImatrixOnCalib600k) {
  auto m = Model::load(test::shared_path("models/refcode-32m"));
  const Tokenizer tok = Tokenizer::from_hf_dir(test::shared_path("models/refcode-32m"), m->hparams.n_vocab);
  const std::string text = read_file(test::shared_path("data/calib.txt")).substr(0, 600000);
  const Calibration calib = calibration_from_text(text, "calib.txt[0:600000]", tok, 512);
  const Imatrix ours = collect_imatrix(*m, cpu_backward_ops(), calib.chunks, true);
  const Imatrix gold = read_imatrix_gguf(test::shared_path("golden/anchors/refcode-32m-imatrix.gguf"));
  ASSERT_EQ(ours.entries.size(), gold.entries.size());
  double worst = 1;
  for (const auto& g : gold.entries) {
    const ImatrixEntry* o = ours.find(g.name);
    ASSERT_NE(o, nullptr) << g.name;
    // llama-imatrix reports 153082 rows where 299 chunks of 512 give 153088: counts agree to
    // 1e-4 (the issue asks for the same tensors and the cosine; the 6-row gap is unexplained).
    EXPECT_NEAR(o->count, g.count, 1e-4 * g.count) << g.name;
    const double cs = cosine_similarity(o->sum2, g.sum2);
    worst = std::min(worst, cs);
    EXPECT_GE(cs, 0.999) << g.name;
  }
  std::printf("imatrix: %zu tensors, %zu chunks, worst cosine %.6f\n", gold.entries.size(), calib.chunks.size(), worst);
}

// MoE (refmoe-31m, llama-imatrix -c 512 on the same 600000 bytes): the router and the 3-D expert
// tensors get entries; each expert's count is the number of token rows llama.cpp routed to it,
// each expert's in_sum2 the sums over those rows. Routing is a discrete choice, so a near-tie
// resolved differently (samq's float summation order differs from ggml's) moves a token between
// experts: counts must agree within 0.5% per expert and exactly in which experts got none.
TEST(ImatrixGolden, MoeExpertsMatchLlamaImatrixOnCalib600k) {
  auto m = Model::load(test::shared_path("models/refmoe-31m"));
  const Tokenizer tok = Tokenizer::from_hf_dir(test::shared_path("models/refmoe-31m"), m->hparams.n_vocab);
  const std::string text = read_file(test::shared_path("data/calib.txt")).substr(0, 600000);
  const Calibration calib = calibration_from_text(text, "calib.txt[0:600000]", tok, 512);
  const Imatrix ours = collect_imatrix(*m, cpu_backward_ops(), calib.chunks, true);
  const Imatrix gold = read_imatrix_gguf(test::shared_path("golden/anchors/refmoe-31m-imatrix.gguf"));
  ASSERT_EQ(ours.entries.size(), gold.entries.size());
  double worst = 1, worst_count = 0;
  int experts = 0, unrouted = 0;
  for (const auto& g : gold.entries) {
    const ImatrixEntry* o = ours.find(g.name);
    ASSERT_NE(o, nullptr) << g.name;
    ASSERT_EQ(o->counts.size(), g.counts.size()) << g.name;
    ASSERT_EQ(o->sum2.size(), g.sum2.size()) << g.name;
    if (g.counts.empty()) {
      EXPECT_NEAR(o->count, g.count, 1e-4 * g.count) << g.name;
      const double cs = cosine_similarity(o->sum2, g.sum2);
      worst = std::min(worst, cs);
      EXPECT_GE(cs, 0.999) << g.name;
      continue;
    }
    const size_t n = g.counts.size(), cols = g.sum2.size() / n;
    for (size_t e = 0; e < n; ++e) {
      ++experts;
      const double gc = g.counts[e], oc = o->counts[e];
      EXPECT_EQ(gc == 0, oc == 0) << g.name << " expert " << e << ": " << oc << " rows vs llama.cpp's " << gc;
      if (gc == 0) {
        ++unrouted;
        continue;
      }
      worst_count = std::max(worst_count, std::abs(oc - gc) / gc);
      EXPECT_NEAR(oc, gc, 5e-3 * gc) << g.name << " expert " << e;
      const std::vector<double> a(o->sum2.begin() + e * cols, o->sum2.begin() + (e + 1) * cols);
      const std::vector<double> b(g.sum2.begin() + e * cols, g.sum2.begin() + (e + 1) * cols);
      const double cs = cosine_similarity(a, b);
      worst = std::min(worst, cs);
      EXPECT_GE(cs, 0.999) << g.name << " expert " << e;
    }
  }
  EXPECT_GT(experts, 0);
  std::printf("moe imatrix: %zu tensors, %d expert slices (%d never routed), worst count error %.2g, worst cosine %.6f\n",
              gold.entries.size(), experts, unrouted, worst_count, worst);
}

}  // namespace
}  // namespace samq
