// samq's forward against llama.cpp (node-llama-cpp, recorded by helper C's interop test in
// tests/data/llamacpp/greedy-fixture.json): same greedy continuation (a divergence is allowed
// only right after a position where llama.cpp's top-2 log-probs are close), for the BF16 model
// and the Q4_K_M anchor; same top-1 and top-5 log-probs are printed.
//
// Measured (teacher-forced on llama.cpp's continuation, 3 prompts x 16 steps): BF16 48/48
// same top-1, max |Δ log p| 0.04; Q4_K_M 47/48, max |Δ log p| 0.29, and one greedy divergence
// at a position whose top-2 gap is 0.0126. Those rates had bounds set to what samq reached
// (0.99 and 0.97); 48 positions cannot hold a bound relative to llama.cpp's own agreement (one
// position is 2 points), so the agreement bar lives in the teacher-forced test below (3072
// positions, samq held to llama.cpp's prefill-vs-decode agreement less 0.5 points).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <nlohmann/json.hpp>

#include "backend/ops.h"
#include "common/test_env.h"
#include "core/atomic_file.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/sampler.h"

using namespace samq;

namespace {

// ---- which llama.cpp CPU build made the fixture ----------------------------------------------
// llama.cpp's log-probs depend on the CPU backend variant node-llama-cpp loaded (ggml picks the
// best libggml-cpu-<variant>.so the CPU supports): its AVX-512/AMX kernels sum in another order
// than samq's AVX2 ones and than llama.cpp's own AVX2 build, which moves log-probs by a few 1e-2
// and flips near-tie top-1s. The bounds below were measured against the build that recorded the
// fixture, so they are checked only on a CPU that has every feature of that build (anywhere
// else the comparison is skipped, naming the missing features). The fixture's
// llama_cpp.cpu_features lists them as /proc/cpuinfo flag names (written by
// tests/node/convert_interop.test.mjs); a fixture without that record was made with
// node-llama-cpp 3.22.1's sapphirerapids build (AVX-512 + AMX), assumed here; keep in sync with
// SAPPHIRERAPIDS_CPU_FEATURES in tests/node/interop-helpers.mjs.
const std::vector<std::string> kSapphireRapidsFeatures = {
    "sse4_2", "avx",      "f16c",     "fma",        "avx2",        "bmi2",        "avx512f",  "avx512cd",
    "avx512vl", "avx512dq", "avx512bw", "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"};

// Whether this CPU has the feature named by its /proc/cpuinfo flag (unknown names: false).
bool cpu_has(const std::string& f) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (f == "pni") return __builtin_cpu_supports("sse3");
  if (f == "ssse3") return __builtin_cpu_supports("ssse3");
  if (f == "sse4_2") return __builtin_cpu_supports("sse4.2");
  if (f == "avx") return __builtin_cpu_supports("avx");
  if (f == "f16c") return __builtin_cpu_supports("f16c");
  if (f == "fma") return __builtin_cpu_supports("fma");
  if (f == "avx2") return __builtin_cpu_supports("avx2");
  if (f == "bmi2") return __builtin_cpu_supports("bmi2");
  if (f == "avx512f") return __builtin_cpu_supports("avx512f");
  if (f == "avx512cd") return __builtin_cpu_supports("avx512cd");
  if (f == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (f == "avx512dq") return __builtin_cpu_supports("avx512dq");
  if (f == "avx512bw") return __builtin_cpu_supports("avx512bw");
  if (f == "avx512vbmi") return __builtin_cpu_supports("avx512vbmi");
  if (f == "avx512_vnni") return __builtin_cpu_supports("avx512vnni");
  if (f == "avx512_bf16") return __builtin_cpu_supports("avx512bf16");
  // AMX and AVX-VNNI: not known to every compiler's __builtin_cpu_supports (clang 14), so CPUID
  // leaf 7 directly (the bits ggml-cpu/arch/x86/cpu-feats.cpp reads).
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (f == "amx_tile" || f == "amx_int8" || f == "amx_bf16") {
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return (d >> (f == "amx_tile" ? 24 : f == "amx_int8" ? 25 : 22)) & 1;
  }
  if (f == "avx_vnni") {
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
    return (a >> 4) & 1;
  }
#endif
  return false;
}

// The fixture's llama.cpp build features: llama_cpp.cpu_features, else the sapphirerapids build.
std::vector<std::string> fixture_cpu_features(const nlohmann::json& fx) {
  if (fx.contains("llama_cpp") && fx["llama_cpp"].contains("cpu_features"))
    return fx["llama_cpp"]["cpu_features"].get<std::vector<std::string>>();
  return kSapphireRapidsFeatures;
}

// The features of `required` that `has` denies, comma-separated ("" when none is missing).
std::string missing_cpu_features(const std::vector<std::string>& required,
                                 const std::function<bool(const std::string&)>& has = cpu_has) {
  std::string out;
  for (const auto& f : required)
    if (!has(f)) out += (out.empty() ? "" : ", ") + f;
  return out;
}

void check_model(const std::string& fixture_name, const std::string& model_path, double max_gap) {
  const auto fx = nlohmann::json::parse(read_file(test::source_path("tests/data/llamacpp/greedy-fixture.json")));
  ASSERT_TRUE(fx["models"].contains(fixture_name)) << "greedy-fixture.json has no " << fixture_name;
  const std::string missing = missing_cpu_features(fixture_cpu_features(fx));
  if (!missing.empty())
    GTEST_SKIP() << "this CPU lacks " << missing << " of the llama.cpp CPU build that recorded "
                 << "greedy-fixture.json" << (fx["llama_cpp"].contains("cpu_features") ? "" : " (no record in it: assumed node-llama-cpp's sapphirerapids build)")
                 << "; its log-probs and near-tie top-1s are not reproducible here";
  auto m = Model::load(model_path);
  const int64_t V = m->hparams.n_vocab;
  int positions = 0, same_top = 0;
  double max_lp_diff = 0;
  for (const auto& c : fx["models"][fixture_name]["cases"]) {
    const auto prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    const auto want = c["generated_ids"].get<std::vector<int32_t>>();
    KvCache cache(*m, int64_t(prompt.size() + want.size()) + 1);
    Batch b;
    b.add(&cache, prompt);
    bool diverged = false;
    for (size_t i = 0; i < want.size(); ++i) {
      forward(*m, cpu_ops(), b);
      const std::vector<float>& l = b.seqs[0].logits;
      const auto& step = c["steps"][i];
      double mx = -1e30, s = 0;
      for (float x : l) mx = std::max(mx, double(x));
      for (float x : l) s += std::exp(x - mx);
      const double lse = mx + std::log(s);
      for (const auto& e : step["top5"]) {
        const int32_t id = e[0];
        max_lp_diff = std::max(max_lp_diff, std::fabs((l[id] - lse) - e[1].get<double>()));
      }
      const int32_t mine = argmax(l.data(), V);
      ++positions;
      same_top += mine == step["token"].get<int32_t>();
      if (!diverged && mine != want[i]) {
        const double gap = step["top5"][0][1].get<double>() - step["top5"][1][1].get<double>();
        EXPECT_LT(gap, max_gap) << fixture_name << " '" << c["prompt"] << "' diverges at step " << i;
        diverged = true;
      }
      b.seqs[0].tokens = {want[i]};  // teacher-force llama.cpp's continuation
    }
  }
  std::printf("%s: %d positions, same top-1 %d, max |Δ log p| of llama.cpp's top-5 %.2e\n",
              fixture_name.c_str(), positions, same_top, max_lp_diff);
}

}  // namespace

