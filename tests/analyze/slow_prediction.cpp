// The prediction must be right (issues 6 and 15): on refcode-32m calibrated on the first 32 chunks
// of calib.txt, the default predicted Δloss per (tensor, type) against the KLD measured when that
// tensor alone is quantized.
//
// FisherDlossTracksLlamacppKldOnRefcode32m (issue 15 item 2): against the KLD that llama.cpp
// itself measures, tests/analyze/data/refcode-32m-llamacpp-kld.json, recorded once by
// tests/node/record_single_tensor_kld.mjs (node-llama-cpp evaluating GGUF files in which one
// matrix has the type and every other one is BF16; KL from llama.cpp's logits on held-out
// calibration text, 2 chunks of 512 tokens; see its "about"). Types and bounds, set before the
// fixture was recorded (q2_K and q4_K: the bounds the samq-measured fixture had):
//   q2_K and q4_K on all 58 matrices: Spearman >= 0.95 (q2_K), >= 0.90 (q4_K);
//   q3_K, q6_K and iq4_xs on the subset the script records (every matrix of layers 0, 3 and 7,
//   token_embd and output: 23 tensors each): Spearman >= 0.90;
//   median |ln(pred/measured)| <= ln 1.5 over all 185 measurements after one global scale;
//   the Fisher prediction beats the plain gradient norm on q2_K and q4_K.
// Recorded figures (default signal): Spearman q2_K 0.985, q4_K 0.992, q3_K 0.970, iq4_xs 0.980,
// q6_K 0.876; median |ln| 0.116 (bound 0.405). **q6_K misses its 0.90 goal**: it is printed, not
// asserted (the closing note of issue 15 says so); every other bound is asserted. The q6_K misses
// are the smallest ones: llama.cpp measures about 1.5e-5 nats even where samq predicts 2e-6
// (blk.3.attn_q: 6.8x), while the largest, token_embd and output (7e-5 and 3e-4), agree within 3%:
// the measurement carries a term of about 1e-5 nats that the weight-error prediction does not
// model. The same script with --subset-types q8_0 shows it nearly alone: llama.cpp measures 1.0e-5
// to 2.8e-5 nats for q8_0 on blk.3.attn_q, blk.3.attn_k, blk.7.attn_v, blk.0.ffn_down where samq
// predicts 2e-7 to 5e-6 (blk.3.attn_q: 1.08e-5 measured, 2.0e-7 predicted). A likely part of it:
// the activations of a quantized matmul are quantized to 8 bits (Q8_K, Q8_0), the BF16 base's
// rounded to BF16. Not all of it: token_embd at q8_0 (a row lookup, no matmul) measures 2.4e-5
// against 6.9e-6 predicted. Not explained yet.
// (This replaces the test against tests/analyze/data/refcode-32m-measured-kld.json, which samq's
// own measure mode made: samq's output is no oracle for samq.)
//
// The llama.cpp fixture's KL is a lower bound of the full KL (the base's top 64 tokens, which hold
// 94% of the probability on average, plus the rest as one outcome). The magnitude check fits one
// global scale, so a bound that falls short of the full KL by the same factor everywhere costs
// nothing; what could cost is the spread of that factor between measurements. The script's
// --samq-full mode measured it on 9 of the files (q2_K on token_embd, output and blk.7.ffn_down;
// q4_K on blk.0.attn_v and blk.3.attn_q; q3_K on blk.3.ffn_down; q6_K on blk.3.attn_q and output;
// iq4_xs on blk.0.ffn_up): the top-64 bound is 0.85-0.93 of samq's full-vocabulary KL on the same
// windows, so the scale absorbs it and its spread (ln 0.925 - ln 0.847 = 0.09) is small against ln 1.5.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "analyze/analyze.h"
#include "common/test_env.h"
#include "common/compare.h"
#include "core/atomic_file.h"
#include "model/tokenizer.h"

