// samq convert against llama.cpp's converter: every tensor (name, type, dims, sha256 of the
// padded data) and every metadata value of the manifests in ../shared/golden, which were made
// by convert_hf_to_gguf.py. Long arrays are compared through the manifests' hash of Python's
// json.dumps(values, ensure_ascii=False).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/sha256.h"
#include "export/convert.h"
#include "export/source_model.h"
#include "format/gguf.h"
#include "model/tokenizer.h"

using namespace samq;
using nlohmann::json;

namespace {

// Python's json.dumps(s, ensure_ascii=False) for one string.
void py_json_string(const std::string& s, std::string& out) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += char(c);
    }
  }
  out += '"';
}

std::string py_json_float(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eni") == std::string::npos) s += ".0";
  return s;
}

// sha256 of json.dumps(values, ensure_ascii=False) of a GGUF array value.
std::string py_json_array_hash(const GgufValue& v) {
  std::string out = "[";
  const size_t n = v.size();
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ", ";
    switch (v.elem_type()) {
      case GgufType::STRING: py_json_string(v.get_arr_str()[i], out); break;
      case GgufType::FLOAT32: out += py_json_float(v.get_arr_f32()[i]); break;
      default: out += std::to_string(v.get_arr_int()[i]); break;
    }
  }
  out += "]";
  return sha256_hex(out.data(), out.size());
}

struct Diff {
  std::vector<std::string> keys, tensors;
};

// Compares `path` with a llama.cpp manifest. Keys in skip_keys are not compared.
Diff compare_with_manifest(const std::string& path, const json& m, const std::set<std::string>& skip_keys) {
  Diff d;
  const GgufFile f = GgufFile::open(path);
  for (auto it = m["metadata"].begin(); it != m["metadata"].end(); ++it) {
    const std::string& key = it.key();
    if (skip_keys.count(key)) continue;
    const GgufValue* v = f.find(key);
    if (!v) { d.keys.push_back(key + " (missing)"); continue; }
    const json& want = it.value();
    if (int(v->type()) != want["type"].get<int>()) { d.keys.push_back(key + " (type)"); continue; }
    const json& wv = want["value"];
    bool same = true;
    switch (v->type()) {
      case GgufType::STRING: same = v->get_str() == wv.get<std::string>(); break;
      case GgufType::FLOAT32: same = double(v->get_f32()) == wv.get<double>(); break;
      case GgufType::BOOL: same = v->get_bool() == wv.get<bool>(); break;
      case GgufType::ARRAY:
        same = int(v->elem_type()) == wv["array_type"].get<int>() && v->size() == wv["count"].get<size_t>() &&
               py_json_array_hash(*v) == wv["sha256_of_json_values"].get<std::string>();
        break;
      default: same = v->get_int() == wv.get<int64_t>(); break;
    }
    if (!same) d.keys.push_back(key);
  }
  const auto& ts = f.tensors();
  const auto& want = m["tensors"];
  if (ts.size() != want.size()) d.tensors.push_back(fmt::format("count {} != {}", ts.size(), want.size()));
  for (size_t i = 0; i < std::min(ts.size(), want.size()); ++i) {
    const auto& t = ts[i];
    const auto& w = want[i];
    std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
    const uint64_t padded = w["padded_bytes"].get<uint64_t>();
    std::string hash = "-";
    if (padded >= t.nbytes && t.data + padded <= f.base() + f.file_size()) hash = sha256_hex(t.data, padded);
    if (t.name != w["name"].get<std::string>() || int(t.type) != w["type"].get<int>() ||
        ne != w["ne"].get<std::vector<int64_t>>() || hash != w["sha256_padded"].get<std::string>())
      d.tensors.push_back(t.name);
  }
  return d;
}

json load_manifest(const std::string& rel) { return json::parse(read_file(test::shared_path(rel))); }

}  // namespace

