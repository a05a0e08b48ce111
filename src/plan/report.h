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

// Point labels: each label's box (SVG user units, y down) beside its anchor point, chosen from
// positions right/left and above/below at growing distance, the first that overlaps no point and
// no label placed before it and stays inside `frame` (else the least overlapping). A label's width
// is label_width(text): per character, a little more than an 11-unit sans-serif glyph's advance.
struct LabelBox {
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};
double label_width(const std::string& text);
std::vector<LabelBox> place_labels(const std::vector<std::pair<double, double>>& anchors,
                                   const std::vector<std::string>& texts, const LabelBox& frame);

// title: names the model, e.g. "refcode-32m: file size vs KLD to the base model".
std::string size_vs_kld_svg(const std::vector<ReportPoint>& pts, const std::string& title);
std::string type_map_svg(const Plan& p, const std::string& title);

}  // namespace samq::plan
