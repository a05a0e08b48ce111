#include "plan/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "format/xml_escape.h"

namespace samq::plan {
namespace {

std::string esc(const std::string& s) { return xml_escape(s); }

const char* series_colour(const std::string& s) {
  if (s == "samq") return "#d62728";
  if (s == "preset") return "#1f77b4";
  if (s == "threshold") return "#2ca02c";
  return "#7f7f7f";
}

// Colours from cheap (warm) to expensive (cool) types.
std::string type_colour(GgmlType t) {
  switch (t) {
    case GgmlType::Q2_K: return "#d73027";
    case GgmlType::Q3_K: return "#f46d43";
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::IQ4_NL: return "#fdae61";
    case GgmlType::IQ4_XS: return "#fee08b";
    case GgmlType::Q4_K: return "#ffffbf";
    case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q5_K: return "#d9ef8b";
    case GgmlType::Q6_K: return "#a6d96a";
    case GgmlType::Q8_0: return "#66bd63";
    case GgmlType::F16: case GgmlType::BF16: return "#1a9850";
    default: return "#bbbbbb";
  }
}
}  // namespace

double label_width(const std::string& text) {
  // Advances of 11-unit sans-serif glyphs (DejaVu Sans, Arial), rounded up; other code points 11.
  static const std::string wide = "MWmw@%", narrow = " iljtfr.,:;()[]|'!";
  double w = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c & 0xc0) == 0x80) continue;  // continuation byte
    if (c >= 0x80) w += 11;
    else if (wide.find(char(c)) != std::string::npos) w += 10.5;
    else if (narrow.find(char(c)) != std::string::npos) w += 4;
    else if (std::isupper(c) || std::isdigit(c)) w += 8;
    else w += 7;
  }
  return w;
}

std::vector<LabelBox> place_labels(const std::vector<std::pair<double, double>>& anchors,
                                   const std::vector<std::string>& texts, const LabelBox& frame) {
  const double h = 12, r = 4;  // text height (11 px font), point radius
  std::vector<LabelBox> obstacles, placed(anchors.size());
  for (auto& [x, y] : anchors) obstacles.push_back({x - r, y - r, x + r, y + r});
  auto overlap = [](const LabelBox& a, const LabelBox& b) {
    const double w = std::min(a.x1, b.x1) - std::max(a.x0, b.x0), hh = std::min(a.y1, b.y1) - std::max(a.y0, b.y0);
    return w > 0 && hh > 0 ? w * hh : 0.0;
  };
  // Right of the point first (above, below), then left, then further up and down.
  std::vector<std::pair<double, double>> offs;  // (dx sign, baseline dy)
  for (int k = 0; k <= 12; ++k)
    for (double side : {1.0, -1.0})
      for (double dy : {-6.0 - 13.0 * k, 16.0 + 13.0 * k}) offs.push_back({side, dy});
  for (size_t i = 0; i < anchors.size(); ++i) {
    const double w = label_width(texts[i]);
    LabelBox best{};
    double best_cost = 1e300;
    for (auto [side, dy] : offs) {
      const double x0 = side > 0 ? anchors[i].first + 6 : anchors[i].first - 6 - w;
      const double base = anchors[i].second + dy;
      LabelBox b{x0, base - h + 2, x0 + w, base + 2};
      double cost = 0;
      for (auto& o : obstacles) cost += overlap(b, o);
      if (b.x0 < frame.x0 || b.x1 > frame.x1 || b.y0 < frame.y0 || b.y1 > frame.y1) cost += 1e6;
      if (cost < best_cost) best = b, best_cost = cost;
      if (cost == 0) break;
    }
    placed[i] = best;
    obstacles.push_back(best);
  }
  return placed;
}