TEST(Convert, RefcodeBf16IdenticalToLlamaCpp) {
  const std::string out = test::temp_dir() + "/ref-bf16.gguf";
  const auto src = open_source_model(test::shared_path("models/refcode-32m"));
  ConvertOptions opt;
  opt.type = GgmlType::BF16;
  opt.name = "Model";  // the name llama.cpp's converter derived for the golden file
  const ConvertResult r = convert_to_gguf(*src, out, opt);
  const json m = load_manifest("golden/refcode-32m-bf16.manifest.json");
  const Diff d = compare_with_manifest(out, m, {});
  EXPECT_TRUE(d.keys.empty()) << fmt::format("{}", fmt::join(d.keys, ", "));
  EXPECT_TRUE(d.tensors.empty()) << fmt::format("{}", fmt::join(d.tensors, ", "));
  // Same metadata bytes and layout: header size and file size equal llama.cpp's.
  EXPECT_EQ(r.data_offset, m["data_offset"].get<uint64_t>());
  EXPECT_EQ(r.file_bytes, m["file_bytes"].get<uint64_t>());
  EXPECT_EQ(std::filesystem::file_size(out), m["file_bytes"].get<uint64_t>());
}

TEST(Convert, RefmoeBf16IdenticalToLlamaCpp) {
  // qwen3moe: per-expert HF tensors (split across shards) stacked into 3-D ffn_*_exps tensors at
  // the converter's position, ffn_gate_inp kept F32, expert_* keys, "8x15M" size label.
  const std::string out = test::temp_dir() + "/refmoe-bf16.gguf";
  const auto src = open_source_model(test::shared_path("models/refmoe-31m"));
  ConvertOptions opt;
  opt.type = GgmlType::BF16;
  opt.name = "Model";
  const ConvertResult r = convert_to_gguf(*src, out, opt);
  const json m = load_manifest("golden/refmoe-31m-bf16.manifest.json");
  const Diff d = compare_with_manifest(out, m, {});
  EXPECT_TRUE(d.keys.empty()) << fmt::format("{}", fmt::join(d.keys, ", "));
  EXPECT_TRUE(d.tensors.empty()) << fmt::format("{}", fmt::join(d.tensors, ", "));
  EXPECT_EQ(r.data_offset, m["data_offset"].get<uint64_t>());
  EXPECT_EQ(r.file_bytes, m["file_bytes"].get<uint64_t>());
}

class ConvertArch : public ::testing::TestWithParam<const char*> {};

