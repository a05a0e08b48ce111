// Layer streaming (analyze/layer_stream.h) through the CLI, on refcode-32m on the CPU:
// - `samq analyze --stream on` gives the in-memory pass's sensitivity.json (every number within
//   1e-6 relative; in fact the same bits) and the same importance matrix;
// - `samq quantize --calib` (Hessians streamed one layer at a time) writes the same tensor bytes as
//   `samq hessian` + `samq quantize --hessian`;
// - with --max-host-memory below what the in-memory pass needs, the pass streams and its peak RSS
//   (getrusage, reported in sensitivity.json) stays under the cap; an impossible cap is refused
//   with the smallest cap that would work.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

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

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Fixture {
  std::string dir = test::temp_dir();
  std::string model = test::shared_path("models/refcode-32m");
  std::string calib = test::shared_path("data/calib.txt");
  std::string samq = test::samq_binary();
  // A CI-sized slice: 8 chunks of 128 tokens.
  std::string calib_args = " --calib " + test::shared_path("data/calib.txt") + " --ctx 128 --tokens 1024";
  int run(const std::string& args, std::string* out) {
    out->clear();
    return test::run_command(samq + " " + args, out);
  }
};

// The in-memory analysis, run once for both tests: its directory.
const std::string& in_memory_run() {
  static const std::string dir = [] {
    Fixture f;
    std::string out;
    const int rc = f.run("analyze " + f.model + f.calib_args + " --stream off -o " + f.dir + "/off.json --imatrix-out " +
                             f.dir + "/off.imatrix.gguf",
                         &out);
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("in-memory pass"), std::string::npos) << out;
    return f.dir;
  }();
  return dir;
}

TEST(LayerStream, AnalyzeEqualsInMemory) {
  Fixture f;
  std::string out;
  const std::string off_dir = in_memory_run();
  ASSERT_EQ(f.run("analyze " + f.model + f.calib_args + " --stream on -o " + f.dir + "/on.json --imatrix-out " +
                      f.dir + "/on.imatrix.gguf",
                  &out),
            0)
      << out;
  EXPECT_NE(out.find("layer-streamed pass"), std::string::npos) << out;
  const json a = read_json(off_dir + "/off.json"), b = read_json(f.dir + "/on.json");
  EXPECT_FALSE(a["calibration"]["streamed"].get<bool>());
  EXPECT_TRUE(b["calibration"]["streamed"].get<bool>());
  EXPECT_EQ(a["calibration"]["mean_loss"], b["calibration"]["mean_loss"]);
  ASSERT_EQ(a["tensors"].size(), b["tensors"].size());
  int64_t compared = 0;
  double worst = 0;
  auto near = [&](double x, double y, const std::string& what) {
    ++compared;
    const double rel = std::abs(x - y) / std::max(std::abs(x), 1e-300);
    worst = std::max(worst, x == y ? 0.0 : rel);
    EXPECT_LE(rel, 1e-6) << what << ": " << x << " vs " << y;
  };
  for (size_t i = 0; i < a["tensors"].size(); ++i) {
    const json &ta = a["tensors"][i], &tb = b["tensors"][i];
    ASSERT_EQ(ta["name"], tb["name"]);
    const std::string name = ta["name"];
    near(ta["grad_norm"], tb["grad_norm"], name + " grad_norm");
    near(ta["fisher_trace"], tb["fisher_trace"], name + " fisher_trace");
    ASSERT_EQ(ta["candidates"].size(), tb["candidates"].size()) << name;
    for (auto it = ta["candidates"].begin(); it != ta["candidates"].end(); ++it) {
      const json& cb = tb["candidates"][it.key()];
      EXPECT_EQ((*it)["bytes"], cb["bytes"]);
      near((*it)["dloss"], cb["dloss"], name + " " + it.key());
      if (it->contains("signals"))
        for (auto s = (*it)["signals"].begin(); s != (*it)["signals"].end(); ++s)
          near(*s, cb["signals"][s.key()], name + " " + it.key() + " " + s.key());
    }
  }
  EXPECT_GT(compared, 2000);
  std::printf("layer stream: %lld numbers compared, worst relative difference %.3g\n", (long long)compared, worst);
  EXPECT_EQ(read_bytes(off_dir + "/off.imatrix.gguf"), read_bytes(f.dir + "/on.imatrix.gguf"));

  // GPTQ with streamed Hessians writes the bytes GPTQ with the Hessian file writes.
  ASSERT_EQ(f.run("plan " + f.dir + "/on.json --target-bpw 4.5 -o " + f.dir + "/plan.json", &out), 0) << out;
  ASSERT_EQ(f.run("hessian " + f.model + f.calib_args + " -o " + f.dir + "/H.gguf", &out), 0) << out;
  ASSERT_EQ(f.run("quantize " + f.model + " " + f.dir + "/plan.json --hessian " + f.dir + "/H.gguf -o " + f.dir +
                      "/file.gguf",
                  &out),
            0)
      << out;
  ASSERT_EQ(f.run("quantize " + f.model + " " + f.dir + "/plan.json" + f.calib_args + " -o " + f.dir + "/stream.gguf",
                  &out),
            0)
      << out;
  EXPECT_NE(out.find("Hessians streamed"), std::string::npos) << out;
  const GgufFile ga = GgufFile::open(f.dir + "/file.gguf"), gb = GgufFile::open(f.dir + "/stream.gguf");
  ASSERT_EQ(ga.tensors().size(), gb.tensors().size());
  int gptq = 0;
  for (size_t i = 0; i < ga.tensors().size(); ++i) {
    const auto &x = ga.tensors()[i], &y = gb.tensors()[i];
    ASSERT_EQ(x.name, y.name);
    ASSERT_EQ(x.type, y.type) << x.name;
    ASSERT_EQ(x.nbytes, y.nbytes) << x.name;
    EXPECT_EQ(0, std::memcmp(x.data, y.data, x.nbytes)) << x.name << " differs";
    gptq += x.type != GgmlType::F32 && x.name.find("blk.") == 0;
  }
  EXPECT_GT(gptq, 40);
}

