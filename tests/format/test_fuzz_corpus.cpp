// Replays the committed fuzz regression corpus (tests/fuzz/corpus/) through the readers on
// every CI run, without clang: each input must either parse or throw samq::Error (a crash or
// another exception type fails). The libFuzzer targets in tests/fuzz/ explore further.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "format/gguf.h"
#include "format/hparams.h"
#include "format/safetensors.h"

using namespace samq;
namespace fs = std::filesystem;

namespace {
std::vector<std::string> corpus(const char* target) {
  std::vector<std::string> out;
  const fs::path d = samq::test::source_path(std::string("tests/fuzz/corpus/") + target);
  for (const auto& e : fs::directory_iterator(d)) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Runs fn; returns "ok", "error: ..." (samq::Error), or fails the test on anything else.
template <typename F>
std::string outcome(const std::string& file, F fn) {
  try {
    fn();
    return "ok";
  } catch (const Error& e) {
    return std::string("error: ") + e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << file << ": escaped a non-samq exception: " << e.what();
    return "bad";
  }
}
}  // namespace

TEST(FuzzCorpus, Gguf) {
  const auto files = corpus("gguf");
  ASSERT_FALSE(files.empty());
  for (const auto& p : files) {
    const std::string r = outcome(p, [&] {
      GgufFile f = GgufFile::open(p);
      for (const auto& v : f.kv()) (void)v.to_string();
      try {
        hparams_from_gguf(f);
      } catch (const Error&) {
      }
    });
    EXPECT_TRUE(r == "ok" || r.find(p) != std::string::npos) << p << ": error does not name the file: " << r;
  }
}

TEST(FuzzCorpus, Safetensors) {
  const auto files = corpus("safetensors");
  ASSERT_FALSE(files.empty());
  for (const auto& p : files) {
    const std::string r = outcome(p, [&] {
      std::string s = read_file(p);
      auto ts = parse_safetensors(reinterpret_cast<const uint8_t*>(s.data()), s.size(), p);
      for (const auto& t : ts)
        if (t.n_elements() < 1 << 20) {
          std::vector<float> out(size_t(t.n_elements()));
          to_f32(t, out.data());
        }
    });
    EXPECT_TRUE(r == "ok" || r.find(p) != std::string::npos) << p << ": " << r;
  }
}

TEST(FuzzCorpus, Config) {
  const auto files = corpus("config");
  ASSERT_FALSE(files.empty());
  for (const auto& p : files) {
    const std::string r = outcome(p, [&] { hparams_from_hf_config(p); });
    EXPECT_TRUE(r == "ok" || r.find(p) != std::string::npos) << p << ": " << r;
  }
}
