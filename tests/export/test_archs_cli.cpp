// The whole pipeline through the command line on the issue-16 fixtures (tests/data/archs):
// samq analyze -> hessian -> plan -> quantize (GPTQ) -> eval against the HF checkpoint, as child
// processes, on a few hundred tokens (the models are tiny: seconds each). What is checked is that
// every stage accepts the architecture and that its artifacts say what they should: the file
// holds the types the plan chose (the MoE router and norms F32), and llama.cpp-compatible
// metadata; eval against the base gives a finite, positive KLD. Quality is not judged here
// (random weights).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "format/gguf.h"

using namespace samq;
using nlohmann::json;

namespace {

class ArchCli : public ::testing::TestWithParam<std::string> {};

std::string run_ok(const std::string& args) {
  std::string out;
  const int rc = test::run_command(test::samq_binary() + " -q " + args, &out);
  EXPECT_EQ(rc, 0) << args << "\n" << out;
  return out;
}

}  // namespace

TEST_P(ArchCli, AnalyzeHessianPlanQuantizeEval) {
  const std::string model = test::source_path("tests/data/archs/" + GetParam());
  const std::string d = test::temp_dir();
  write_file_atomic(d + "/calib.txt", read_file(test::shared_path("data/calib.txt")).substr(0, 6000));
  write_file_atomic(d + "/eval.txt", read_file(test::shared_path("data/eval.txt")).substr(0, 6000));
  run_ok("analyze " + model + " --calib " + d + "/calib.txt --ctx 64 --tokens 512 -o " + d + "/s.json");
  run_ok("hessian " + model + " --calib " + d + "/calib.txt --ctx 64 --tokens 512 -o " + d + "/h.gguf");
  run_ok("plan " + d + "/s.json --target-bpw 5.0 -o " + d + "/plan.json");
  run_ok("quantize " + model + " " + d + "/plan.json --hessian " + d + "/h.gguf -o " + d + "/q.gguf");
  run_ok("eval " + d + "/q.gguf --text " + d + "/eval.txt --ctx 64 --chunks 4 --base " + model + " --json " + d +
         "/eval.json");
  ASSERT_FALSE(HasFailure());

  const json s = json::parse(read_file(d + "/s.json"));
  const json plan = json::parse(read_file(d + "/plan.json"));
  const json ev = json::parse(read_file(d + "/eval.json"));
  const GgufFile q = GgufFile::open(d + "/q.gguf");
  const std::string want_arch = GetParam() == "phi3" ? "phi3" : "llama";
  EXPECT_EQ(q.get_str("general.architecture"), want_arch);
  // Every quantizable tensor of the analysis is in the file with the plan's type.
  int quantized = 0;
  ASSERT_TRUE(plan.contains("tensors")) << plan.dump().substr(0, 400);
  for (const auto& pt : plan["tensors"]) {
    const std::string name = pt.at("name").get<std::string>();
    const GgufTensorInfo* t = q.find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(std::string(ggml_type_name(t->type)), pt.at("type").get<std::string>()) << name;
    quantized += t->type != GgmlType::F32 && t->type != GgmlType::BF16;
  }
  EXPECT_GT(quantized, 0);
  for (const auto& t : q.tensors()) {
    const std::string n = t.name;
    if (n.find("_norm") != std::string::npos || n.find("ffn_gate_inp") != std::string::npos)
      EXPECT_EQ(t.type, GgmlType::F32) << n;
  }
  if (GetParam() == "mistral") EXPECT_EQ(q.get_u32("llama.attention.sliding_window"), 16u);
  if (GetParam() == "mixtral") {
    EXPECT_EQ(q.get_u32("llama.expert_count"), 4u);
    EXPECT_EQ(s["model"].value("n_expert", 0), 4);
  }
  if (GetParam() == "phi3") EXPECT_NE(q.find_tensor("blk.0.attn_qkv.weight"), nullptr);
  const double kld = ev.at("kld").at("mean").get<double>();
  EXPECT_TRUE(std::isfinite(kld));
  EXPECT_GT(kld, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Issue16, ArchCli, ::testing::Values("mistral", "mixtral", "phi3"));
