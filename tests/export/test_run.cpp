// `samq run` end to end on a tiny checkpoint (../shared/golden/archs/llama3-ropescaled) with a
// given sensitivity report (fake Δloss, so no analysis runs): every stage's artifact exists,
// the report lists samq's file and the compared preset, and a second run reuses every stage.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "export/skeleton.h"

using namespace samq;

namespace {
nlohmann::json to_json(const plan::Sensitivity& s) {
  nlohmann::json ts = nlohmann::json::array();
  int k = 0;
  for (const auto& t : s.tensors) {
    nlohmann::json c = nlohmann::json::object();
    ++k;
    for (const auto& cand : t.candidates) {
      const double d = t.quantizable ? (1 + k % 3) * double(t.params) * std::pow(2.0, -2 * ggml_bits_per_weight(cand.type)) * 1e-6 : 0.0;
      c[std::string(ggml_type_name(cand.type))] = {{"bytes", cand.bytes}, {"dloss", d}};
    }
    ts.push_back({{"name", t.name}, {"shape", {t.rows, t.cols}}, {"params", t.params}, {"quantizable", t.quantizable},
                  {"grad_norm", 1.0 + k}, {"candidates", c}});
  }
  return {{"schema", "samq.sensitivity/1"},
          {"model", {{"sha256", s.model.sha256}, {"architecture", "llama"}}},
          {"gguf_overhead_bytes", s.gguf_overhead_bytes},
          {"tensors", ts}};
}
}  // namespace

TEST(Run, PipelineWithGivenSensitivityAndReuse) {
  const std::string model = test::shared_path("golden/archs/llama3-ropescaled");
  const std::string dir = test::temp_dir();
  auto src = open_source_model(model);
  const auto s = sensitivity_skeleton(*src, {GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q5_K, GgmlType::Q4_K,
                                             GgmlType::Q3_K, GgmlType::Q2_K});
  write_file_atomic(dir + "/s.json", to_json(s).dump());
  write_file_atomic(dir + "/eval.txt", read_file(test::shared_path("data/eval.txt")).substr(0, 4000));
  const std::string cmd = test::samq_binary() + " -q run " + model + " --sensitivity " + dir + "/s.json --eval " + dir +
                          "/eval.txt --ctx 64 --eval-chunks 2 --target-bpw 4.6 --compare Q4_K_M -o " + dir + "/out";
  std::string out;
  ASSERT_EQ(test::run_command(cmd, &out), 0) << out;
  for (const char* f : {"sensitivity.json", "plan.json", "plan.tensor-types.txt", "model.gguf", "base.logits", "eval.json",
                        "compare/Q4_K_M.gguf", "compare/Q4_K_M.eval.json", "compare/samq-at-Q4_K_M.gguf", "report.md",
                        "size-vs-kld.svg", "type-map.svg", "run-state.json"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/out/" + f)) << f;
  const std::string md = read_file(dir + "/out/report.md");
  EXPECT_NE(md.find("Q4_K_M (llama.cpp rules)"), std::string::npos) << md;
  EXPECT_NE(md.find("KLD ratio"), std::string::npos) << md;
  EXPECT_NE(read_file(dir + "/out/type-map.svg").find("blk.1"), std::string::npos);

  out.clear();
  ASSERT_EQ(test::run_command(cmd, &out), 0) << out;
  EXPECT_EQ(out.find("== samq "), std::string::npos) << "a stage re-ran:\n" << out;
  EXPECT_NE(out.find("up to date"), std::string::npos) << out;
}

// --sweep without a budget: samq's file is its plan at Q4_K_M's size, and every other preset gets
// its llama.cpp-rules file and a samq plan at that preset's size, each quantized and evaluated;
// the plot is titled with the model's name and carries both curves.
TEST(Run, SweepComparesEveryPresetWithSamqAtItsSize) {
  const std::string model = test::shared_path("golden/archs/llama3-ropescaled");
  const std::string dir = test::temp_dir();
  auto src = open_source_model(model);
  const auto s = sensitivity_skeleton(*src, {GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q5_K, GgmlType::Q4_K,
                                             GgmlType::Q3_K, GgmlType::Q2_K});
  write_file_atomic(dir + "/s.json", to_json(s).dump());
  write_file_atomic(dir + "/eval.txt", read_file(test::shared_path("data/eval.txt")).substr(0, 4000));
  std::string out;
  ASSERT_EQ(test::run_command(test::samq_binary() + " -q run " + model + " --sensitivity " + dir + "/s.json --eval " +
                                  dir + "/eval.txt --ctx 64 --eval-chunks 2 --sweep -o " + dir + "/out",
                              &out),
            0)
      << out;
  const std::string md = read_file(dir + "/out/report.md");
  const std::string svg = read_file(dir + "/out/size-vs-kld.svg");
  for (const char* p : {"Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0"}) {
    const std::string preset = dir + "/out/compare/" + p;
    EXPECT_NE(md.find(std::string(p) + " (llama.cpp rules)"), std::string::npos) << p;
    EXPECT_TRUE(std::filesystem::exists(preset + ".eval.json")) << p;
    EXPECT_NE(md.find(std::string("samq @ ") + p + " size"), std::string::npos) << p;
    // samq's main file is its plan at Q4_K_M's size
    const std::string at = std::string(p) == "Q4_K_M" ? dir + "/out/model" : dir + "/out/compare/samq-at-" + p;
    EXPECT_TRUE(std::filesystem::exists(std::string(p) == "Q4_K_M" ? dir + "/out/eval.json" : at + ".eval.json")) << p;
    EXPECT_LE(std::filesystem::file_size(at + ".gguf"), std::filesystem::file_size(preset + ".gguf")) << p;
  }
  EXPECT_NE(svg.find(">llama3-ropescaled: file size vs KLD to the base model<"), std::string::npos);
  EXPECT_EQ(svg.find("refcode"), std::string::npos);
  size_t labels = 0;
  for (size_t at = svg.find("class=\"label\""); at != std::string::npos; at = svg.find("class=\"label\"", at + 1)) ++labels;
  EXPECT_EQ(labels, 20u);  // 10 presets, samq's file and 9 samq plans at the other presets' sizes
}
