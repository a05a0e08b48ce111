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

}  // namespace
}  // namespace samq
