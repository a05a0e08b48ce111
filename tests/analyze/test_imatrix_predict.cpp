// Importance matrix (collection from the forward hooks vs the accumulator's backward hooks;
// GGUF round trip; the golden llama.cpp file's layout), candidate types and exact bytes,
// predictions against a direct evaluation, calibration input errors.
#include <gtest/gtest.h>

#include <cmath>

#include "analyze/calibration.h"
#include "analyze/fisher.h"
#include "analyze/imatrix.h"
#include "analyze/predict.h"
#include "format/gguf.h"
#include "grad/tiny_model.h"
#include "model/tokenizer.h"
#include "quant/quantize.h"
#include "common/test_env.h"

namespace samq {
namespace {

TEST(Imatrix, ForwardCollectionMatchesAccumulatorAndRoundTrips) {
  const test::TinyCalibration setup;
  const auto& [cfg, m, chunks] = setup;
  const Imatrix im = collect_imatrix(*m, cpu_backward_ops(), chunks, false);
  SensitivityAccumulator acc(*m, cpu_backward_ops());
  for (size_t i = 0; i < chunks.size(); ++i) acc.add_chunk(chunks[i], int64_t(i));
  EXPECT_EQ(im.entries.size(), size_t(7 * cfg.n_layer));
  for (const auto& e : im.entries) {
    EXPECT_TRUE(imatrix_collects(e.name)) << e.name;
    const TensorStats* s = acc.find(e.name);
    ASSERT_NE(s, nullptr) << e.name;
    EXPECT_EQ(e.count, 24.0);
    ASSERT_EQ(e.sum2.size(), s->col_sq.size());
    for (size_t j = 0; j < e.sum2.size(); ++j) EXPECT_NEAR(e.sum2[j], s->col_sq[j], 1e-5 * (e.sum2[j] + 1e-9)) << e.name;
  }
  EXPECT_FALSE(imatrix_collects("output.weight"));
  EXPECT_FALSE(imatrix_collects("token_embd.weight"));
  EXPECT_FALSE(imatrix_collects("blk.0.attn_norm.weight"));
  Imatrix w = im;
  w.datasets = {"calib.txt"};
  const std::string path = test::temp_dir() + "/im.gguf";
  write_imatrix_gguf(path, w);
  const Imatrix r = read_imatrix_gguf(path);
  ASSERT_EQ(r.entries.size(), w.entries.size());
  EXPECT_EQ(r.chunk_count, 2u);
  EXPECT_EQ(r.chunk_size, 12u);
  EXPECT_EQ(r.datasets, w.datasets);
  for (size_t i = 0; i < r.entries.size(); ++i) {
    EXPECT_EQ(r.entries[i].name, w.entries[i].name);
    EXPECT_EQ(r.entries[i].count, w.entries[i].count);
    EXPECT_GT(cosine_similarity(r.entries[i].sum2, w.entries[i].sum2), 0.9999999);
  }
  // the file layout llama.cpp expects: keys and tensor names/shapes
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.get_str("general.type"), "imatrix");
  EXPECT_EQ(f.get_u32("imatrix.chunk_count"), 2u);
  const auto* t = f.find_tensor("blk.0.attn_q.weight.in_sum2");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->ne[0], cfg.n_embd);
  EXPECT_EQ(t->ne[1], 1);
  ASSERT_NE(f.find_tensor("blk.0.attn_q.weight.counts"), nullptr);
}

TEST(Imatrix, GoldenLlamaCppFileHasTheLayoutWeWrite) {
  const Imatrix g = read_imatrix_gguf(test::shared_path("golden/anchors/refcode-32m-imatrix.gguf"));
  EXPECT_EQ(g.entries.size(), 56u);  // 8 layers x 7 matmul weights; no output, no token_embd
  for (const auto& e : g.entries) EXPECT_TRUE(imatrix_collects(e.name)) << e.name;
  EXPECT_EQ(g.chunk_size, 512u);
}

