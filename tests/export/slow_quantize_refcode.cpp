// refcode-32m (HF dir, BF16) through `samq plan --policy preset:*` and `samq quantize
// --imatrix` with llama.cpp's importance matrix, compared with llama.cpp's own files in
// ../shared/golden/anchors: same type for every tensor, and the tensor bytes themselves
// (llama-quantize's output is the oracle; samq's quantizers aim at byte identity). The file
// size equals the plan's prediction.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>

#include "common/test_env.h"
#include "format/gguf.h"
#include "plan/plan.h"

using namespace samq;

namespace {
void check_preset(const std::string& preset, const std::string& anchor) {
  const std::string dir = test::temp_dir();
  const std::string model = test::shared_path("models/refcode-32m");
  std::string out;
  ASSERT_EQ(test::run_command(test::samq_binary() + " -q plan " + model + " --policy preset:" + preset + " -o " + dir +
                                  "/plan.json",
                              &out),
            0)
      << out;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(test::run_command(test::samq_binary() + " -q quantize " + model + " " + dir + "/plan.json -o " + dir +
                                  "/out.gguf --imatrix " + test::shared_path("golden/anchors/refcode-32m-imatrix.gguf"),
                              &out),
            0)
      << out;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const plan::Plan p = plan::read_plan(dir + "/plan.json");
  const GgufFile ours = GgufFile::open(dir + "/out.gguf");
  const GgufFile ref = GgufFile::open(test::shared_path("golden/anchors/" + anchor));
  EXPECT_EQ(int64_t(ours.file_size()), p.file_bytes);
  ASSERT_EQ(ours.tensors().size(), ref.tensors().size());
  int identical = 0;
  for (const auto& t : ours.tensors()) {
    const GgufTensorInfo& r = ref.tensor(t.name);
    EXPECT_EQ(ggml_type_name(t.type), ggml_type_name(r.type)) << t.name;
    if (t.type == r.type && t.nbytes == r.nbytes && std::memcmp(t.data, r.data, t.nbytes) == 0) ++identical;
  }
  // Same tensor data bytes as llama.cpp's file (sizes of the data sections equal).
  EXPECT_EQ(ours.file_size() - ours.data_offset(), ref.file_size() - ref.data_offset());
  std::printf("[ %s ] %d of %zu tensors byte-identical to llama.cpp's; samq quantize %.2f s\n", preset.c_str(),
              identical, ours.tensors().size(), secs);
  EXPECT_EQ(identical, int(ours.tensors().size()));
}
}  // namespace

TEST(QuantizeRefcode, Q4KMImatrixMatchesLlamaCpp) { check_preset("Q4_K_M", "refcode-32m-Q4_K_M-imatrix.gguf"); }
TEST(QuantizeRefcode, Q3KMImatrixMatchesLlamaCpp) { check_preset("Q3_K_M", "refcode-32m-Q3_K_M-imatrix.gguf"); }
