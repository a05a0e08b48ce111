// The prediction must be right (issue 6): on refcode-32m calibrated on the first 32 chunks of
// calib.txt, the default predicted Δloss per (tensor, type) against the KLD measured when that
// tensor alone is quantized (tests/analyze/data/refcode-32m-measured-kld.json, made by
// `samq analyze --measure-text eval.txt --measure-chunks 64`, see its "about"). Asserts
// Spearman >= 0.95 (Q2_K) and >= 0.9 (Q4_K), median |ln(pred/measured)| <= ln 1.5 after one
// global scale, and that the Fisher prediction beats the plain gradient norm on both; prints
// the figures for every signal.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

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

TEST(Prediction, FisherDlossTracksMeasuredKldOnRefcode32m) {
  const nlohmann::json meas = nlohmann::json::parse(read_file(test::source_path("tests/analyze/data/refcode-32m-measured-kld.json")));
  auto m = Model::load(test::shared_path("models/refcode-32m"));
  const Tokenizer tok = Tokenizer::from_hf_dir(test::shared_path("models/refcode-32m"), m->hparams.n_vocab);
  const std::string text = read_file(test::shared_path("data/calib.txt")).substr(0, 300000);
  const Calibration calib = calibration_from_text(text, "calib.txt[0:300000]", tok, 512, 16384);
  ASSERT_EQ(calib.chunks.size(), 32u);
  AnalyzeOptions opt;
  opt.progress = true;
  const AnalysisResult r = analyze_model(*m, cpu_backward_ops(), calib, ModelIdentity{}, opt);
  std::map<std::string, const nlohmann::json*> by_name;
  for (const auto& t : r.doc["tensors"]) by_name[t["name"]] = &t;

  const std::vector<std::string> signals = {"default", "fisher_model_full", "fisher_emp_full", "fisher_model_fact",
                                            "fisher_emp_fact", "imatrix_err", "grad_norm"};
  std::map<std::string, std::map<std::string, double>> rho;  // signal -> type -> spearman
  std::map<std::string, double> mle;                         // signal -> median log error
  for (const auto& sig : signals) {
    std::vector<double> all_p, all_m;
    for (const std::string ty : {"q2_K", "q4_K"}) {
      std::vector<double> p, mk;
      for (const auto& row : meas["measurements"]) {
        if (row["type"] != ty) continue;
        const auto& t = *by_name.at(row["name"]);
        const auto& c = t["candidates"][ty];
        double v = sig == "default" ? c["dloss"].get<double>()
                   : sig == "grad_norm" ? t["grad_norm"].get<double>()
                                        : c["signals"][sig].get<double>();
        p.push_back(v);
        mk.push_back(row["kld"].get<double>());
      }
      ASSERT_EQ(p.size(), 58u);
      rho[sig][ty] = spearman(p, mk);
      all_p.insert(all_p.end(), p.begin(), p.end());
      all_m.insert(all_m.end(), mk.begin(), mk.end());
    }
    mle[sig] = median_log_error(all_p, all_m);
    std::printf("%-18s spearman q2_K %.3f  q4_K %.3f  median |ln(pred/measured)| after one scale %.3f\n", sig.c_str(),
                rho[sig]["q2_K"], rho[sig]["q4_K"], mle[sig]);
  }
  EXPECT_GE(rho["default"]["q2_K"], 0.95);
  EXPECT_GE(rho["default"]["q4_K"], 0.90);
  EXPECT_LE(mle["default"], std::log(1.5));
  EXPECT_GT(rho["default"]["q2_K"], rho["grad_norm"]["q2_K"]);
  EXPECT_GT(rho["default"]["q4_K"], rho["grad_norm"]["q4_K"]);
  EXPECT_LT(mle["default"], mle["grad_norm"]);
}

}  // namespace
}  // namespace samq
