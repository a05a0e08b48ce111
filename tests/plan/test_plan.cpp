// make_plan on a synthetic report with refcode-32m's shapes: budgets are never exceeded and
// at least 99.5% used, infeasible budgets name the achievable range, pins and type filters
// hold, threshold picks the top fraction by gradient norm, the plan round-trips through JSON,
// the tensor-type file selects exactly each tensor under llama.cpp's rules, and `samq plan`
// writes both files.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "plan/budget.h"
#include "plan/plan.h"
#include "synthetic.h"

using namespace samq;
using namespace samq::plan;

namespace {
Sensitivity synth(uint32_t seed = 1) { return parse_sensitivity(test::synthetic_sensitivity(seed), "synthetic.json"); }

PlanOptions size_budget(int64_t bytes) {
  PlanOptions o;
  o.budget_kind = "target-size";
  o.budget_value = double(bytes);
  return o;
}
}  // namespace

TEST(Plan, OptimalUsesBudgetWithoutExceedingIt) {
  const Sensitivity s = synth();
  double prev = 1e300;
  for (int64_t budget : {14003104LL, 17103776LL, 20542368LL, 23655328LL, 30000000LL}) {
    const Plan p = make_plan(s, size_budget(budget));
    EXPECT_LE(p.file_bytes, budget);
    EXPECT_GE(double(p.file_bytes), 0.995 * double(budget)) << budget;
    EXPECT_LT(p.dloss, prev);  // more bytes, lower predicted loss
    prev = p.dloss;
    // Totals are the sums of the tensors plus the header.
    int64_t sum = 0;
    for (auto& t : p.tensors) sum += pad32(t.bytes);
    EXPECT_EQ(p.file_bytes, s.gguf_overhead_bytes + p.metadata_bytes + sum);
    EXPECT_EQ(p.metadata_bytes % 32, 0);
  }
}

TEST(Plan, OptimalBeatsPresetAtItsSize) {
  const Sensitivity s = synth();
  PlanOptions pre;
  pre.policy = "preset:Q4_K_M";
  const Plan preset = make_plan(s, pre);
  const Plan opt = make_plan(s, size_budget(preset.file_bytes));
  EXPECT_LE(opt.file_bytes, preset.file_bytes);
  EXPECT_LT(opt.dloss, preset.dloss);
}

TEST(Plan, InfeasibleBudgetStatesRange) {
  const Sensitivity s = synth();
  try {
    make_plan(s, size_budget(1000000));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("infeasible"), std::string::npos) << m;
    EXPECT_NE(m.find("smallest"), std::string::npos) << m;
    EXPECT_NE(m.find("largest"), std::string::npos) << m;
  }
}

TEST(Plan, TargetBpwAndMaxKld) {
  const Sensitivity s = synth();
  PlanOptions o;
  o.budget_kind = "target-bpw";
  o.budget_value = 4.5;
  const Plan p = make_plan(s, o);
  EXPECT_LE(p.bpw, 4.5 + 1e-9);
  EXPECT_GE(p.bpw, 4.5 * 0.995);

  PlanOptions k;
  k.budget_kind = "max-kld";
  k.budget_value = p.dloss;
  const Plan q = make_plan(s, k);
  EXPECT_LE(q.dloss, p.dloss * (1 + 1e-12));
  EXPECT_LE(q.file_bytes, p.file_bytes);  // the smallest file reaching that loss
  k.budget_value = 1e-30;
  EXPECT_THROW(make_plan(s, k), Error);
}

TEST(Plan, FitMemorySubtractsRuntime) {
  const Sensitivity s = synth();
  const MemoryEstimate m = estimate_runtime_memory(s, 1024, "f16", 1);
  // refcode-32m: 8 layers, K and V rows of 128 f16 values per token.
  EXPECT_EQ(m.kv_bytes, 8LL * 2 * 128 * 2 * 1024);
  PlanOptions o;
  o.budget_kind = "fit-memory";
  o.budget_value = double(m.total() + 20000000);
  o.ctx = 1024;
  const Plan p = make_plan(s, o);
  EXPECT_LE(p.file_bytes + m.total(), m.total() + 20000000);
  EXPECT_GE(p.file_bytes, 0.995 * 20000000);
  EXPECT_EQ(p.budget.details["kv_cache_bytes"].get<int64_t>(), m.kv_bytes);
}

TEST(Plan, KeepAndTypes) {
  const Sensitivity s = synth();
  PlanOptions o = size_budget(20000000);
  o.types = {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q3_K};
  o.keep = {parse_keep("^output\\.weight=q8_0"), parse_keep("attn_v=q6_K")};
  const Plan p = make_plan(s, o);
  for (auto& t : p.tensors) {
    if (t.name == "output.weight") EXPECT_EQ(t.type, GgmlType::Q8_0);
    else if (t.kind == "attn_v") EXPECT_EQ(t.type, GgmlType::Q6_K);
    else if (t.type != GgmlType::F32)
      EXPECT_TRUE(t.type == GgmlType::Q4_K || t.type == GgmlType::Q6_K || t.type == GgmlType::Q3_K) << t.name << " " << ggml_type_name(t.type);
  }
  EXPECT_THROW(parse_keep("noequals"), Error);
  EXPECT_THROW(parse_keep("x=q9_K"), Error);
  EXPECT_THROW(parse_keep("(=q4_K"), Error);
}