std::string size_vs_kld_svg(const std::vector<ReportPoint>& pts, const std::string& title) {
  // Taller with many points, so that their labels find room.
  const double W = 720, H = std::max(440.0, 120.0 + 24.0 * double(pts.size())), L = 80, R = 200, T = 40, B = 60;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" font-size=\"14\">{}</text>\n",
      W, H, L, esc(title));
  std::vector<ReportPoint> v;
  for (auto& p : pts)
    if (p.kld > 0 && p.bytes > 0) v.push_back(p);
  if (v.empty()) return s + "<text x=\"80\" y=\"80\">no measurements</text>\n</svg>\n";
  double x0 = 1e300, x1 = 0, y0 = 1e300, y1 = 0;
  for (auto& p : v) {
    x0 = std::min(x0, double(p.bytes)), x1 = std::max(x1, double(p.bytes));
    y0 = std::min(y0, std::log10(p.kld)), y1 = std::max(y1, std::log10(p.kld));
  }
  const double xpad = std::max((x1 - x0) * 0.08, x1 * 0.02);
  x0 -= xpad, x1 += xpad;
  y0 = std::floor(y0 * 4) / 4 - 0.1, y1 = std::ceil(y1 * 4) / 4 + 0.1;
  auto X = [&](double b) { return L + (b - x0) / (x1 - x0) * (W - L - R); };
  auto Y = [&](double lk) { return T + (y1 - lk) / (y1 - y0) * (H - T - B); };
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", L, T,
                   W - L - R, H - T - B);
  for (int e = int(std::ceil(y0)); e <= int(std::floor(y1)); ++e)
    s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1f}\" "
                     "text-anchor=\"end\">1e{}</text>\n",
                     L, W - R, Y(e), Y(e), L - 6, Y(e) + 4, e);
  for (int k = 0; k <= 5; ++k) {
    const double b = x0 + (x1 - x0) * k / 5;
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.1f} MB</text>\n", X(b), H - B + 16, b / 1e6);
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">file size</text>\n", (L + W - R) / 2, H - 18);
  s += fmt::format("<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">mean KLD vs base "
                   "(nats, log)</text>\n",
                   (T + H - B) / 2, (T + H - B) / 2);
  // One polyline per series, sorted by size; then every point's label, placed clear of the
  // points and of the labels placed before it (a leader line when it moved away).
  std::map<std::string, std::vector<ReportPoint>> by;
  for (auto& p : v) by[p.series].push_back(p);
  std::vector<std::pair<double, double>> anchors;
  std::vector<std::string> texts, colours;
  for (auto& [ser, ps] : by) {
    std::sort(ps.begin(), ps.end(), [](auto& a, auto& b) { return a.bytes < b.bytes; });
    std::string pts_attr;
    for (auto& p : ps) pts_attr += fmt::format("{:.1f},{:.1f} ", X(double(p.bytes)), Y(std::log10(p.kld)));
    s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>\n", pts_attr,
                     series_colour(ser));
    for (auto& p : ps) {
      s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\"><title>{}: {} bytes, KLD {:.5f}</title>"
                       "</circle>\n",
                       X(double(p.bytes)), Y(std::log10(p.kld)), series_colour(ser), esc(p.label), p.bytes, p.kld);
      anchors.push_back({X(double(p.bytes)), Y(std::log10(p.kld))});
      texts.push_back(p.label);
      colours.push_back(series_colour(ser));
    }
  }
  const auto boxes = place_labels(anchors, texts, {L, T, W - R, H - B});
  for (size_t i = 0; i < boxes.size(); ++i) {
    const auto& b = boxes[i];
    const double cy = (b.y0 + b.y1) / 2, near_x = b.x0 > anchors[i].first ? b.x0 : b.x1;
    if (std::fabs(cy - anchors[i].second) > 16)
      s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"0.5\"/>\n",
                       anchors[i].first, anchors[i].second, near_x, cy, colours[i]);
    s += fmt::format("<text class=\"label\" x=\"{:.1f}\" y=\"{:.1f}\" fill=\"{}\">{}</text>\n", b.x0, b.y1 - 2, colours[i],
                     esc(texts[i]));
  }
  int row = 0;
  for (auto& [ser, ps] : by) {
    s += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"4\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>\n", W - R + 20,
                     T + 10 + row * 18, series_colour(ser), W - R + 30, T + 14 + row * 18,
                     ser == "samq" ? "samq (optimal plan)" : ser == "preset" ? "llama.cpp preset rules" : esc(ser));
    ++row;
  }
  return s + "</svg>\n";
}

std::string type_map_svg(const Plan& p, const std::string& title) {
  std::vector<std::string> kinds;
  int n_layer = 0;
  std::vector<const PlanTensor*> globals;
  for (auto& t : p.tensors) {
    if (t.type == GgmlType::F32) continue;
    if (t.layer < 0) {
      globals.push_back(&t);
      continue;
    }
    n_layer = std::max(n_layer, t.layer + 1);
    if (std::find(kinds.begin(), kinds.end(), t.kind) == kinds.end()) kinds.push_back(t.kind);
  }
  const std::vector<std::string> pref = {"attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
  std::stable_sort(kinds.begin(), kinds.end(), [&](auto& a, auto& b) {
    auto ia = std::find(pref.begin(), pref.end(), a) - pref.begin();
    auto ib = std::find(pref.begin(), pref.end(), b) - pref.begin();
    return ia < ib;
  });
  const double cw = 78, ch = 18, L = 70, T = 50;
  const double W = L + cw * double(std::max<size_t>(kinds.size(), 2)) + 130;
  const double H = T + ch * (n_layer + 2) + 30;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"10\" y=\"20\" font-size=\"14\">{}</text>\n",
      W, H, esc(title));
  auto cell = [&](double x, double y, const PlanTensor& t) {
    s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"white\"><title>{}: {}"
                     "</title></rect><text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
                     x, y, cw, ch, type_colour(t.type), esc(t.name), ggml_type_name(t.type), x + cw / 2, y + 13,
                     ggml_type_name(t.type));
  };
  for (size_t k = 0; k < kinds.size(); ++k)
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", L + cw * k + cw / 2, T - 6, esc(kinds[k]));
  // First row: tensors outside the layers.
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">global</text>\n", L - 6, T + 13);
  for (size_t g = 0; g < globals.size(); ++g) {
    cell(L + cw * g, T, *globals[g]);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" font-size=\"9\">{}</text>\n",
                     L + cw * g + cw / 2, T + ch + 10, esc(globals[g]->kind));
  }
  const double T2 = T + ch + 16;
  for (int l = 0; l < n_layer; ++l)
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">blk.{}</text>\n", L - 6, T2 + ch * l + 13, l);
  for (auto& t : p.tensors) {
    if (t.type == GgmlType::F32 || t.layer < 0) continue;
    const size_t k = std::find(kinds.begin(), kinds.end(), t.kind) - kinds.begin();
    cell(L + cw * double(k), T2 + ch * t.layer, t);
  }
  return s + "</svg>\n";
}

}  // namespace samq::plan
