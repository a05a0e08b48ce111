// Header facts of the GGUF files llama.cpp wrote (../shared/golden), read with GgufFile and
// checked against what the golden README, anchors.md and the converter manifest state.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "format/gguf.h"

using namespace samq;
using json = nlohmann::json;

TEST(GgufGolden, QuantGolden) {
  GgufFile f = GgufFile::open(samq::test::shared_path("golden/quant-golden.gguf"));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  const GgufTensorInfo& rows = f.tensor("rows");
  EXPECT_EQ(rows.type, GgmlType::F32);
  EXPECT_EQ(rows.cols(), 1536);
  EXPECT_EQ(rows.rows(), 40);
  EXPECT_EQ(f.tensor("imatrix").cols(), 1536);
  EXPECT_EQ(f.tensor("imatrix").rows(), 1);
  // golden/README.md: q.<type> and deq.<type>, with and without imatrix, for these types.
  for (const char* name : {"f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K",
                           "q6_K", "iq4_nl", "iq4_xs"}) {
    SCOPED_TRACE(name);
    const GgmlType type = *ggml_type_from_name(name);
    for (std::string suffix : {"", ".imatrix"}) {
      const GgufTensorInfo* q = f.find_tensor(std::string("q.") + name + suffix);
      const GgufTensorInfo* d = f.find_tensor(std::string("deq.") + name + suffix);
      if (std::string(name) == "f16" || std::string(name) == "bf16") {
        if (!suffix.empty()) continue;  // no importance variant for plain conversions
      }
      ASSERT_NE(q, nullptr);
      ASSERT_NE(d, nullptr);
      EXPECT_EQ(q->type, type);
      EXPECT_EQ(q->cols(), 1536);
      EXPECT_EQ(q->rows(), 40);
      EXPECT_EQ(q->nbytes, uint64_t(40 * ggml_row_size(type, 1536)));
      EXPECT_EQ(d->type, GgmlType::F32);
      EXPECT_EQ(d->nbytes, 40u * 1536u * 4u);
    }
  }
  // All tensor data lies inside the file, 32-aligned, contiguous.
  uint64_t end = 0;
  for (const auto& t : f.tensors()) {
    EXPECT_EQ((f.data_offset() + t.offset) % 32, 0u);
    end = t.offset + gguf_pad(t.nbytes, 32);
  }
  EXPECT_EQ(f.data_offset() + end, f.file_size());
}

TEST(GgufGolden, AnchorsMatchManifestAndAnchorsMd) {
  const json man = json::parse(read_file(samq::test::shared_path("golden/refcode-32m-bf16.manifest.json")));
  std::map<std::string, std::vector<int64_t>> man_ne;
  for (const auto& t : man["tensors"]) man_ne[t["name"]] = t["ne"].get<std::vector<int64_t>>();

  struct Anchor {
    const char* rel;
    uint64_t bytes;       // docs/anchors.md
    uint32_t file_type;   // llama_ftype: 12 = Q3_K_M, 15 = Q4_K_M
  };
  for (auto a : {Anchor{"golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf", 20542368, 15},
                 Anchor{"golden/anchors/refcode-32m-Q3_K_M-imatrix.gguf", 17103776, 12}}) {
    SCOPED_TRACE(a.rel);
    GgufFile f = GgufFile::open(samq::test::shared_path(a.rel));
    EXPECT_EQ(f.file_size(), a.bytes);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.get_u32("general.file_type"), a.file_type);
    EXPECT_EQ(f.get_u32("general.quantization_version"), 2u);
    EXPECT_EQ(f.get_str("quantize.imatrix.file"), "imatrix.gguf");
    EXPECT_EQ(f.architecture(), "llama");
    // Every converter key survives quantization with the same value (scalars) / count and
    // first elements (arrays); general.file_type is the one key llama-quantize changes.
    for (const auto& [key, mv] : man["metadata"].items()) {
      if (key == "general.file_type") continue;
      const GgufValue* v = f.find(key);
      ASSERT_NE(v, nullptr) << key;
      EXPECT_EQ(int(v->type()), mv["type"].get<int>()) << key;
      const json& val = mv["value"];
      if (v->is_array()) {
        EXPECT_EQ(v->size(), val["count"].get<size_t>()) << key;
        EXPECT_EQ(int(v->elem_type()), val["array_type"].get<int>()) << key;
        const json& first = val["first"];
        for (size_t i = 0; i < first.size(); ++i) {
          if (v->elem_type() == GgufType::STRING) EXPECT_EQ(v->get_arr_str()[i], first[i].get<std::string>()) << key;
          else EXPECT_EQ(v->get_arr_int()[i], first[i].get<int64_t>()) << key;
        }
      } else if (v->type() == GgufType::STRING) {
        EXPECT_EQ(v->get_str(), val.get<std::string>()) << key;
      } else if (v->type() == GgufType::FLOAT32) {
        EXPECT_EQ(v->get_f32(), val.get<float>()) << key;
      } else {
        EXPECT_EQ(v->get_int(), val.get<int64_t>()) << key;
      }
    }
    // Same tensors, same dims as the BF16 conversion.
    ASSERT_EQ(f.tensors().size(), man_ne.size());
    for (const auto& t : f.tensors()) {
      auto it = man_ne.find(t.name);
      ASSERT_NE(it, man_ne.end()) << t.name;
      ASSERT_EQ(t.n_dims, it->second.size()) << t.name;
      for (uint32_t d = 0; d < t.n_dims; ++d) EXPECT_EQ(t.ne[d], it->second[d]) << t.name;
    }
  }
}

TEST(GgufGolden, Imatrix) {
  GgufFile f = GgufFile::open(samq::test::shared_path("golden/anchors/refcode-32m-imatrix.gguf"));
  EXPECT_EQ(f.get_str("general.type"), "imatrix");
  EXPECT_GT(f.get_u32("imatrix.chunk_count"), 0u);
  EXPECT_EQ(f.get_u32("imatrix.chunk_size"), 512u);
  EXPECT_FALSE(f.get_arr_str("imatrix.datasets").empty());
  // ggml-formats.md §5.2: W.in_sum2 {ne0, 1} and W.counts {1, 1} per dense weight.
  int pairs = 0;
  for (const auto& t : f.tensors()) {
    const std::string& n = t.name;
    if (n.size() > 8 && n.ends_with(".in_sum2")) {
      const GgufTensorInfo& c = f.tensor(n.substr(0, n.size() - 8) + ".counts");
      EXPECT_EQ(t.type, GgmlType::F32);
      EXPECT_EQ(c.ne[0], 1);
      EXPECT_EQ(c.ne[1], t.ne[1]);
      ++pairs;
    }
  }
  EXPECT_EQ(pairs, 56);  // 7 matrices x 8 layers (quantize.imatrix.entries_count of the anchors)
  EXPECT_EQ(size_t(pairs) * 2, f.tensors().size());
}
