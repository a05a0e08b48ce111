// llama.cpp's preset mixtures, reproduced from names and shapes, against llama.cpp's own
// output: the tensor types in the Q3_K_M and Q4_K_M anchor files, and the file sizes of every
// preset row in ../shared/docs/anchors.md.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "format/gguf.h"
#include "plan/plan.h"
#include "plan/presets.h"
#include "synthetic.h"

using namespace samq;
using namespace samq::plan;

namespace {

// A sensitivity skeleton (names, shapes, quantizable flags) with the tensors of a GGUF file.
Sensitivity skeleton_from_gguf(const GgufFile& f) {
  Sensitivity s;
  s.model.architecture = f.architecture();
  for (const auto& t : f.tensors()) {
    TensorSensitivity r;
    r.name = t.name;
    r.layer = layer_of(t.name);
    r.kind = kind_of(t.name);
    r.rows = t.rows();
    r.cols = t.cols();
    r.params = t.n_elements();
    r.quantizable = t.n_dims >= 2;
    if (!r.quantizable) r.candidates.push_back({GgmlType::F32, r.params * 4, 0.0});
    s.tensors.push_back(r);
  }
  return s;
}

void expect_types_match(const char* preset, const char* anchor) {
  const GgufFile f = GgufFile::open(test::shared_path(std::string("golden/anchors/") + anchor));
  const Sensitivity s = skeleton_from_gguf(f);
  const auto types = preset_types(*find_preset(preset), s);
  ASSERT_EQ(types.size(), f.tensors().size());
  int checked = 0;
  for (size_t i = 0; i < types.size(); ++i) {
    EXPECT_EQ(ggml_type_name(types[i]), ggml_type_name(f.tensors()[i].type)) << preset << " " << f.tensors()[i].name;
    ++checked;
  }
  EXPECT_EQ(checked, 75);
}

}  // namespace

TEST(Presets, Q4KMMatchesLlamaCppAnchor) { expect_types_match("Q4_K_M", "refcode-32m-Q4_K_M-imatrix.gguf"); }
TEST(Presets, Q3KMMatchesLlamaCppAnchor) { expect_types_match("Q3_K_M", "refcode-32m-Q3_K_M-imatrix.gguf"); }

TEST(Presets, ConverterOrderGivesSameTypesAsLoaderOrder) {
  // The synthetic report lists tensors in the converter's order; the mixture's counters must
  // follow llama.cpp's loader order regardless.
  const Sensitivity s = parse_sensitivity(test::synthetic_sensitivity(), "synthetic");
  const GgufFile f = GgufFile::open(test::shared_path("golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf"));
  const auto types = preset_types(*find_preset("Q4_K_M"), s);
  for (size_t i = 0; i < s.tensors.size(); ++i)
    EXPECT_EQ(types[i], f.tensor(s.tensors[i].name).type) << s.tensors[i].name;
}

TEST(Presets, FileSizesMatchAnchorsTable) {
  // anchors.md, rows without imatrix: file bytes of llama-quantize's output. The header of such
  // a file is the imatrix anchor's minus the four quantize.imatrix.* keys (192 bytes: the
  // Q4_K_M rows differ by exactly that).
  const GgufFile f = GgufFile::open(test::shared_path("golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf"));
  const int64_t header = int64_t(f.data_offset()) - 192;
  const Sensitivity s = skeleton_from_gguf(f);
  const std::pair<const char*, int64_t> rows[] = {
      {"Q2_K", 14002912},   {"Q3_K_S", 15903456}, {"Q3_K_M", 17103584}, {"Q4_K_S", 19794656},
      {"Q4_K_M", 20542176}, {"Q5_K_M", 23655136}, {"Q6_K", 26962656},   {"Q8_0", 34835168},
  };
  for (auto [name, bytes] : rows) {
    const auto types = preset_types(*find_preset(name), s);
    int64_t data = 0;
    for (size_t i = 0; i < types.size(); ++i)
      data += pad32(s.tensors[i].rows * ggml_row_size(types[i], s.tensors[i].cols));
    EXPECT_EQ(header + data, bytes) << name;
  }
}