namespace samq {
namespace {

using test::spearman;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// median |ln(s * pred / meas)| with the best global scale s (the median of the log ratios)
double median_log_error(const std::vector<double>& pred, const std::vector<double>& meas) {
  std::vector<double> lr;
  for (size_t i = 0; i < pred.size(); ++i) lr.push_back(std::log(std::max(pred[i], 1e-30) / meas[i]));
  const double c = median(lr);
  for (auto& x : lr) x = std::abs(x - c);
  return median(lr);
}

std::string fmt_rho(const std::string& ty, double rho) {
  char b[64];
  std::snprintf(b, sizeof b, " %s %.3f", ty.c_str(), rho);
  return b;
}

AnalysisResult analyze_refcode32m() {
  auto m = Model::load(test::shared_path("models/refcode-32m"));
  const Tokenizer tok = Tokenizer::from_hf_dir(test::shared_path("models/refcode-32m"), m->hparams.n_vocab);
  const std::string text = read_file(test::shared_path("data/calib.txt")).substr(0, 300000);
  const Calibration calib = calibration_from_text(text, "calib.txt[0:300000]", tok, 512, 16384);
  EXPECT_EQ(calib.chunks.size(), 32u);
  AnalyzeOptions opt;
  opt.progress = true;
  return analyze_model(*m, cpu_backward_ops(), calib, ModelIdentity{}, opt);
}

struct Figures {
  std::map<std::string, std::map<std::string, double>> rho;  // signal -> type -> spearman
  std::map<std::string, double> mle;                         // signal -> median log error, all types pooled
};

// Every signal's figures against one fixture, for the given types and their expected counts.
Figures compare(const AnalysisResult& r, const nlohmann::json& meas, const std::map<std::string, size_t>& types,
                const char* label) {
  std::map<std::string, const nlohmann::json*> by_name;
  for (const auto& t : r.doc["tensors"]) by_name[t["name"]] = &t;
  const std::vector<std::string> signals = {"default", "fisher_model_full", "fisher_emp_full", "fisher_model_fact",
                                            "fisher_emp_fact", "imatrix_err", "grad_norm"};
  Figures f;
  for (const auto& sig : signals) {
    std::vector<double> all_p, all_m;
    std::string line;
    for (const auto& [ty, count] : types) {
      std::vector<double> p, mk;
      for (const auto& row : meas["measurements"]) {
        if (row["type"] != ty) continue;
        const auto& t = *by_name.at(row["name"]);
        const auto& c = t["candidates"][ty];
        const double v = sig == "default" ? c["dloss"].get<double>()
                         : sig == "grad_norm" ? t["grad_norm"].get<double>()
                                              : c["signals"][sig].get<double>();
        p.push_back(v);
        mk.push_back(row["kld"].get<double>());
      }
      EXPECT_EQ(p.size(), count) << label << " " << ty;
      f.rho[sig][ty] = spearman(p, mk);
      line += fmt_rho(ty, f.rho[sig][ty]);
      all_p.insert(all_p.end(), p.begin(), p.end());
      all_m.insert(all_m.end(), mk.begin(), mk.end());
    }
    f.mle[sig] = median_log_error(all_p, all_m);
    std::printf("%s: %-18s spearman%s  median |ln(pred/measured)| after one scale %.3f\n", label, sig.c_str(),
                line.c_str(), f.mle[sig]);
  }
  return f;
}

TEST(Prediction, FisherDlossTracksLlamacppKldOnRefcode32m) {
  const nlohmann::json meas =
      nlohmann::json::parse(read_file(test::source_path("tests/analyze/data/refcode-32m-llamacpp-kld.json")));
  ASSERT_TRUE(meas.at("complete").get<bool>()) << "the fixture's recording did not finish";
  // The fixture must measure something: every ΔKL more than 3 of its standard errors above 0.
  for (const auto& row : meas["measurements"])
    EXPECT_GT(row["kld"].get<double>(), 3 * row["kld_se"].get<double>()) << row["name"] << " " << row["type"];
  const AnalysisResult r = analyze_refcode32m();
  const Figures f = compare(r, meas, {{"q2_K", 58}, {"q4_K", 58}, {"q3_K", 23}, {"q6_K", 23}, {"iq4_xs", 23}},
                            "llama.cpp");
  EXPECT_GE(f.rho.at("default").at("q2_K"), 0.95);
  EXPECT_GE(f.rho.at("default").at("q4_K"), 0.90);
  EXPECT_GE(f.rho.at("default").at("q3_K"), 0.90);
  // q6_K: goal 0.90, recorded 0.876 (see the top of this file): reported, not asserted.
  std::printf("q6_K Spearman %.3f (goal 0.90, not met: see slow_prediction.cpp)\n", f.rho.at("default").at("q6_K"));
  EXPECT_GE(f.rho.at("default").at("iq4_xs"), 0.90);
  EXPECT_LE(f.mle.at("default"), std::log(1.5));
  EXPECT_GT(f.rho.at("default").at("q2_K"), f.rho.at("grad_norm").at("q2_K"));
  EXPECT_GT(f.rho.at("default").at("q4_K"), f.rho.at("grad_norm").at("q4_K"));
  EXPECT_LT(f.mle.at("default"), f.mle.at("grad_norm"));
}

}  // namespace
}  // namespace samq