TEST(Plan, ThresholdTopFractionByGradNorm) {
  const Sensitivity s = synth(4);
  PlanOptions o;
  o.policy = "threshold";
  o.threshold_top = 0.1;
  const Plan p = make_plan(s, o);
  std::vector<std::pair<double, std::string>> g;
  for (auto& t : s.tensors)
    if (t.quantizable) g.push_back({t.grad_norm, t.name});
  std::sort(g.rbegin(), g.rend());
  ASSERT_EQ(g.size(), 58u);
  int n8 = 0;
  for (auto& t : p.tensors) n8 += t.type == GgmlType::Q8_0;
  EXPECT_EQ(n8, 6);  // ceil(0.1 * 58), as in the article's measurement in anchors.md
  for (int i = 0; i < 6; ++i) {
    auto it = std::find_if(p.tensors.begin(), p.tensors.end(), [&](auto& t) { return t.name == g[i].second; });
    EXPECT_EQ(it->type, GgmlType::Q8_0) << g[i].second;
  }
}

TEST(Plan, JsonRoundTripAndTensorTypeFile) {
  const Sensitivity s = synth();
  const Plan p = make_plan(s, size_budget(20542368));
  const std::string dir = test::temp_dir();
  write_plan(p, dir + "/plan.json");
  const Plan q = read_plan(dir + "/plan.json");
  ASSERT_EQ(q.tensors.size(), p.tensors.size());
  EXPECT_EQ(q.file_bytes, p.file_bytes);
  EXPECT_EQ(q.ftype, p.ftype);
  for (size_t i = 0; i < p.tensors.size(); ++i) EXPECT_EQ(q.tensors[i].type, p.tensors[i].type);
  EXPECT_EQ(plan_metadata(q, "").size(), plan_metadata(p, "").size());
  EXPECT_EQ(encoded_size(plan_metadata(q, std::string(64, 'a'))), p.metadata_bytes);

  // llama-quantize semantics: lower-cased ECMAScript patterns, regex_search, first match wins.
  std::istringstream in(read_file(dir + "/plan.tensor-types.txt"));
  std::vector<std::pair<std::regex, std::string>> rules;
  for (std::string tok; in >> tok;) {
    const size_t eq = tok.find('=');
    std::string pat = tok.substr(0, eq);
    for (auto& c : pat) c = char(std::tolower((unsigned char)c));
    rules.emplace_back(std::regex(pat), tok.substr(eq + 1));
  }
  for (auto& t : p.tensors) {
    std::string got;
    for (auto& [re, ty] : rules)
      if (std::regex_search(t.name, re)) { got = ty; break; }
    if (t.type == GgmlType::F32) EXPECT_EQ(got, "") << t.name;
    else EXPECT_EQ(ggml_type_from_name(got), t.type) << t.name;
  }
}

TEST(Plan, ParseSize) {
  EXPECT_EQ(parse_size("20542368", "x"), 20542368);
  EXPECT_EQ(parse_size("18MB", "x"), 18000000);
  EXPECT_EQ(parse_size("40GB", "x"), 40000000000LL);
  EXPECT_EQ(parse_size("2GiB", "x"), 2LL << 30);
  EXPECT_EQ(parse_size("1.5 MiB", "x"), 1572864);
  EXPECT_THROW(parse_size("lots", "x"), Error);
  EXPECT_THROW(parse_size("12 parsecs", "x"), Error);
}

TEST(Plan, BadSensitivityNamesField) {
  auto j = test::synthetic_sensitivity();
  j["tensors"][3]["candidates"]["q4_K"]["bytes"] = 12345;
  try {
    parse_sensitivity(j, "s.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("candidates.q4_K"), std::string::npos) << e.what();
  }
  j = test::synthetic_sensitivity();
  j.erase("gguf_overhead_bytes");
  EXPECT_THROW(parse_sensitivity(j, "s.json"), Error);
}

TEST(PlanCli, WritesPlanAndTensorTypes) {
  const std::string dir = test::temp_dir();
  write_file_atomic(dir + "/s.json", test::synthetic_sensitivity().dump());
  std::string out;
  int rc = test::run_command(test::samq_binary() + " plan " + dir + "/s.json --target-size 20MB -o " + dir + "/p.json", &out);
  ASSERT_EQ(rc, 0) << out;
  const Plan p = read_plan(dir + "/p.json");
  EXPECT_LE(p.file_bytes, 20000000);
  EXPECT_FALSE(read_file(dir + "/p.tensor-types.txt").empty());
  rc = test::run_command(test::samq_binary() + " plan " + dir + "/s.json --target-size 1MB -o " + dir + "/q.json", &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("smallest achievable"), std::string::npos) << out;
}