// GPTQ with streamed Hessians visits the layers in order, each once, though an HF checkpoint
// with more than 10 layers lists blk.10 before blk.2 (file order is kept in the output).
TEST(LayerStream, StreamedGptqComputesEachLayerOnce) {
  Fixture f;
  std::string out;
  ASSERT_EQ(f.run("synth --like tiny-deep -o " + f.dir + "/deep", &out), 0) << out;
  const std::string m = f.dir + "/deep", calib = " --calib " + f.calib + " --ctx 64 --tokens 256";
  ASSERT_EQ(f.run("plan " + m + " --policy preset:Q4_K_M -o " + f.dir + "/plan.json", &out), 0) << out;
  ASSERT_EQ(f.run("hessian " + m + calib + " -o " + f.dir + "/H.gguf", &out), 0) << out;
  ASSERT_EQ(f.run("quantize " + m + " " + f.dir + "/plan.json --hessian " + f.dir + "/H.gguf -o " + f.dir + "/file.gguf",
                  &out),
            0)
      << out;
  ASSERT_EQ(f.run("quantize " + m + " " + f.dir + "/plan.json" + calib + " -o " + f.dir + "/stream.gguf", &out), 0)
      << out;
  // 12 layers + the output head's input: 13 passes (without the fix: 12 + restarts)
  EXPECT_NE(out.find(", 13 layer passes"), std::string::npos) << out;
  EXPECT_EQ(read_bytes(f.dir + "/file.gguf").size(), read_bytes(f.dir + "/stream.gguf").size());
  const GgufFile ga = GgufFile::open(f.dir + "/file.gguf"), gb = GgufFile::open(f.dir + "/stream.gguf");
  ASSERT_EQ(ga.tensors().size(), gb.tensors().size());
  bool blk10_before_blk2 = false;
  for (size_t i = 0; i < ga.tensors().size(); ++i) {
    const auto &x = ga.tensors()[i], &y = gb.tensors()[i];
    ASSERT_EQ(x.name, y.name);
    ASSERT_EQ(x.type, y.type) << x.name;
    EXPECT_EQ(0, std::memcmp(x.data, y.data, x.nbytes)) << x.name << " differs";
    if (x.name.rfind("blk.2.", 0) == 0 && !blk10_before_blk2)
      for (size_t k = 0; k < i; ++k) blk10_before_blk2 |= ga.tensors()[k].name.rfind("blk.10.", 0) == 0;
  }
  EXPECT_TRUE(blk10_before_blk2) << "the fixture should list blk.10 before blk.2";
}

