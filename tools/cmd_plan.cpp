// samq plan: sensitivity.json + one budget -> plan.json (+ plan.tensor-types.txt).
#include <cstdio>
#include <map>
#include <sstream>

#include <filesystem>

#include "budget_options.h"
#include "command.h"
#include "export/skeleton.h"
#include "core/error.h"
#include "plan/plan.h"

namespace samq::cli {
namespace {

struct PlanArgs {
  std::string sensitivity, output;
  BudgetOptions budget;
  int64_t ctx = 4096;
  std::string kv_type = "f16";
  int parallel = 1;
  std::string policy = "optimal";
  double top = 0.1;
  std::string types, signal;
  std::vector<std::string> keep;
};

void print_summary(const plan::Plan& p) {
  std::map<std::string, std::pair<int, int64_t>> by;
  for (const auto& t : p.tensors) {
    auto& e = by[std::string(ggml_type_name(t.type))];
    e.first++;
    e.second += t.bytes;
  }
  std::fprintf(stderr, "plan: policy %s, %zu tensors\n", p.policy.c_str(), p.tensors.size());
  for (auto& [name, e] : by)
    std::fprintf(stderr, "  %-7s %4d tensors %12lld bytes\n", name.c_str(), e.first, (long long)e.second);
  std::fprintf(stderr, "  file %lld bytes (%.3f MB), %.4f bits/weight, predicted dloss %.6g%s\n",
               (long long)p.file_bytes, double(p.file_bytes) / 1e6, p.bpw, p.dloss,
               p.dloss_complete ? "" : " (some tensors unmeasured)");
  if (p.budget.resolved_bytes > 0)
    std::fprintf(stderr, "  budget %lld bytes: %.3f%% used\n", (long long)p.budget.resolved_bytes,
                 100.0 * double(p.file_bytes) / double(p.budget.resolved_bytes));
}

std::function<int()> setup(CLI::App& sub) {
  auto a = std::make_shared<PlanArgs>();
  sub.add_option("sensitivity", a->sensitivity,
                 "sensitivity.json written by samq analyze; or a model (GGUF file or HF dir) for the preset policies, "
                 "which need only names and shapes")
      ->required()
      ->check(CLI::ExistingPath);
  sub.add_option("-o,--output", a->output, "plan.json to write (plan.tensor-types.txt is written beside it)")->required();
  a->budget.declare(sub, "Budget: weights + KV cache + compute buffers fit in this memory (as llama.cpp sizes them on CPU with its defaults: flash attention, 512-token micro-batch)");
  sub.add_option("--ctx", a->ctx, "--fit-memory: context tokens per sequence")->capture_default_str();
  sub.add_option("--kv-type", a->kv_type, "--fit-memory: KV cache type (f16, q8_0, ...)")->capture_default_str();
  sub.add_option("--parallel", a->parallel, "--fit-memory: parallel sequences")->capture_default_str();
  sub.add_option("--policy", a->policy, "optimal | threshold | preset:Q4_K_M (or any llama.cpp K preset, Q8_0)")
      ->capture_default_str();
  sub.add_option("--top", a->top, "threshold policy: fraction of tensors (by gradient norm) at q8_0")->capture_default_str();
  sub.add_option("--types", a->types, "Comma-separated candidate types allowed, e.g. q4_K,q5_K,q6_K,q8_0");
  sub.add_option("--keep", a->keep, "Pin tensors: REGEX=TYPE (repeatable, first match wins)");
  sub.add_option("--signal", a->signal,
                 "Cost per candidate: dloss (the report's choice) or one of its candidates' signals, e.g. fisher_emp_full "
                 "(default: dloss for size budgets, fisher_emp_full for --max-kld when the report has it)");
  return [a]() {
    plan::PlanOptions o;
    o.samq_version = SAMQ_VERSION;
    o.policy = a->policy;
    o.signal = a->signal;
    o.threshold_top = a->top;
    o.ctx = a->ctx;
    o.kv_type = a->kv_type;
    o.parallel = a->parallel;
    a->budget.apply(o);
    std::stringstream ss(a->types);
    for (std::string item; std::getline(ss, item, ',');) {
      if (item.empty()) continue;
      const auto t = ggml_type_from_name(item);
      if (!t) fail("--types: unknown type \"{}\"", item);
      o.types.push_back(*t);
    }
    for (auto& k : a->keep) o.keep.push_back(plan::parse_keep(k));
    const bool is_model = std::filesystem::is_directory(a->sensitivity) ||
                          (a->sensitivity.size() > 5 && a->sensitivity.substr(a->sensitivity.size() - 5) == ".gguf");
    if (is_model && o.policy.rfind("preset:", 0) != 0)
      fail("{} is a model: only the preset policies work without a sensitivity report (run samq analyze first)",
           a->sensitivity);
    const plan::Sensitivity s =
        is_model ? sensitivity_skeleton(*open_source_model(a->sensitivity)) : plan::read_sensitivity(a->sensitivity);
    const plan::Plan p = plan::make_plan(s, o);
    plan::write_plan(p, a->output);
    print_summary(p);
    std::fprintf(stderr, "wrote %s and %s\n", a->output.c_str(), plan::tensor_types_path(a->output).c_str());
    return 0;
  };
}
}  // namespace

SAMQ_COMMAND(plan, 40, "Choose a type per tensor under a budget: sensitivity.json -> plan.json", setup);

}  // namespace samq::cli
