// --signal: planning on one of the report's per-candidate signals gives exactly the plan of a
// report whose dloss IS that signal (the oracle is built independently, by rewriting the JSON),
// differs from the default plan when the signal ranks tensors differently, and a missing signal
// is an error naming the tensor, the type and the signals that exist.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "plan/plan.h"
#include "synthetic.h"

using namespace samq;
using namespace samq::plan;

namespace {
// The synthetic report with a second signal "alt" per candidate: dloss times a per-tensor
// factor drawn from [0.1, 10] (so the ranking of tensors changes), and "same" = dloss.
nlohmann::json with_alt(uint32_t seed) {
  auto j = test::synthetic_sensitivity(seed);
  std::mt19937 rng(seed + 100);
  std::uniform_real_distribution<double> f(-1.0, 1.0);
  for (auto& t : j["tensors"]) {
    const double k = std::pow(10.0, f(rng));
    for (auto it = t["candidates"].begin(); it != t["candidates"].end(); ++it) {
      const double d = it.value()["dloss"].get<double>();
      it.value()["signals"] = {{"alt", d * k}, {"same", d}};
    }
  }
  return j;
}

nlohmann::json dloss_from(nlohmann::json j, const std::string& signal) {
  for (auto& t : j["tensors"])
    for (auto it = t["candidates"].begin(); it != t["candidates"].end(); ++it)
      it.value()["dloss"] = it.value()["signals"][signal];
  return j;
}

std::vector<GgmlType> types_of(const Plan& p) {
  std::vector<GgmlType> r;
  for (auto& t : p.tensors) r.push_back(t.type);
  return r;
}
}  // namespace

TEST(PlanSignal, SameAsReportWhoseDlossIsThatSignal) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    const auto j = with_alt(seed);
    const Sensitivity s = parse_sensitivity(j, "alt.json");
    const Sensitivity oracle = parse_sensitivity(dloss_from(j, "alt"), "oracle.json");
    for (int64_t budget : {14003104LL, 20542368LL, 23655328LL}) {
      PlanOptions o;
      o.budget_kind = "target-size";
      o.budget_value = double(budget);
      const Plan base = make_plan(s, o);
      const Plan want = make_plan(oracle, o);
      o.signal = "alt";
      const Plan got = make_plan(s, o);
      EXPECT_EQ(types_of(got), types_of(want)) << seed << " " << budget;
      EXPECT_DOUBLE_EQ(got.dloss, want.dloss);
      EXPECT_EQ(got.options.value("signal", ""), "alt");
      EXPECT_NE(types_of(got), types_of(base)) << "the alt signal should change the allocation";
      o.signal = "same";
      EXPECT_EQ(types_of(make_plan(s, o)), types_of(base));
    }
  }
}

TEST(PlanSignal, MissingSignalNamesTensorAndAlternatives) {
  const Sensitivity s = parse_sensitivity(with_alt(1), "alt.json");
  PlanOptions o;
  o.budget_kind = "target-size";
  o.budget_value = 20542368;
  o.signal = "fisher_nope";
  try {
    make_plan(s, o);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("fisher_nope"), std::string::npos) << m;
    EXPECT_NE(m.find("token_embd.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("alt, same"), std::string::npos) << m;
  }
  // A report without any signals says so.
  const Sensitivity bare = parse_sensitivity(test::synthetic_sensitivity(1), "bare.json");
  o.signal = "alt";
  EXPECT_THROW(make_plan(bare, o), std::exception);
}

// The default signal: the report's dloss for size budgets, the empirical Fisher (when the report
// has it) for --max-kld, whose bound then holds on that signal's sum.
TEST(PlanSignal, DefaultIsEmpiricalFisherForMaxKldOnly) {
  auto j = with_alt(4);
  for (auto& t : j["tensors"])
    for (auto it = t["candidates"].begin(); it != t["candidates"].end(); ++it)
      it.value()["signals"]["fisher_emp_full"] = it.value()["signals"]["alt"];
  const Sensitivity s = parse_sensitivity(j, "emp.json");
  const Sensitivity oracle = parse_sensitivity(dloss_from(j, "alt"), "oracle.json");
  PlanOptions o;
  o.budget_kind = "target-size";
  o.budget_value = 20542368;
  EXPECT_EQ(resolve_signal(s, o), "dloss");
  o.budget_kind = "max-kld";
  o.budget_value = 0.5 * make_plan(s, [] {
                     PlanOptions q;
                     q.budget_kind = "target-size";
                     q.budget_value = 20542368;
                     q.signal = "alt";
                     return q;
                   }()).dloss;
  EXPECT_EQ(resolve_signal(s, o), "fisher_emp_full");
  const Plan got = make_plan(s, o);
  const Plan want = make_plan(oracle, o);
  EXPECT_EQ(types_of(got), types_of(want));
  EXPECT_LE(got.dloss, o.budget_value);
  EXPECT_EQ(got.options.value("signal", ""), "fisher_emp_full");
  o.signal = "dloss";  // explicit choice wins
  EXPECT_EQ(resolve_signal(s, o), "dloss");
  // Without the signal in the report, --max-kld falls back to dloss.
  EXPECT_EQ(resolve_signal(parse_sensitivity(test::synthetic_sensitivity(4), "bare.json"), PlanOptions{.budget_kind = "max-kld"}), "dloss");
}