TEST(LlamaCppFixture, CpuFeatureDetection) {
  // The skip message's list: the missing features, in the fixture's order, comma-separated.
  const auto none = [](const std::string&) { return false; };
  const auto all = [](const std::string&) { return true; };
  const auto avx2_only = [](const std::string& f) { return f.rfind("avx512", 0) != 0 && f.rfind("amx", 0) != 0; };
  EXPECT_EQ(missing_cpu_features({"avx2", "avx512f"}, none), "avx2, avx512f");
  EXPECT_EQ(missing_cpu_features(kSapphireRapidsFeatures, all), "");
  EXPECT_EQ(missing_cpu_features(kSapphireRapidsFeatures, avx2_only),
            "avx512f, avx512cd, avx512vl, avx512dq, avx512bw, avx512vbmi, avx512_vnni, avx512_bf16, amx_tile, amx_int8");
  // A fixture without a record of its build means sapphirerapids; a recorded list wins.
  EXPECT_EQ(fixture_cpu_features(nlohmann::json::parse(R"({"llama_cpp": {"gpu": false}})")), kSapphireRapidsFeatures);
  EXPECT_EQ(fixture_cpu_features(nlohmann::json::parse(R"({"llama_cpp": {"cpu_features": ["avx2", "fma"]}})")),
            (std::vector<std::string>{"avx2", "fma"}));
  EXPECT_FALSE(cpu_has("no_such_feature"));
  // cpu_has agrees with the kernel's flags on every name it knows.
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line) && line.rfind("flags", 0) != 0) {
  }
  if (line.empty()) return;  // not Linux/x86: nothing to compare with
  std::istringstream flags(line.substr(line.find(':') + 1));
  std::vector<std::string> have{std::istream_iterator<std::string>(flags), std::istream_iterator<std::string>()};
  const auto listed = [&](const std::string& f) { return std::find(have.begin(), have.end(), f) != have.end(); };
  for (const char* f : {"pni", "ssse3", "sse4_2", "avx", "f16c", "fma", "avx2", "bmi2", "avx_vnni", "avx512f", "avx512cd",
                        "avx512vl", "avx512dq", "avx512bw", "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile",
                        "amx_int8", "amx_bf16"})
    EXPECT_EQ(cpu_has(f), listed(f)) << f;
  std::printf("features of the sapphirerapids build this CPU lacks: %s\n",
              missing_cpu_features(kSapphireRapidsFeatures).empty() ? "nothing" : missing_cpu_features(kSapphireRapidsFeatures).c_str());
}

