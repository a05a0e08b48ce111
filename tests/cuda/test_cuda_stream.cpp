// Layer streaming on the GPU (analyze/layer_stream.h), through the CLI on refcode-32m:
// `samq analyze --device cuda --stream on` equals the in-memory GPU pass (every number within
// 1e-6 relative; the ops are deterministic, so in fact the same bits), with the predictions made
// on the worker thread; `samq quantize --calib --device cuda` (Hessians streamed) writes the
// tensor bytes of `samq hessian --device cuda` + `samq quantize --hessian --device cuda`; and the
// device memory cap is honoured and reported.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "backend/cuda/cuda_backend.h"
#include "common/test_env.h"
#include "format/gguf.h"

namespace samq {
namespace {

using nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return json::parse(ss.str());
}

TEST(CudaLayerStream, AnalyzeAndGptqEqualInMemory) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  const std::string dir = test::temp_dir(), samq = test::samq_binary();
  const std::string model = test::shared_path("models/refcode-32m");
  const std::string calib = " --calib " + test::shared_path("data/calib.txt") + " --ctx 512 --tokens 8192 --device cuda";
  std::string out;
  ASSERT_EQ(test::run_command(samq + " analyze " + model + calib + " --stream off -o " + dir + "/off.json", &out), 0) << out;
  ASSERT_EQ(test::run_command(samq + " analyze " + model + calib + " --stream on --max-gpu-memory 8GB -o " + dir +
                                  "/on.json",
                              &out),
            0)
      << out;
  EXPECT_NE(out.find("layer-streamed pass"), std::string::npos) << out;
  const json a = read_json(dir + "/off.json"), b = read_json(dir + "/on.json");
  ASSERT_EQ(a["tensors"].size(), b["tensors"].size());
  int64_t n = 0;
  for (size_t i = 0; i < a["tensors"].size(); ++i) {
    const json &ta = a["tensors"][i], &tb = b["tensors"][i];
    ASSERT_EQ(ta["name"], tb["name"]);
    for (auto it = ta["candidates"].begin(); it != ta["candidates"].end(); ++it) {
      const double x = (*it)["dloss"], y = tb["candidates"][it.key()]["dloss"];
      EXPECT_LE(std::abs(x - y), 1e-6 * std::abs(x)) << ta["name"] << " " << it.key();
      ++n;
    }
  }
  EXPECT_GT(n, 400);
  const int64_t peak = b["memory"]["peak_device_bytes"];
  EXPECT_GT(peak, 0);
  EXPECT_LT(peak, int64_t(8e9));
  std::printf("streamed analyze on the GPU: %lld candidates equal; peak device memory %lld bytes (in memory: %lld)\n",
              (long long)n, (long long)peak, (long long)a["memory"]["peak_device_bytes"].get<int64_t>());

  ASSERT_EQ(test::run_command(samq + " plan " + dir + "/on.json --target-bpw 4.5 -o " + dir + "/plan.json", &out), 0) << out;
  ASSERT_EQ(test::run_command(samq + " hessian " + model + calib + " -o " + dir + "/H.gguf", &out), 0) << out;
  ASSERT_EQ(test::run_command(samq + " quantize " + model + " " + dir + "/plan.json --device cuda --hessian " + dir +
                                  "/H.gguf -o " + dir + "/file.gguf",
                              &out),
            0)
      << out;
  ASSERT_EQ(test::run_command(samq + " quantize " + model + " " + dir + "/plan.json" + calib + " -o " + dir +
                                  "/stream.gguf",
                              &out),
            0)
      << out;
  const GgufFile ga = GgufFile::open(dir + "/file.gguf"), gb = GgufFile::open(dir + "/stream.gguf");
  ASSERT_EQ(ga.tensors().size(), gb.tensors().size());
  for (size_t i = 0; i < ga.tensors().size(); ++i) {
    const auto &x = ga.tensors()[i], &y = gb.tensors()[i];
    ASSERT_EQ(x.nbytes, y.nbytes) << x.name;
    EXPECT_EQ(0, std::memcmp(x.data, y.data, x.nbytes)) << x.name << " differs";
  }
}

}  // namespace
}  // namespace samq
