#include "quant/golden_data.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "common/test_env.h"
#include "core/error.h"

namespace samq::test {

namespace {
std::vector<float> read_f32(const GgufTensorInfo& t) {
  if (t.type != GgmlType::F32) fail("golden tensor {} is not F32", t.name);
  std::vector<float> v(size_t(t.n_elements()));
  std::memcpy(v.data(), t.data, v.size() * 4);
  return v;
}

std::unique_ptr<QuantGolden> load() {
  auto g = std::make_unique<QuantGolden>();
  g->file = GgufFile::open(shared_path("golden/quant-golden.gguf"));
  const auto& rows = g->file.tensor("rows");
  g->rows = rows.rows();
  g->cols = rows.cols();
  g->x = read_f32(rows);
  g->imatrix = read_f32(g->file.tensor("imatrix"));
  std::ifstream in(shared_path("golden/quant-golden-errors.txt"));
  if (!in) fail("cannot read golden/quant-golden-errors.txt");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string type, im, rel, wsq;
    if (!(ls >> type >> im >> rel >> wsq)) continue;
    GgmlErrors e;
    e.rel_err = std::stod(rel.substr(rel.find('=') + 1));
    e.weighted_sq_err = std::stod(wsq.substr(wsq.find('=') + 1));
    g->errors[im == "imatrix=1" ? type + ".imatrix" : type] = e;
  }
  return g;
}
}  // namespace

const QuantGolden& quant_golden() {
  static std::unique_ptr<QuantGolden> g = load();
  return *g;
}

const std::vector<GgmlType>& golden_types() {
  static const std::vector<GgmlType> types = {
      GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0,   GgmlType::Q4_1,
      GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q2_K, GgmlType::Q3_K,   GgmlType::Q4_K,
      GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS};
  return types;
}

}  // namespace samq::test
