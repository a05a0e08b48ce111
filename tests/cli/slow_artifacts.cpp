// Issue 15 item 9: the stage-by-stage path of README's table (analyze -> plan -> quantize, no extra
// flags) carries the importance matrix from stage to stage. sensitivity.json names the imatrix
// that `samq analyze` wrote beside it by default (absolute path, sha256), plan.json names the report,
// and `samq quantize` without --imatrix uses that imatrix (the same bytes as with --imatrix given)
// and says so; without --hessian it says that GPTQ is off and how to turn it on. When the
// imatrix is gone or changed, it says that it falls back to plain rounding, and why.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "core/sha256.h"
#include "plan/measure_helpers.h"

namespace samq {
namespace {

using test::sh;

TEST(Artifacts, QuantizeUsesTheImatrixAnalyzeNamedAndSaysWhenItFallsBack) {
  const std::string d = std::filesystem::canonical(test::temp_dir()).string();
  const std::string model = test::shared_path("models/refcode-32m");
  write_file_atomic(d + "/calib.txt", read_file(test::shared_path("data/calib.txt")).substr(0, 20000));
  const std::string bin = "cd " + d + " && " + test::samq_binary() + " -q ";
  test::run_ok(bin + "analyze " + sh(model) + " --calib calib.txt --ctx 128 --tokens 256 -o sens.json");
  const nlohmann::json s = nlohmann::json::parse(read_file(d + "/sens.json"));
  ASSERT_TRUE(s.contains("imatrix") && s["imatrix"].is_object()) << "sensitivity.json does not name its imatrix";
  EXPECT_EQ(s["imatrix"]["path"], d + "/sens.imatrix.gguf");
  EXPECT_EQ(s["imatrix"]["sha256"], sha256_file_hex(d + "/sens.imatrix.gguf"));
  test::run_ok(bin + "plan sens.json --target-bpw 4.5 -o plan.json");

  std::string out;
  ASSERT_EQ(test::run_command(bin + "quantize " + sh(model) + " plan.json -o default.gguf", &out), 0) << out;
  EXPECT_NE(out.find("importance matrix " + d + "/sens.imatrix.gguf"), std::string::npos) << out;
  EXPECT_NE(out.find("no --hessian: no GPTQ"), std::string::npos) << out;
  test::run_ok(bin + "quantize " + sh(model) + " plan.json -o explicit.gguf --imatrix sens.imatrix.gguf");
  EXPECT_TRUE(read_file(d + "/default.gguf") == read_file(d + "/explicit.gguf"))
      << "quantize without --imatrix did not use the imatrix analyze wrote";

  // The imatrix changed since analyze wrote it: plain rounding, said with the reason.
  write_file_atomic(d + "/sens.imatrix.gguf", read_file(d + "/sens.imatrix.gguf") + "x");
  out.clear();
  ASSERT_EQ(test::run_command(bin + "quantize " + sh(model) + " plan.json -o changed.gguf", &out), 0) << out;
  EXPECT_NE(out.find("changed since samq analyze wrote it"), std::string::npos) << out;
  EXPECT_NE(out.find("plain rounding"), std::string::npos) << out;
  // ... and gone.
  std::filesystem::remove(d + "/sens.imatrix.gguf");
  out.clear();
  ASSERT_EQ(test::run_command(bin + "quantize " + sh(model) + " plan.json -o gone.gguf", &out), 0) << out;
  EXPECT_NE(out.find("is not there"), std::string::npos) << out;
  EXPECT_NE(out.find("plain rounding"), std::string::npos) << out;
  EXPECT_TRUE(read_file(d + "/changed.gguf") == read_file(d + "/gone.gguf"));
  EXPECT_FALSE(read_file(d + "/gone.gguf") == read_file(d + "/default.gguf")) << "the imatrix made no difference";
}

}  // namespace
}  // namespace samq
