// The one budget a plan is made for, as `samq plan` and `samq run` both declare it:
// --target-size, --target-bpw, --fit-memory or --max-kld (mutually exclusive). One place for the
// option declarations, the text shown in reports, the flags passed on to a `samq plan` child,
// and the PlanOptions fields they become.
#pragma once
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "plan/plan.h"

namespace samq::cli {

struct BudgetOptions {
  std::string target_size, fit_memory;
  double target_bpw = 0, max_kld = 0;

  // Declares the four options on `sub`; `fit_memory_help` says what --fit-memory counts.
  void declare(CLI::App& sub, const std::string& fit_memory_help);
  bool given() const { return !describe().empty(); }
  // "--target-size 18MB" (the flag as the user gave it), or "" when no budget was given.
  std::string describe() const;
  // The same budget as arguments of `samq plan` (fit-memory adds --ctx CTX).
  std::vector<std::string> plan_args(int64_t ctx) const;
  // Sets o.budget_kind and o.budget_value; sizes parsed (errors name the option).
  void apply(plan::PlanOptions& o) const;
};

}  // namespace samq::cli
