// A synthetic sensitivity report with refcode-32m's real tensor names and shapes (from the
// BF16 manifest in ../shared/golden) and a made-up, plausible Δloss per candidate:
// dloss = s_tensor · params · 2^(-2·bpw) with a per-tensor sensitivity s drawn from a fixed
// seed. Used by the planner tests before (and independently of) the real analysis.
#pragma once
#include <cmath>
#include <fstream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/ggml_type.h"

namespace samq::test {

inline nlohmann::json synthetic_sensitivity(uint32_t seed = 1) {
  using nlohmann::json;
  std::ifstream f(shared_path("golden/refcode-32m-bf16.manifest.json"));
  const json m = json::parse(f);
  std::mt19937 rng(seed);
  std::lognormal_distribution<double> sens(0.0, 1.0);
  const char* cands[] = {"f16", "q8_0", "q6_K", "q5_K", "q4_K", "iq4_xs", "q3_K", "q2_K"};
  json ts = json::array();
  for (const auto& t : m["tensors"]) {
    const std::string name = t["name"];
    const int64_t cols = t["ne"][0];
    const int64_t rows = t["ne"].size() > 1 ? int64_t(t["ne"][1]) : 1;
    json r = {{"name", name}, {"shape", t["ne"].size() > 1 ? json{rows, cols} : json{cols}}, {"params", rows * cols},
              {"source_type", "bf16"}};
    const bool q = t["ne"].size() > 1;
    r["quantizable"] = q;
    const double s = sens(rng) * 1e-9;
    r["grad_norm"] = s * 1e9;
    json c = json::object();
    if (!q) {
      c["f32"] = {{"bytes", rows * cols * 4}, {"dloss", 0.0}};
    } else {
      for (const char* cn : cands) {
        const auto ty = *ggml_type_from_name(cn);
        const double bpw = ggml_bits_per_weight(ty);
        c[cn] = {{"bytes", rows * ggml_row_size(ty, cols)}, {"dloss", s * double(rows * cols) * std::pow(2.0, -2 * bpw) * 1e3}};
      }
    }
    r["candidates"] = c;
    ts.push_back(r);
  }
  return {{"schema", "samq.sensitivity/1"},
          {"model", {{"path", "refcode-32m"}, {"sha256", "synthetic"}, {"architecture", "llama"}, {"n_layer", 8}}},
          {"gguf_overhead_bytes", 262752},
          {"tensors", ts}};
}

}  // namespace samq::test