TEST_P(ConvertArch, F32TensorsAndKeysMatchLlamaCpp) {
  const std::string arch_dir = std::string("golden/archs/") + GetParam();
  const std::string out = test::temp_dir() + "/out.gguf";
  const auto src = open_source_model(test::shared_path(arch_dir));
  ConvertOptions opt;
  opt.type = GgmlType::F32;
  convert_to_gguf(*src, out, opt);
  const json m = load_manifest(arch_dir + "/llamacpp-f32.manifest.json");
  std::set<std::string> skip;
  // qwen2-tied-bias: llama.cpp's token arrays were shaped by transformers' Qwen2 tokenizer class.
  if (std::string(GetParam()) == "qwen2-tied-bias") skip = {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type"};
  const Diff d = compare_with_manifest(out, m, skip);
  EXPECT_TRUE(d.keys.empty()) << fmt::format("{}", fmt::join(d.keys, ", "));
  std::vector<std::string> bad = d.tensors;
  // Known: rope_freqs differs in one element by a few ulps (torch's SLEEF powf, see
  // convert_metadata.cpp); it is checked against a double-precision formula below instead.
  std::erase(bad, std::string("rope_freqs.weight"));
  EXPECT_TRUE(bad.empty()) << fmt::format("{}", fmt::join(bad, ", "));
  EXPECT_EQ(GgufFile::open(out).data_offset(), m["data_offset"].get<uint64_t>());
}

INSTANTIATE_TEST_SUITE_P(Archs, ConvertArch, ::testing::Values("llama3-ropescaled", "qwen2-tied-bias", "qwen3-qknorm"));

TEST(Convert, Llama3RopeFactorsMatchFormula) {
  const auto src = open_source_model(test::shared_path("golden/archs/llama3-ropescaled"));
  const int64_t i = src->find_tensor("rope_freqs.weight");
  ASSERT_EQ(i, 0) << "generated tensors come first, as in llama.cpp's file";
  std::vector<float> got(32);
  src->read_f32(size_t(i), got.data());
  // Independent double-precision evaluation of Llama 3.1's rule (theta 5e5, head_dim 64,
  // factor 8, low 1, high 4, original context 256).
  for (int k = 0; k < 32; ++k) {
    const double freq = 1.0 / std::pow(500000.0, 2.0 * k / 64.0);
    const double wl = 2 * M_PI / freq;
    double want;
    if (wl < 256.0 / 4) want = 1;
    else if (wl > 256.0 / 1) want = 8;
    else {
      const double s = (256.0 / wl - 1) / 3;
      want = 1 / ((1 - s) / 8 + s);
    }
    EXPECT_NEAR(got[size_t(k)], want, 1e-5 * want) << k;
  }
}

TEST(Convert, StreamsAndTypesFollowTheConverter) {
  const auto src = open_source_model(test::shared_path("golden/archs/qwen3-qknorm"));
  for (const auto& t : src->tensors()) {
    const GgmlType q = convert_tensor_type(t, GgmlType::Q8_0);
    if (t.n_dims == 1) EXPECT_EQ(q, GgmlType::F32) << t.name;
    else EXPECT_EQ(q, GgmlType::Q8_0) << t.name;
  }
  // Q8_0 output: every 2-D tensor quantized, the file readable, values close to the source.
  const std::string out = test::temp_dir() + "/q8.gguf";
  ConvertOptions opt;
  opt.type = GgmlType::Q8_0;
  convert_to_gguf(*src, out, opt);
  const auto q = open_source_model(out);
  ASSERT_EQ(q->tensors().size(), src->tensors().size());
  const int64_t i = src->find_tensor("blk.0.ffn_down.weight");
  ASSERT_GE(i, 0);
  const auto& t = src->tensors()[size_t(i)];
  EXPECT_EQ(q->tensors()[size_t(i)].source_type, GgmlType::Q8_0);
  std::vector<float> a(size_t(t.n_elements())), b(a.size());
  src->read_f32(size_t(i), a.data());
  q->read_f32(size_t(i), b.data());
  double num = 0, den = 0;
  for (size_t k = 0; k < a.size(); ++k) num += (a[k] - b[k]) * (a[k] - b[k]), den += a[k] * a[k];
  EXPECT_LT(std::sqrt(num / den), 0.01);
  EXPECT_EQ(GgufFile::open(out).get_u32("general.file_type"), 7u);
}

TEST(Convert, SourceModelGgufRoundTrip) {
  // Reading the converted file back through SourceModel gives the HF values exactly (bf16 is
  // exact for a bf16 checkpoint) and the same tokenizer.
  const std::string out = test::temp_dir() + "/q.gguf";
  const auto hf = open_source_model(test::shared_path("golden/archs/qwen2-tied-bias"));
  ConvertOptions opt;
  opt.type = GgmlType::BF16;
  convert_to_gguf(*hf, out, opt);
  const auto g = open_source_model(out);
  EXPECT_TRUE(g->is_gguf());
  EXPECT_EQ(g->hparams().n_vocab, hf->hparams().n_vocab);
  ASSERT_EQ(g->tensors().size(), hf->tensors().size());
  for (size_t i = 0; i < hf->tensors().size(); ++i) {
    const auto& t = hf->tensors()[i];
    EXPECT_EQ(g->tensors()[i].name, t.name);
    std::vector<float> a(size_t(t.n_elements())), b(a.size());
    hf->read_f32(i, a.data());
    g->read_f32(i, b.data());
    EXPECT_EQ(a, b) << t.name;
  }
  const std::string text = "def f(x):\n    return x + 1  # ok";
  EXPECT_EQ(g->tokenizer().encode(text, true, false), hf->tokenizer().encode(text, true, false));
  EXPECT_EQ(hf->identity_sha256().size(), 64u);
}

TEST(Convert, CliWritesFileAndRejectsBadInput) {
  const std::string dir = test::temp_dir();
  std::string out;
  const int rc = test::run_command(test::samq_binary() + " -q convert " + test::shared_path("golden/archs/qwen3-qknorm") +
                                       " -o " + dir + "/x.gguf --type f16",
                                   &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(std::filesystem::exists(dir + "/x.gguf"));
  EXPECT_EQ(GgufFile::open(dir + "/x.gguf").get_u32("general.file_type"), 1u);
  // A directory without config.json: a clear error naming it, and no output file.
  const int rc2 = test::run_command(test::samq_binary() + " convert " + dir + " -o " + dir + "/y.gguf", &out);
  EXPECT_NE(rc2, 0);
  EXPECT_NE(out.find("config.json"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/y.gguf"));
}