TEST(LlamaCppFixture, Bf16Model) {
  // The HF directory holds exactly the tensors of the BF16 GGUF (helper C's converter is
  // byte-identical to llama.cpp's), and samq runs it with the same float32 math.
  check_model("refcode-32m-bf16", test::shared_path("models/refcode-32m"), 1e-2);
}

TEST(LlamaCppFixture, Q4KMAnchor) {
  check_model("refcode-32m-Q4_K_M-imatrix", test::shared_path("golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf"), 2e-2);
}

// ---- teacher-forced fixture ----------------------------------------------------------------
// samq's forward against llama.cpp, teacher-forced at every position of 6 texts x 512 tokens of
// calib.txt (tests/data/llamacpp/teacher-fixture.json, recorded by tests/node/record_llamacpp_fixture.mjs
// --alt-flash on (6 texts x 512 tokens, its defaults) with node-llama-cpp 3.22.1 on CI's CPU kind, an AMD EPYC whose
// llama.cpp build is the AVX2 one (llama_cpp.cpu_features): flash attention off, F16 K/V, 2
// threads, batch 512; prefill_alt = the same with flash attention on), for the BF16 model and the
// Q4_K_M anchor, in both of samq's modes: prefill (the whole text in one forward) and decode (one
// token per forward, the KV cache growing), plus the fixture's greedy continuations.
//
// The bar is llama.cpp's agreement with itself, computed in the same test from the same fixture:
// its prefill against its own token-by-token decode. At this fixture (3072 positions): BF16
// 99.77 % same top-1, Q4_K_M 98.73 % (flash attention on vs off: 99.87 %, 98.40 %); samq reaches
// BF16 99.84 % prefill / 99.74 % decode, Q4_K_M 98.54 % / 98.80 %. The earlier 4 x 256 fixture
// (1024 positions) was too small for a 0.5-point margin: one position is 0.1 point, and the
// sampling error of each figure about 0.4 point.
//
// What limits the agreement (measured, helper M, session 2): not a formula difference but
// rounding noise, amplified by the model. Moving half of the residual-stream values entering
// layer 1 by one float ulp changes samq's own top-1 at 1.2 % of the positions of the Q4_K_M model
// (0.4 % for BF16): every matmul input is rounded to Q8_K (K-quant weights) or bf16, and
// q/k/v/probabilities to f16, so a one-ulp difference flips roundings that the next layers amplify.
// Re-record: cd tests/node && node record_llamacpp_fixture.mjs --alt-flash on.
// Set SAMQ_FIXTURE_VERBOSE=1 to print the positions that differ most.

namespace teacher {

const nlohmann::json& fixture() {
  static const nlohmann::json fx = [] {
    const char* p = std::getenv("SAMQ_TEACHER_FIXTURE");
    return nlohmann::json::parse(
        read_file(p ? std::string(p) : test::source_path("tests/data/llamacpp/teacher-fixture.json")));
  }();
  return fx;
}

double log_sum_exp(const float* l, int64_t V) {
  double mx = -1e30, s = 0;
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, double(l[i]));
  for (int64_t i = 0; i < V; ++i) s += std::exp(l[i] - mx);
  return mx + std::log(s);
}