TEST(Presets, ShapeFallback) {
  EXPECT_EQ(shape_fallback(GgmlType::Q4_K, 896), GgmlType::Q5_0);
  EXPECT_EQ(shape_fallback(GgmlType::Q2_K, 896), GgmlType::Q4_0);
  EXPECT_EQ(shape_fallback(GgmlType::Q6_K, 896), GgmlType::Q8_0);
  EXPECT_EQ(shape_fallback(GgmlType::Q5_K, 896), GgmlType::Q5_1);
  EXPECT_EQ(shape_fallback(GgmlType::IQ4_XS, 896), GgmlType::IQ4_NL);
  EXPECT_EQ(shape_fallback(GgmlType::Q4_K, 100), GgmlType::F16);
  EXPECT_EQ(shape_fallback(GgmlType::Q4_K, 512), GgmlType::Q4_K);
  EXPECT_EQ(find_preset("q4_k"), find_preset("Q4_K_M"));
  EXPECT_EQ(find_preset("nope"), nullptr);
}

TEST(Presets, MoeEightExpertRulesMatchLlamaCppFileSizes) {
  // refmoe-31m (qwen3moe, 8 experts): the types llama-quantize chose are not published, but the
  // file sizes of its Q2_K/Q3_K_M/Q4_K_M/Q5_K_M+imatrix files are (anchors.md). Every file has the
  // same header (the converter's metadata plus the same quantize.imatrix.* keys), so the
  // differences between rows check the mixture rules exactly (attn_v/attn_k -> Q8_0,
  // attn_output -> Q5_K, ffn_down_exps by the layer in its name), and the one header size they
  // imply must fit them all.
  const auto m = nlohmann::json::parse(read_file(test::shared_path("golden/refmoe-31m-bf16.manifest.json")));
  Sensitivity s;
  s.model.architecture = "qwen3moe";
  s.model.n_head = 8;
  s.model.n_head_kv = 2;
  s.model.n_expert = int(m["metadata"]["qwen3moe.expert_count"]["value"].get<int64_t>());
  ASSERT_EQ(s.model.n_expert, 8);
  for (const auto& t : m["tensors"]) {
    TensorSensitivity r;
    r.name = t["name"];
    r.layer = layer_of(r.name);
    r.kind = kind_of(r.name);
    const auto ne = t["ne"].get<std::vector<int64_t>>();
    r.cols = ne[0];
    r.rows = ne.size() > 1 ? ne[1] * (ne.size() > 2 ? ne[2] : 1) : 1;
    r.params = r.rows * r.cols;
    r.quantizable = ne.size() >= 2 && r.name.find("ffn_gate_inp") == std::string::npos;
    if (!r.quantizable) r.candidates.push_back({GgmlType::F32, r.params * 4, 0.0});
    s.tensors.push_back(r);
  }
  const std::pair<const char*, int64_t> rows[] = {
      {"Q2_K", 14473472}, {"Q3_K_M", 17172736}, {"Q4_K_M", 20150528}, {"Q5_K_M", 22968576}};
  int64_t header = -1;
  for (auto [name, bytes] : rows) {
    const auto types = preset_types(*find_preset(name), s);
    int64_t data = 0;
    for (size_t i = 0; i < types.size(); ++i) {
      data += pad32(s.tensors[i].rows * ggml_row_size(types[i], s.tensors[i].cols));
      const std::string& n = s.tensors[i].name;
      if (n.find("ffn_gate_inp") != std::string::npos) EXPECT_EQ(types[i], GgmlType::F32) << n;
      if (n.find("attn_v.weight") != std::string::npos || n.find("attn_k.weight") != std::string::npos)
        EXPECT_EQ(types[i], GgmlType::Q8_0) << name << " " << n;
    }
    if (header < 0) header = bytes - data;
    EXPECT_EQ(header + data, bytes) << name;
  }
  // the converter's header plus the quantize.imatrix.* keys (names of the imatrix file and set)
  const int64_t bf16_header = m["data_offset"].get<int64_t>();
  EXPECT_GT(header, bf16_header + 150);
  EXPECT_LT(header, bf16_header + 512);
}
