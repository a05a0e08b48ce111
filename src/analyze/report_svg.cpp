// SVG heat map of sensitivity.json (analyze/analyze.h): predicted Δloss at Q4_K by layer
// (rows) and tensor kind (columns), on a log colour scale, with the value in each cell; a
// last row for the tensors outside the blocks (token_embd, output).
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "analyze/analyze.h"
#include "format/xml_escape.h"

namespace samq {

namespace {

// viridis-like ramp, t in [0, 1]
std::string ramp(double t) {
  static const double c[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  t = std::clamp(t, 0.0, 1.0) * 4;
  const int i = std::min(3, int(t));
  const double f = t - i;
  int rgb[3];
  for (int k = 0; k < 3; ++k) rgb[k] = int(std::lround(c[i][k] + f * (c[i + 1][k] - c[i][k])));
  return fmt::format("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2]);
}

std::string esc(const std::string& s) { return xml_escape(s); }

}  // namespace

std::string sensitivity_svg(const nlohmann::json& doc) {
  const std::vector<std::string> kinds = {"attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm",
                                          "ffn_gate", "ffn_up", "ffn_down", "token_embd", "output"};
  std::map<std::pair<int, std::string>, double> val;
  std::vector<std::string> used_kinds;
  int max_layer = -1;
  bool has_global = false;
  for (const auto& t : doc.at("tensors")) {
    if (!t.value("quantizable", false)) continue;
    const auto& c = t.at("candidates");
    if (!c.contains("q4_K")) continue;
    const std::string kind = t.at("kind");
    const int layer = t.at("layer");
    val[{layer, kind}] = c.at("q4_K").at("dloss").get<double>();
    if (std::find(used_kinds.begin(), used_kinds.end(), kind) == used_kinds.end()) used_kinds.push_back(kind);
    max_layer = std::max(max_layer, layer);
    has_global |= layer < 0;
  }
  std::vector<std::string> cols;
  for (const auto& k : kinds)
    if (std::find(used_kinds.begin(), used_kinds.end(), k) != used_kinds.end()) cols.push_back(k);
  for (const auto& k : used_kinds)
    if (std::find(cols.begin(), cols.end(), k) == cols.end()) cols.push_back(k);
  double lo = INFINITY, hi = -INFINITY;
  for (auto& [k, v] : val)
    if (v > 0) {
      lo = std::min(lo, std::log10(v));
      hi = std::max(hi, std::log10(v));
    }
  if (!(hi > lo)) { lo = -8; hi = 0; }
  const int cw = 92, ch = 28, left = 90, top = 70;
  const int n_rows = max_layer + 1 + (has_global ? 1 : 0);
  const int width = left + cw * int(cols.size()) + 150, height = top + ch * n_rows + 60;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      width, height);
  const std::string model = doc.contains("model") ? doc["model"].value("path", "") : "";
  s += fmt::format("<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">Predicted Δloss at Q4_K (nats/token) — {}</text>\n", esc(model));
  s += "<text x=\"10\" y=\"38\" fill=\"#555\">rows: layers; columns: tensor kinds; colour: log10 Δloss (brighter = more sensitive)</text>\n";
  for (size_t j = 0; j < cols.size(); ++j)
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + cw * int(j) + cw / 2, top - 8, esc(cols[j]));
  auto row_of = [&](int layer) { return layer < 0 ? max_layer + 1 : layer; };
  for (int r = 0; r < n_rows; ++r)
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left - 6, top + ch * r + ch / 2 + 4,
                     r <= max_layer ? fmt::format("layer {}", r) : std::string("global"));
  for (auto& [key, v] : val) {
    const int r = row_of(key.first);
    const int j = int(std::find(cols.begin(), cols.end(), key.second) - cols.begin());
    const double t = v > 0 ? (std::log10(v) - lo) / (hi - lo) : 0;
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"white\"><title>{} layer {}: {:.3g}</title></rect>\n",
                     left + cw * j, top + ch * r, cw, ch, ramp(t), esc(key.second), key.first, v);
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{}\">{:.2g}</text>\n", left + cw * j + cw / 2,
                     top + ch * r + ch / 2 + 4, t > 0.6 ? "black" : "white", v);
  }
  // legend
  const int lx = left + cw * int(cols.size()) + 30;
  for (int i = 0; i < 10; ++i)
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"20\" height=\"{}\" fill=\"{}\"/>\n", lx, top + i * 12, 12, ramp(1.0 - i / 9.0));
  s += fmt::format("<text x=\"{}\" y=\"{}\">1e{:.1f}</text>\n", lx + 26, top + 10, hi);
  s += fmt::format("<text x=\"{}\" y=\"{}\">1e{:.1f}</text>\n", lx + 26, top + 118, lo);
  s += "</svg>\n";
  return s;
}

}  // namespace samq
