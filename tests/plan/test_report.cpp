// The size-vs-KLD plot: its title is the caller's (the model's name), and point labels do not
// overlap each other or the points, also when many points crowd together (samq run --sweep).
#include <gtest/gtest.h>

#include <regex>

#include "plan/report.h"

using namespace samq::plan;

namespace {
bool overlap(const LabelBox& a, const LabelBox& b) {
  return std::min(a.x1, b.x1) > std::max(a.x0, b.x0) && std::min(a.y1, b.y1) > std::max(a.y0, b.y0);
}

// 10 presets and 10 samq plans a little smaller and better, as a sweep gives them.
std::vector<ReportPoint> sweep_points() {
  std::vector<ReportPoint> v;
  const char* names[] = {"Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0"};
  for (int i = 0; i < 10; ++i) {
    const int64_t bytes = 12000000 + 1500000 * i;
    const double kld = 0.2 * std::pow(0.62, i);
    v.push_back({std::string(names[i]) + " (llama.cpp rules)", "preset", "", bytes, 0, kld});
    v.push_back({std::string("samq @ ") + names[i] + " size", "samq", "", bytes - 20000, 0, 0.8 * kld});
  }
  return v;
}
}  // namespace

TEST(Report, LabelsOfCrowdedPointsDoNotOverlap) {
  std::vector<std::pair<double, double>> anchors;
  std::vector<std::string> texts;
  for (int i = 0; i < 12; ++i) {  // a tight cluster and a diagonal
    anchors.push_back({300 + 3 * (i % 4), 200 + 2 * i});
    texts.push_back("point number " + std::to_string(i));
  }
  const LabelBox frame{80, 40, 520, 500};
  const auto boxes = place_labels(anchors, texts, frame);
  ASSERT_EQ(boxes.size(), anchors.size());
  for (size_t i = 0; i < boxes.size(); ++i) {
    EXPECT_NEAR(boxes[i].x1 - boxes[i].x0, label_width(texts[i]), 1e-9);
    EXPECT_GE(boxes[i].x0, frame.x0);
    EXPECT_LE(boxes[i].x1, frame.x1);
    EXPECT_GE(boxes[i].y0, frame.y0);
    EXPECT_LE(boxes[i].y1, frame.y1);
    for (size_t j = 0; j < boxes.size(); ++j) {
      if (j != i) {
        EXPECT_FALSE(overlap(boxes[i], boxes[j])) << i << " " << j;
      }
      const LabelBox pt{anchors[j].first - 4, anchors[j].second - 4, anchors[j].first + 4, anchors[j].second + 4};
      EXPECT_FALSE(overlap(boxes[i], pt)) << "label " << i << " covers point " << j;
    }
  }
}

TEST(Report, SweepPlotNamesTheModelAndItsLabelsDoNotOverlap) {
  const std::string svg = size_vs_kld_svg(sweep_points(), "qwen2-7b: file size vs KLD to the base model");
  EXPECT_NE(svg.find(">qwen2-7b: file size vs KLD to the base model<"), std::string::npos);
  EXPECT_EQ(svg.find("refcode"), std::string::npos);
  // Every label as drawn: <text class="label" x=.. y=..>TEXT</text>, baseline y, width label_width.
  const std::regex re("<text class=\"label\" x=\"([0-9.]+)\" y=\"([0-9.]+)\"[^>]*>([^<]*)</text>");
  std::vector<LabelBox> boxes;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it) {
    const double x = std::stod((*it)[1]), y = std::stod((*it)[2]);
    boxes.push_back({x, y - 10, x + label_width((*it)[3]), y + 2});
  }
  ASSERT_EQ(boxes.size(), 20u);
  for (size_t i = 0; i < boxes.size(); ++i)
    for (size_t j = i + 1; j < boxes.size(); ++j) EXPECT_FALSE(overlap(boxes[i], boxes[j])) << i << " " << j;
}
