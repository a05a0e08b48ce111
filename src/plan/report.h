// The pipeline's report (`samq run` -> DIR/report.md): SVG plots and the Markdown summary.
//   size_vs_kld_svg   file size (x) against mean KLD (y, log scale) for samq's plans and the
//                     llama.cpp presets, one labelled point each
//   type_map_svg      the plan as a grid: layers (rows) x tensor kinds (columns), coloured by
//                     type, with the non-layer tensors (token_embd, output) in a first row
// Plain SVG text, no dependencies, deterministic.
#pragma once
#include <string>
#include <vector>

#include "plan/plan.h"

namespace samq::plan {

struct ReportPoint {
  std::string label;   // "samq optimal", "Q4_K_M (llama.cpp rules)"
  std::string series;  // "samq" | "preset" | ...: colour
  std::string file;    // GGUF path, relative to the report
  int64_t bytes = 0;
  double bpw = 0;
  double kld = 0, kld_p99 = 0, same_top = 0, ppl = 0;
  double predicted_kld = -1;  // plan's summed dloss, -1 if unknown
};

std::string size_vs_kld_svg(const std::vector<ReportPoint>& pts, const std::string& title);
std::string type_map_svg(const Plan& p, const std::string& title);

}  // namespace samq::plan
