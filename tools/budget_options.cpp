#include "budget_options.h"

#include <fmt/format.h>

#include "plan/budget.h"

namespace samq::cli {

void BudgetOptions::declare(CLI::App& sub, const std::string& fit_memory_help) {
  auto* ts = sub.add_option("--target-size", target_size, "Budget: file size, e.g. 20542368, 18MB, 40GB, 2GiB");
  auto* tb = sub.add_option("--target-bpw", target_bpw, "Budget: bits per weight over all tensors (llama.cpp's BPW)");
  auto* fm = sub.add_option("--fit-memory", fit_memory, fit_memory_help);
  auto* mk = sub.add_option("--max-kld", max_kld, "Budget: smallest file whose predicted KLD (nats) stays under this");
  ts->excludes(tb)->excludes(fm)->excludes(mk);
  tb->excludes(fm)->excludes(mk);
  fm->excludes(mk);
}

std::string BudgetOptions::describe() const {
  if (!target_size.empty()) return "--target-size " + target_size;
  if (target_bpw > 0) return fmt::format("--target-bpw {}", target_bpw);
  if (!fit_memory.empty()) return "--fit-memory " + fit_memory;
  if (max_kld > 0) return fmt::format("--max-kld {}", max_kld);
  return "";
}

std::vector<std::string> BudgetOptions::plan_args(int64_t ctx) const {
  if (!target_size.empty()) return {"--target-size", target_size};
  if (target_bpw > 0) return {"--target-bpw", fmt::format("{}", target_bpw)};
  if (!fit_memory.empty()) return {"--fit-memory", fit_memory, "--ctx", std::to_string(ctx)};
  if (max_kld > 0) return {"--max-kld", fmt::format("{}", max_kld)};
  return {};
}

void BudgetOptions::apply(plan::PlanOptions& o) const {
  if (!target_size.empty()) o.budget_kind = "target-size", o.budget_value = double(plan::parse_size(target_size, "--target-size"));
  else if (target_bpw > 0) o.budget_kind = "target-bpw", o.budget_value = target_bpw;
  else if (!fit_memory.empty()) o.budget_kind = "fit-memory", o.budget_value = double(plan::parse_size(fit_memory, "--fit-memory"));
  else if (max_kld > 0) o.budget_kind = "max-kld", o.budget_value = max_kld;
}

}  // namespace samq::cli