struct Agreement {
  int positions = 0, same_top = 0, near_tie_misses = 0;
  double max_lp = 0, sum_lp = 0;
  int64_t n_lp = 0;
  struct Worst {
    double d;
    int text, pos;
  };
  std::vector<Worst> worst;
  // One position: samq's logits row against llama.cpp's top-5 [[id, log p], ...].
  void add(const float* l, int64_t V, const nlohmann::json& top, int text, int pos) {
    const double lse = log_sum_exp(l, V);
    double d_pos = 0;
    for (const auto& e : top) {
      const double d = std::fabs((l[e[0].get<int32_t>()] - lse) - e[1].get<double>());
      d_pos = std::max(d_pos, d);
      sum_lp += d;
      ++n_lp;
    }
    max_lp = std::max(max_lp, d_pos);
    worst.push_back({d_pos, text, pos});
    ++positions;
    if (argmax(l, V) == top[0][0].get<int32_t>()) {
      ++same_top;
    } else if (top.size() > 1 && top[0][1].get<double>() - top[1][1].get<double>() < 1e-2) {
      ++near_tie_misses;
    }
  }
  double same_frac() const { return positions ? double(same_top) / positions : 0; }
  void print(const std::string& what) {
    std::printf("%-40s %4d positions, same top-1 %4d (%.2f%%; %d misses at llama.cpp top-2 gap < 1e-2), "
                "|Δ log p| of llama.cpp's top-5: max %.3f mean %.4f\n",
                what.c_str(), positions, same_top, 100.0 * same_frac(), near_tie_misses, max_lp,
                n_lp ? sum_lp / double(n_lp) : 0.0);
    if (std::getenv("SAMQ_FIXTURE_VERBOSE")) {
      std::sort(worst.begin(), worst.end(), [](const Worst& a, const Worst& b) { return a.d > b.d; });
      for (size_t i = 0; i < worst.size() && i < 8; ++i)
        std::printf("    text %d pos %d: max |Δ log p| %.4f\n", worst[i].text, worst[i].pos, worst[i].d);
    }
  }
};

// samq prefill: all ids of each text in one forward, compared with llama.cpp's rows of `key`
// ("prefill" or "decode").
Agreement prefill_agreement(const Model& m, const nlohmann::json& texts, const char* key) {
  Agreement a;
  const int64_t V = m.hparams.n_vocab;
  for (size_t ti = 0; ti < texts.size(); ++ti) {
    const auto ids = texts[ti]["ids"].get<std::vector<int32_t>>();
    const std::vector<float> logits = forward_logits(m, cpu_ops(), ids);
    for (size_t i = 0; i < ids.size(); ++i) a.add(&logits[i * V], V, texts[ti][key][i], int(ti), int(i));
  }
  return a;
}

// samq decode: one token per forward over a growing KV cache; the texts run as independent
// sequences of one batch (each row's numerics do not depend on the others).
Agreement decode_agreement(const Model& m, const nlohmann::json& texts, const char* key) {
  Agreement a;
  const int64_t V = m.hparams.n_vocab;
  std::vector<std::vector<int32_t>> ids;
  for (const auto& t : texts) ids.push_back(t["ids"].get<std::vector<int32_t>>());
  std::vector<KvCache> caches;
  for (const auto& v : ids) caches.emplace_back(m, int64_t(v.size()));
  for (size_t i = 0;; ++i) {
    Batch b;
    std::vector<size_t> which;
    for (size_t ti = 0; ti < ids.size(); ++ti)
      if (i < ids[ti].size()) {
        b.add(&caches[ti], {ids[ti][i]});
        which.push_back(ti);
      }
    if (which.empty()) break;
    forward(m, cpu_ops(), b);
    for (size_t k = 0; k < which.size(); ++k)
      a.add(b.seqs[k].logits.data(), V, texts[which[k]][key][i], int(which[k]), int(i));
  }
  return a;
}

// The fixture's greedy continuations: samq generates greedily from the same prompt; it must
// produce the same tokens, except that after a step where llama.cpp's top-2 log-probs are
// within max_gap the continuations may part (the rest of that case is then not compared).
void check_greedy(const Model& m, const nlohmann::json& texts, const std::string& name, double max_gap) {
  const int64_t V = m.hparams.n_vocab;
  int steps = 0, same = 0;
  for (size_t ti = 0; ti < texts.size(); ++ti) {
    if (!texts[ti].contains("greedy")) continue;
    const auto& g = texts[ti]["greedy"];
    const auto prompt = g["prompt_ids"].get<std::vector<int32_t>>();
    const auto want = g["generated_ids"].get<std::vector<int32_t>>();
    KvCache cache(m, int64_t(prompt.size() + want.size()) + 1);
    std::vector<int32_t> next = prompt;
    for (size_t i = 0; i < want.size(); ++i) {
      Batch b;
      b.add(&cache, next);
      forward(m, cpu_ops(), b);
      const int32_t mine = argmax(b.seqs[0].logits.data(), V);
      ++steps;
      if (mine == want[i]) {
        ++same;
        next = {mine};
        continue;
      }
      const auto& top = g["steps"][i]["top5"];
      const double gap = top[0][1].get<double>() - top[1][1].get<double>();
      EXPECT_LT(gap, max_gap) << name << " text " << ti << ": greedy continuation differs at step " << i
                              << " (samq " << mine << ", llama.cpp " << want[i] << ")";
      std::printf("%s text %zu: greedy parts at step %zu after a near-tie (llama.cpp top-2 gap %.4f)\n",
                  name.c_str(), ti, i, gap);
      break;
    }
  }
  std::printf("%-40s greedy: %d of %d steps identical before any parting\n", name.c_str(), same, steps);
}

