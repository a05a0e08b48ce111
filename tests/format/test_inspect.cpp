// `samq inspect` end to end: GGUF and HF directory, text and --json, and a clear error on a
// bad file. Totals are checked against docs/anchors.md (parameter count, file size) and
// llama.cpp's BPW definition (tensor bytes * 8 / elements).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/atomic_file.h"

using json = nlohmann::json;

namespace {
std::string inspect(const std::string& args, int* rc = nullptr) {
  std::string out;
  int r = samq::test::run_command(samq::test::samq_binary() + " inspect " + args, &out);
  if (rc) *rc = r;
  return out;
}
}  // namespace

TEST(Inspect, GgufJson) {
  int rc;
  const std::string out =
      inspect(samq::test::shared_path("golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf") + " --json 2>/dev/null", &rc);
  ASSERT_EQ(rc, 0) << out;
  const json j = json::parse(out);
  EXPECT_EQ(j["format"], "gguf");
  EXPECT_EQ(j["file_bytes"], 20542368);
  EXPECT_EQ(j["metadata"]["general.file_type"]["value"], 15);
  EXPECT_EQ(j["metadata"]["tokenizer.ggml.tokens"]["count"], 8192);
  EXPECT_EQ(j["metadata"]["tokenizer.ggml.tokens"]["first"].size(), 8u);  // summarized
  EXPECT_EQ(j["hparams"]["n_layer"], 8);
  EXPECT_EQ(j["tensors"].size(), 75u);
  EXPECT_EQ(j["totals"]["params"], 32514560);
  int64_t bytes = 0, params = 0;
  for (const auto& t : j["tensors"]) bytes += t["bytes"].get<int64_t>(), params += t["params"].get<int64_t>();
  EXPECT_EQ(j["totals"]["bytes"], bytes);
  EXPECT_EQ(params, 32514560);
  EXPECT_NEAR(j["totals"]["bpw"].get<double>(), 8.0 * double(bytes) / 32514560.0, 1e-9);
  for (const auto& bt : j["by_type"]) {
    const std::string type = bt["type"];
    if (type == "q4_K") {
      EXPECT_DOUBLE_EQ(bt["bpw"].get<double>(), 4.5);
    }
    if (type == "q6_K") {
      EXPECT_DOUBLE_EQ(bt["bpw"].get<double>(), 6.5625);
    }
    if (type == "f32") {
      EXPECT_DOUBLE_EQ(bt["bpw"].get<double>(), 32.0);
    }
  }
}

TEST(Inspect, HfDirTextAndJson) {
  int rc;
  const std::string dir = samq::test::shared_path("models/refcode-32m");
  const std::string text = inspect(dir, &rc);
  ASSERT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("model.layers.7.mlp.down_proj.weight"), std::string::npos);
  EXPECT_NE(text.find("[512, 1536]"), std::string::npos);
  EXPECT_NE(text.find("n_head_kv 2"), std::string::npos);
  EXPECT_NE(text.find("32514560"), std::string::npos);
  EXPECT_NE(text.find("16.0000"), std::string::npos);
  const json j = json::parse(inspect(dir + " --json --no-tensors 2>/dev/null"));
  EXPECT_EQ(j["format"], "safetensors");
  EXPECT_FALSE(j.contains("tensors"));
  EXPECT_EQ(j["totals"]["params"], 32514560);
  EXPECT_EQ(j["totals"]["bytes"], 2 * 32514560);
  EXPECT_EQ(j["hparams"]["rope_theta"], 500000.0);
  EXPECT_EQ(j["files"].size(), 6u);
  for (const char* d : {"llama3-ropescaled", "qwen2-tied-bias", "qwen3-qknorm"}) {
    const std::string o = inspect(samq::test::shared_path(std::string("golden/archs/") + d), &rc);
    EXPECT_EQ(rc, 0) << d << ": " << o;
  }
}

TEST(Inspect, BadFileClearError) {
  const std::string dir = samq::test::temp_dir();
  samq::write_file_atomic(dir + "/bad.gguf", std::string("GGUF\x03\0\0\0", 8));
  int rc;
  const std::string out = inspect(dir + "/bad.gguf", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("bad.gguf"), std::string::npos) << out;
  EXPECT_NE(out.find("n_tensors"), std::string::npos) << out;
  const std::string help = inspect("--help", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_NE(help.find("--json"), std::string::npos);
}
