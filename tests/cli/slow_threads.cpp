// Issue 15 item 3: the commands give the same output with 1 and with 2 threads, through the CLI
// as a user runs them (-t 1 against -t 2), on the reference model (../shared/models/refcode-32m):
//   samq analyze (sensitivity.json and the importance matrix), samq hessian (the Hessian file),
//   samq quantize with GPTQ and the imatrix (the GGUF), samq eval (eval.json, and the saved logits).
// Files must be byte-identical; JSON must be equal once the fields that describe the run rather
// than its result (seconds, tokens per second, the thread count) are dropped. Small slices (ctx
// 128, 2 calibration chunks, 2 evaluation chunks) keep it to seconds; chunk boundaries of
// parallel_for never depend on the thread count, so any difference is a bug.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "plan/measure_helpers.h"

namespace samq {
namespace {

using test::run_ok;
using test::sh;

// Drops, at any depth, the keys that describe how the run went rather than what it computed.
void drop_run_fields(nlohmann::json& j) {
  if (j.is_object()) {
    // "memory": analyze's memory plan and peak RSS, which depend on the thread count (buffers per thread).
    for (const char* k : {"seconds", "tokens_per_second", "threads", "wall_seconds", "elapsed_s", "memory"}) j.erase(k);
    for (auto& [k, v] : j.items()) drop_run_fields(v);
  } else if (j.is_array()) {
    for (auto& v : j) drop_run_fields(v);
  }
}

nlohmann::json result_json(const std::string& path) {
  nlohmann::json j = nlohmann::json::parse(read_file(path));
  drop_run_fields(j);
  // sensitivity.json names its importance matrix by absolute path (each run has its own
  // directory); its sha256 stays compared.
  if (j.contains("imatrix") && j["imatrix"].is_object()) j["imatrix"].erase("path");
  return j;
}

TEST(Threads, AnalyzeHessianQuantizeEvalSameWithOneAndTwoThreads) {
  const std::string d = test::temp_dir();
  const std::string model = test::shared_path("models/refcode-32m");
  const std::string calib_text = read_file(test::shared_path("data/calib.txt")).substr(0, 20000);
  const std::string eval_text = read_file(test::shared_path("data/eval.txt")).substr(0, 20000);
  // Each run in its own directory with the same relative file names, so paths recorded in the
  // outputs are the same.
  for (const char* t : {"1", "2"}) {
    const std::string o = d + "/t" + t;
    std::filesystem::create_directories(o);
    write_file_atomic(o + "/calib.txt", calib_text);
    write_file_atomic(o + "/eval.txt", eval_text);
    const std::string bin = "cd " + o + " && " + test::samq_binary() + " -q -t " + t + " ";
    const std::string calib = " --calib calib.txt --ctx 128 --tokens 256";
    run_ok(bin + "analyze " + sh(model) + calib + " -o sens.json --imatrix-out imatrix.gguf");
    run_ok(bin + "hessian " + sh(model) + calib + " -o H.gguf");
    // The plan is a pure function of the report and records its sha256 (which includes the run's
    // timing fields): both quantize runs use the plan made from the 1-thread report.
    if (std::string(t) == "1") run_ok(bin + "plan sens.json --target-bpw 4.5 -o plan.json");
    else write_file_atomic(o + "/plan.json", read_file(d + "/t1/plan.json"));
    run_ok(bin + "quantize " + sh(model) + " plan.json -o q.gguf --imatrix imatrix.gguf --hessian H.gguf");
    run_ok(bin + "eval " + sh(model) + " --text eval.txt --ctx 128 --chunks 2 --save-logits base.logits");
    run_ok(bin + "eval q.gguf --text eval.txt --ctx 128 --chunks 2 --base-logits base.logits --json eval.json");
  }
  const std::string a = d + "/t1/", b = d + "/t2/";
  // JSON compared as a patch from the 1-thread to the 2-thread output: empty when equal.
  auto json_diff = [&](const std::string& f) {
    const std::string d = nlohmann::json::diff(result_json(a + f), result_json(b + f)).dump();
    return d.size() > 2000 ? d.substr(0, 2000) + "..." : d;
  };
  EXPECT_EQ(json_diff("sens.json"), "[]") << "samq analyze: sensitivity.json differs";
  for (const char* f : {"imatrix.gguf", "H.gguf", "q.gguf", "base.logits"})
    EXPECT_TRUE(read_file(a + f) == read_file(b + f)) << f << " differs between 1 and 2 threads";
  EXPECT_EQ(json_diff("eval.json"), "[]") << "samq eval: eval.json differs";
}

}  // namespace
}  // namespace samq
