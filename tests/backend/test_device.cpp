// Device selection (backend/device.h): the CPU side, which runs everywhere (CI has no GPU).
#include <gtest/gtest.h>

#include "backend/device.h"
#include "common/error_text.h"
#include "common/test_env.h"
#ifdef SAMQ_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace samq {
namespace {

int visible_gpus() {
#ifdef SAMQ_HAVE_CUDA
  return cuda_device_count();
#else
  return 0;
#endif
}

TEST(Device, CpuSpecGivesTheCpuTables) {
  const Backend be = select_backend("cpu");
  EXPECT_EQ(be.ops, &cpu_ops());
  EXPECT_EQ(be.grad, &cpu_backward_ops());
  EXPECT_EQ(be.device, "cpu");
  const Backend c = cpu_backend();
  EXPECT_EQ(c.ops, &cpu_ops());
  EXPECT_EQ(c.grad, &cpu_backward_ops());
  EXPECT_EQ(c.device, "cpu");
}

TEST(Device, CudaBuiltMatchesTheBuild) {
#ifdef SAMQ_HAVE_CUDA
  EXPECT_TRUE(cuda_built());
#else
  EXPECT_FALSE(cuda_built());
#endif
}

TEST(Device, UnknownSpecsNameTheSpec) {
  for (const char* spec : {"bogus", "gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1x", "CPU", "cpu:0"}) {
    std::string quoted = "'";
    quoted.append(spec).append("'");
    SAMQ_EXPECT_MESSAGE_HAS(test::error_text([&] { select_backend(spec); }), quoted.c_str(), "cpu, cuda, cuda:N");
  }
}

TEST(Device, AbsentCudaDeviceNamesTheSpec) {
  const std::string msg = test::error_text([] { select_backend("cuda:99"); });
  SAMQ_EXPECT_MESSAGE_HAS(msg, "--device cuda:99");
  if (!cuda_built()) SAMQ_EXPECT_MESSAGE_HAS(msg, "built without CUDA", "SAMQ_CUDA=ON");
}

TEST(Device, CudaWithoutCudaBuildOrGpuFails) {
  if (cuda_built() && visible_gpus() > 0) GTEST_SKIP() << "a GPU is visible: tests/cuda covers 'cuda'";
  SAMQ_EXPECT_MESSAGE_HAS(test::error_text([] { select_backend("cuda"); }), "--device cuda:");
  SAMQ_EXPECT_MESSAGE_HAS(test::error_text([] { select_backend("cuda:0"); }), "--device cuda:0:");
}

TEST(Device, AutoIsCpuWithoutGpuElseCuda0) {
  for (const char* spec : {"", "auto"}) {
    const Backend be = select_backend(spec);
    ASSERT_NE(be.ops, nullptr);
    ASSERT_NE(be.grad, nullptr);
    if (visible_gpus() == 0) {
      EXPECT_EQ(be.ops, &cpu_ops()) << "spec '" << spec << "'";
      EXPECT_EQ(be.device, "cpu");
    } else {
      EXPECT_EQ(be.device.rfind("cuda:0", 0), 0u) << be.device;
    }
  }
}

// The CLI side (tools/device_option.h): every command that runs the model documents --device
// with its default, and a bad spec fails naming it.
TEST(DeviceCli, EveryModelCommandDocumentsDevice) {
  for (const char* cmd : {"analyze", "hessian", "quantize", "eval", "generate", "run"}) {
    std::string out;
    ASSERT_EQ(test::run_command(test::samq_binary() + " " + cmd + " --help", &out), 0) << cmd << ": " << out;
    SAMQ_EXPECT_MESSAGE_HAS(out, "--device", "cpu, cuda (= cuda:0) or cuda:N", "(default: ");
  }
}

TEST(DeviceCli, BadSpecFailsNamingIt) {
  std::string out;
  const std::string cmd = test::samq_binary() + " eval no-such-model.gguf --text no-such-text --device bogus";
  EXPECT_EQ(test::run_command(cmd, &out), 1) << out;
  SAMQ_EXPECT_MESSAGE_HAS(out, "samq eval: error: --device: unknown device 'bogus'");
}

}  // namespace
}  // namespace samq