TEST(Predict, CandidateTypesAndExactBytes) {
  EXPECT_EQ(candidate_types(512).size(), 8u);
  EXPECT_EQ(candidate_types(512)[4], GgmlType::Q4_K);
  EXPECT_EQ(candidate_types(96).back(), GgmlType::Q4_0);
  EXPECT_EQ(candidate_types(96).size(), 7u);
  EXPECT_EQ(candidate_types(100).size(), 1u);
  test::TinyConfig cfg;
  cfg.n_embd = 256;
  cfg.n_head = 4;
  cfg.head_dim = 64;
  cfg.n_ff = 96;
  auto m = test::make_tiny_model(cfg);
  SensitivityAccumulator acc(*m, cpu_backward_ops());
  acc.add_chunk(test::tiny_tokens(8, cfg.n_vocab, 3), 0);
  for (const char* name : {"blk.0.ffn_gate.weight", "blk.0.ffn_down.weight"}) {
    const TensorStats* s = acc.find(name);
    const Tensor* t = m->find(name);
    const std::vector<float> w = m->tensor_f32(*t);
    const auto types = candidate_types(s->cols);
    const auto im = acc.imatrix(*s);
    const auto preds = predict_tensor(acc, *s, w.data(), im.data(), types);
    ASSERT_EQ(preds.size(), types.size());
    for (const auto& p : preds) {
      EXPECT_EQ(p.bytes, s->rows * ggml_row_size(p.type, s->cols));
      // imatrix_err equals the quant module's own weighted error of the same round trip
      std::vector<float> deq(w.size());
      quant_round_trip(p.type, w.data(), deq.data(), s->rows, s->cols, im.data());
      EXPECT_NEAR(p.dloss[kImatrixErr], weighted_sq_error(w.data(), deq.data(), s->rows, s->cols, im.data()),
                  1e-6 * p.dloss[kImatrixErr] + 1e-12);
      // model Fisher, full: direct sum 0.5 * F * d^2
      double direct = 0;
      std::vector<float> f(size_t(s->cols));
      for (int64_t r = 0; r < s->rows; ++r) {
        acc.fisher_row(*s, kModelLabels, false, r, f.data());
        for (int64_t i = 0; i < s->cols; ++i) {
          const double d = double(w[r * s->cols + i]) - deq[r * s->cols + i];
          direct += 0.5 * f[i] * d * d;
        }
      }
      EXPECT_NEAR(p.dloss[kFisherModelFull], direct, 1e-6 * direct + 1e-15);
    }
    // fewer bits, more loss (F16 first, the smallest type last)
    EXPECT_LT(preds.front().dloss[kFisherModelFull], preds[1].dloss[kFisherModelFull]);
    EXPECT_LT(preds[1].dloss[kFisherModelFull], preds.back().dloss[kFisherModelFull]);
  }
}

TEST(Calibration, Utf8ValidatorAndClearErrors) {
  EXPECT_EQ(first_invalid_utf8("plain ascii"), -1);
  EXPECT_EQ(first_invalid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), -1);
  EXPECT_EQ(first_invalid_utf8("ab\xff"), 2);
  EXPECT_EQ(first_invalid_utf8("ab\xc3"), 2);          // truncated
  EXPECT_EQ(first_invalid_utf8("\xc0\xaf"), 0);        // overlong
  EXPECT_EQ(first_invalid_utf8("x\xed\xa0\x80"), 1);   // surrogate
  const Tokenizer tok = Tokenizer::from_hf_dir(test::shared_path("models/refcode-32m"));
  auto expect_error = [&](const std::string& text, const std::string& what) {
    try {
      calibration_from_text(text, "calib.txt", tok, 512);
      ADD_FAILURE() << "no error for " << what;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("calib.txt"), std::string::npos) << e.what();
    }
  };
  expect_error("", "empty");
  expect_error("def f():\n  return 1\n\xff\n", "not valid UTF-8");
  expect_error("def f():\n  return 1\n", "shorter than one context");
  std::string text;
  while (text.size() < 20000) text += "def function_name(argument):\n    return argument + 1\n";
  const Calibration c = calibration_from_text(text, "calib.txt", tok, 128, 300);
  ASSERT_EQ(c.chunks.size(), 2u);  // 300 tokens -> 2 whole chunks
  for (const auto& ch : c.chunks) {
    EXPECT_EQ(ch.size(), 128u);
    EXPECT_EQ(ch[0], tok.bos());
  }
}

}  // namespace
}  // namespace samq
