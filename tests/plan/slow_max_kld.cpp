// Issue 7: `samq plan --max-kld B` promises the smallest file whose KLD stays under B. This test
// holds the promise against a measurement: for B = 0.01 and 0.05 on refcode-32m, the plan from
// the committed analysis (tests/plan/data, made on the first 600000 bytes of calib.txt) is
// quantized with its importance matrix and its mean KLD against the BF16 model is measured by
// `samq eval` on the first chunks of ../shared/data/eval.txt (ctx 512). Nothing here feeds back
// into the planner: the text only measures. SAMQ_MAXKLD_CHUNKS overrides the chunk count (16).
#include <gtest/gtest.h>

#include <filesystem>

#include "common/test_env.h"
#include "plan/measure_helpers.h"
#include "plan/plan.h"

using namespace samq;
using test::run_ok;
using test::sh;

TEST(MaxKld, MeasuredKldStaysUnderTheBound) {
  test::QualityRun q;
  const std::string chunks = test::env_or("SAMQ_MAXKLD_CHUNKS", "16");
  q.eval_on(test::write_eval_text(q.dir), chunks);

  int64_t prev_size = 0;
  for (const char* bound : {"0.05", "0.01"}) {
    const std::string p = q.dir + "/plan-" + bound;
    run_ok(q.bin + "plan " + sh(q.sens) + " --max-kld " + bound + " -o " + p + ".json");
    const plan::Plan pl = plan::read_plan(p + ".json");
    EXPECT_LE(pl.dloss, std::stod(bound));
    EXPECT_GT(pl.file_bytes, prev_size) << "a tighter bound must cost bytes";
    prev_size = pl.file_bytes;
    q.quantize(p + ".json", p + ".gguf");
    const double k = q.kld(p + ".gguf", p + ".eval.json");
    std::printf("[ max-kld ] bound %s: plan %lld bytes, predicted %.5f, measured KLD %.5f (%s chunks)\n", bound,
                (long long)pl.file_bytes, pl.dloss, k, chunks.c_str());
    EXPECT_LE(k, std::stod(bound)) << "bound " << bound;
  }
}