// llama.cpp against itself, from the fixture alone: rows `a` against rows `b` of every text
// (|Δ log p| over the ids in both top-5 lists).
Agreement llama_self_agreement(const nlohmann::json& texts, const char* a, const char* b) {
  Agreement r;
  for (const auto& t : texts) {
    for (size_t i = 0; i < t[a].size(); ++i) {
      const auto &x = t[a][i], &y = t[b][i];
      ++r.positions;
      r.same_top += x[0][0] == y[0][0];
      for (const auto& e : x)
        for (const auto& f : y)
          if (e[0] == f[0]) {
            const double d = std::fabs(e[1].get<double>() - f[1].get<double>());
            r.max_lp = std::max(r.max_lp, d);
            r.sum_lp += d;
            ++r.n_lp;
          }
    }
  }
  return r;
}

// samq's agreement with llama.cpp is held to llama.cpp's agreement with itself, measured here from
// the same fixture: the fraction of positions where llama.cpp's prefill (all tokens in one
// llama_decode) and its token-by-token decode of the same text pick the same top-1. samq's
// prefill and decode each must agree with llama.cpp on top-1 at least that often, less 0.5
// percentage points. The |Δ log p| figures are printed, not bounded: they were bounds set to what
// samq reached. A greedy parting is allowed only after a near-tie: llama.cpp's top-2 gap below
// max_greedy_gap (0.1 for Q4_K_M: llama.cpp's own FA on/off continuations part at a gap of 0.044).
constexpr double kSlackPoints = 0.5;

void check_teacher(const std::string& name, const std::string& path, double max_greedy_gap) {
  const auto& fx = fixture();
  ASSERT_TRUE(fx["models"].contains(name)) << "teacher fixture has no " << name;
  const auto& texts = fx["models"][name]["texts"];
  ASSERT_TRUE(texts[0].contains("decode")) << name << ": the fixture has no token-by-token decode rows (re-record it)";
  auto m = Model::load(path);

  Agreement self = llama_self_agreement(texts, "prefill", "decode");
  self.print(name + " llama.cpp prefill vs its decode");
  if (texts[0].contains("prefill_alt"))
    llama_self_agreement(texts, "prefill", "prefill_alt").print(name + " llama.cpp prefill vs prefill_alt");
  ASSERT_GT(self.positions, 0);
  const double floor_pct = 100.0 * self.same_frac() - kSlackPoints;

  auto check = [&](Agreement& a, const std::string& what) {
    a.print(name + " " + what);
    EXPECT_GE(100.0 * a.same_frac(), floor_pct)
        << name << " " << what << ": same top-1 below llama.cpp's own prefill-vs-decode agreement ("
        << 100.0 * self.same_frac() << " %) less " << kSlackPoints << " points";
  };
  Agreement p = prefill_agreement(*m, texts, "prefill");
  check(p, "samq prefill vs llama.cpp prefill");
  Agreement d = decode_agreement(*m, texts, "decode");
  check(d, "samq decode vs llama.cpp decode");
  check_greedy(*m, texts, name, max_greedy_gap);
}

}  // namespace teacher

TEST(LlamaCppTeacher, Settings) {
  // What the bounds below were measured against.
  const auto& s = teacher::fixture()["llama_cpp"]["settings"];
  std::printf("fixture settings: %s\n", s.dump().c_str());
  EXPECT_EQ(s["kv_cache_type_k"], "F16");
  EXPECT_EQ(s["kv_cache_type_v"], "F16");
}

TEST(LlamaCppTeacher, Bf16Model) {
  // The HF directory holds exactly the tensors of the BF16 GGUF.
  teacher::check_teacher("refcode-32m-bf16", test::shared_path("models/refcode-32m"), 0.02);
}

TEST(LlamaCppTeacher, Q4KMAnchor) {
  teacher::check_teacher("refcode-32m-Q4_K_M-imatrix", test::shared_path("golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf"), 0.1);
}