// A Llama-3 model with rope scaling factors (rope_freqs.weight, a tensor no gradient reaches):
// `samq synth --like tiny`, streamed = in-memory.
TEST(LayerStream, MoeModelSameStreamedAndInMemory) {
  // refmoe-31m (qwen3moe): per-expert statistics, routing counts and the 3-D imatrix entries
  // come out of the layer-streamed pass bit for bit as from the in-memory one.
  Fixture f;
  std::string out;
  const std::string args = "analyze " + test::shared_path("models/refmoe-31m") + " --calib " + f.calib +
                           " --ctx 64 --tokens 256";
  ASSERT_EQ(f.run(args + " --stream off -o " + f.dir + "/off.json", &out), 0) << out;
  ASSERT_EQ(f.run(args + " --stream on -o " + f.dir + "/on.json", &out), 0) << out;
  const json a = read_json(f.dir + "/off.json"), b = read_json(f.dir + "/on.json");
  int exps = 0;
  for (const auto& t : a["tensors"]) exps += t["name"].get<std::string>().find("_exps") != std::string::npos;
  EXPECT_EQ(exps, 18);
  EXPECT_EQ(a["tensors"], b["tensors"]);
  EXPECT_EQ(read_bytes(f.dir + "/off.imatrix.gguf"), read_bytes(f.dir + "/on.imatrix.gguf"));
  // GPTQ of every routed expert matrix with its own Hessian: streamed == from the file.
  const std::string model = test::shared_path("models/refmoe-31m");
  const std::string calib = " --calib " + f.calib + " --ctx 64 --tokens 256";
  ASSERT_EQ(f.run("plan " + f.dir + "/on.json --target-bpw 4.5 -o " + f.dir + "/plan.json", &out), 0) << out;
  ASSERT_EQ(f.run("hessian " + model + calib + " -o " + f.dir + "/H.gguf", &out), 0) << out;
  ASSERT_EQ(f.run("quantize " + model + " " + f.dir + "/plan.json --hessian " + f.dir + "/H.gguf -o " + f.dir + "/file.gguf",
                  &out),
            0)
      << out;
  const GgufFile hf = GgufFile::open(f.dir + "/H.gguf");
  EXPECT_NE(hf.find_tensor("blk.0.ffn_down_exps.weight.0.hessian"), nullptr);
  ASSERT_EQ(f.run("quantize " + model + " " + f.dir + "/plan.json" + calib + " -o " + f.dir + "/stream.gguf", &out), 0)
      << out;
  const GgufFile ga = GgufFile::open(f.dir + "/file.gguf"), gb = GgufFile::open(f.dir + "/stream.gguf");
  ASSERT_EQ(ga.tensors().size(), gb.tensors().size());
  for (size_t i = 0; i < ga.tensors().size(); ++i) {
    const auto &x = ga.tensors()[i], &y = gb.tensors()[i];
    ASSERT_EQ(x.name, y.name);
    ASSERT_EQ(x.nbytes, y.nbytes) << x.name;
    EXPECT_EQ(0, std::memcmp(x.data, y.data, x.nbytes)) << x.name << " differs";
  }
}

TEST(LayerStream, RopeFreqsModel) {
  Fixture f;
  std::string out;
  ASSERT_EQ(f.run("synth --like tiny -o " + f.dir + "/tiny", &out), 0) << out;
  const std::string args = "analyze " + f.dir + "/tiny --calib " + f.calib + " --ctx 64 --tokens 256";
  ASSERT_EQ(f.run(args + " --stream off -o " + f.dir + "/off.json", &out), 0) << out;
  ASSERT_EQ(f.run(args + " --stream on -o " + f.dir + "/on.json", &out), 0) << out;
  const json a = read_json(f.dir + "/off.json"), b = read_json(f.dir + "/on.json");
  bool rope = false;
  for (const auto& t : a["tensors"]) rope |= t["name"] == "rope_freqs.weight";
  EXPECT_TRUE(rope) << "the tiny llama3 shape should carry rope_freqs.weight";
  EXPECT_EQ(a["tensors"], b["tensors"]);
}

TEST(LayerStream, HostMemoryCap) {
  Fixture f;
  std::string out;
  // What the in-memory pass needs (its own estimate, printed in its plan) and uses (peak RSS).
  const json off = read_json(in_memory_run() + "/off.json");
  const int64_t in_memory_rss = off["memory"]["peak_host_rss_bytes"];
  const int64_t in_memory_est = off["memory"]["estimated_host_bytes"];
  // A cap below both: auto mode must stream, and stay under it.
  const int64_t cap = std::min(in_memory_rss, in_memory_est) * 3 / 4;
  ASSERT_EQ(f.run("analyze " + f.model + f.calib_args + " --max-host-memory " + std::to_string(cap) + " -o " + f.dir +
                      "/capped.json",
                  &out),
            0)
      << out;
  EXPECT_NE(out.find("layer-streamed pass"), std::string::npos) << out;
  const json capped = read_json(f.dir + "/capped.json");
  const int64_t rss = capped["memory"]["peak_host_rss_bytes"];
  std::printf("in-memory pass: peak RSS %lld (estimate %lld); streamed under a cap of %lld: peak RSS %lld\n",
              (long long)in_memory_rss, (long long)in_memory_est, (long long)cap, (long long)rss);
  EXPECT_LT(rss, cap);
  EXPECT_TRUE(capped["calibration"]["streamed"].get<bool>());
  // A cap nothing fits: refused before any work, naming the option and the smallest cap.
  EXPECT_NE(f.run("analyze " + f.model + f.calib_args + " --max-host-memory 50MB -o " + f.dir + "/no.json", &out), 0);
  EXPECT_NE(out.find("--max-host-memory"), std::string::npos) << out;
  EXPECT_NE(out.find("cannot be met"), std::string::npos) << out;
  EXPECT_NE(out.find("--scratch"), std::string::npos) << out;
}

}  // namespace
}  // namespace samq
