// Helpers of the model-level quality tests (tests/export/slow_cli_path.cpp,
// tests/export/slow_gptq.cpp): run a samq command line or fail with its output's tail, read an
// eval.json's mean KLD, write the evaluation text (the first 400000 bytes of
// ../shared/data/eval.txt) into a test directory, and QualityRun: the reference model and the
// quantize / eval-against-BF16 steps. No samq output is committed for these tests (issue 15):
// what they quantize with is computed in the test, or is llama.cpp's own reference imatrix.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/atomic_file.h"

namespace samq::test {

inline std::string sh(const std::string& s) { return "'" + s + "'"; }

inline void run_ok(const std::string& cmd) {
  std::string out;
  const int rc = run_command(cmd, &out);
  ASSERT_EQ(rc, 0) << cmd << "\n" << out.substr(out.size() > 4000 ? out.size() - 4000 : 0);
}

inline double kld_of(const std::string& eval_json) {
  return nlohmann::json::parse(read_file(eval_json))["kld"]["mean"].get<double>();
}

inline std::string write_eval_text(const std::string& dir) {
  const std::string p = dir + "/eval.txt";
  write_file_atomic(p, read_file(shared_path("data/eval.txt")).substr(0, 400000));
  return p;
}

// The environment variable's value, or def when unset.
inline std::string env_or(const char* name, const char* def) {
  const char* v = std::getenv(name);
  return v ? v : def;
}

// One quality measurement on refcode-32m in a fresh directory: quantize plans with an importance
// matrix (by default llama.cpp's, ../shared/golden/anchors/refcode-32m-imatrix.gguf: llama-imatrix
// on the first 600000 bytes of calib.txt), then evaluate files by mean KLD against the BF16 model
// on the chunks set by eval_on (ctx 512), with the base logits computed once.
struct QualityRun {
  std::string dir = temp_dir();
  std::string bin = samq_binary() + " -q ";
  std::string model = shared_path("models/refcode-32m");
  std::string imatrix = shared_path("golden/anchors/refcode-32m-imatrix.gguf");
  std::string eval_flags;

  // samq quantize MODEL PLAN -o OUT --imatrix IMATRIX, plus `extra` flags.
  void quantize(const std::string& plan, const std::string& out, const std::string& extra = "") const {
    run_ok(bin + "quantize " + sh(model) + " " + plan + " -o " + out + " --imatrix " + sh(imatrix) + extra);
  }
  // Evaluation on `chunks` chunks of text; saves the BF16 model's logits for kld().
  void eval_on(const std::string& text, const std::string& chunks) {
    eval_flags = " --text " + text + " --ctx 512 --chunks " + chunks;
    run_ok(bin + "eval " + sh(model) + eval_flags + " --save-logits " + dir + "/base.logits");
  }
  // Mean KLD of `gguf` against the BF16 model (its eval.json written to json_out).
  double kld(const std::string& gguf, const std::string& json_out) const {
    run_ok(bin + "eval " + sh(gguf) + eval_flags + " --base-logits " + dir + "/base.logits --json " + json_out);
    return kld_of(json_out);
  }
};

}  // namespace samq::test
