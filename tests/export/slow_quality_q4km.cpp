// Issue 7's quality target at the Q4_K_M size: a samq plan no larger than llama.cpp's
// Q4_K_M+imatrix file (../shared/golden/anchors) must reach a mean KLD against the BF16 model
// of at most 0.60x that file's, on the first chunks of ../shared/data/eval.txt (ctx 512),
// one evaluator (`samq eval`) for both files.
//
// Planner input: tests/plan/data/refcode-32m-sensitivity.json, written by
//   samq analyze ../shared/models/refcode-32m --calib <first 600000 bytes of calib.txt>
//     --tokens 16384 -o refcode-32m-sensitivity.json --imatrix-out refcode-32m-imatrix.gguf
// (committed so this test costs three evaluations, not an analysis; eval.txt is never used
// for planning). samq's file is quantized as `samq run` does it: that analysis's importance
// matrix (the one its predictions assume) and GPTQ rounding with input Hessians collected here by
// `samq hessian` on the same calibration text and token count; llama.cpp's file is the anchor,
// made with llama.cpp's own imatrix.
// SAMQ_QUALITY_CHUNKS overrides the number of evaluation chunks (default 32 of 207).
#include <gtest/gtest.h>

#include <filesystem>

#include "common/test_env.h"
#include "plan/measure_helpers.h"
#include "plan/plan.h"

using namespace samq;
using test::run_ok;
using test::sh;

// History: with importance-weighted rounding alone this measured 0.603x (disabled then); with
// GPTQ 0.472x (32 chunks; helper measurement, 2026-11-27).
TEST(Quality, BeatsLlamaCppQ4KMImatrixByFortyPercent) {
  test::QualityRun q;
  const std::string& dir = q.dir;
  const std::string anchor = test::shared_path("golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf");
  const std::string chunks = test::env_or("SAMQ_QUALITY_CHUNKS", "32");
  const int64_t budget = int64_t(std::filesystem::file_size(anchor));

  test::write_eval_text(dir);
  write_file_atomic(dir + "/calib.txt", read_file(test::shared_path("data/calib.txt")).substr(0, 600000));
  run_ok(q.bin + "hessian " + sh(q.model) + " --calib " + dir + "/calib.txt --tokens 16384 -o " + dir + "/H.gguf");
  run_ok(q.bin + "plan " + sh(q.sens) + " --target-size " + std::to_string(budget) + " -o " + dir + "/plan.json");
  q.quantize(dir + "/plan.json", dir + "/samq.gguf", " --hessian " + dir + "/H.gguf");
  const int64_t size = int64_t(std::filesystem::file_size(dir + "/samq.gguf"));
  EXPECT_LE(size, budget);
  EXPECT_EQ(size, plan::read_plan(dir + "/plan.json").file_bytes);

  q.eval_on(dir + "/eval.txt", chunks);
  const double k_anchor = q.kld(anchor, dir + "/anchor.json"), k_samq = q.kld(dir + "/samq.gguf", dir + "/samq.json");
  std::printf("[ quality ] Q4_K_M size (%lld bytes, samq %lld): KLD llama.cpp %.6f, samq %.6f, ratio %.3f\n",
              (long long)budget, (long long)size, k_anchor, k_samq, k_samq / k_anchor);
  EXPECT_LE(k_samq, 0.60 * k_anchor);
}
