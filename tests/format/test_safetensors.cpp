// safetensors: the reference model (6 shards + index) and the tiny arch checkpoints, checked
// against llama.cpp's conversion manifests (sha256 of tensor bytes that llama.cpp's converter
// copies unchanged or widens to f32); malformed headers built by hand are rejected.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error_text.h"
#include "common/test_env.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/sha256.h"
#include "format/safetensors.h"

using namespace samq;
using json = nlohmann::json;

namespace {

json manifest(const std::string& rel) { return json::parse(read_file(samq::test::shared_path(rel))); }

std::string manifest_sha(const json& m, const std::string& gguf_name) {
  for (const auto& t : m["tensors"])
    if (t["name"] == gguf_name) return t["sha256_padded"];
  return "<missing>";
}

// A safetensors image from a header JSON text and a data buffer.
std::vector<uint8_t> st_image(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b(8);
  const uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

std::string error_of(const std::vector<uint8_t>& b) {
  return samq::test::error_text([&] { parse_safetensors(b.data(), b.size(), "t.safetensors"); });
}

#define EXPECT_REJECTED(bytes, ...) SAMQ_EXPECT_MESSAGE_HAS(error_of(bytes), __VA_ARGS__)

}  // namespace

TEST(Safetensors, ReferenceModelShards) {
  SafetensorsModel m = SafetensorsModel::open(samq::test::shared_path("models/refcode-32m"));
  EXPECT_EQ(m.files().size(), 6u);
  ASSERT_EQ(m.tensors().size(), 75u);  // 8 layers x 9 + embed + norm + lm_head
  int64_t params = 0;
  for (const auto& t : m.tensors()) {
    EXPECT_EQ(t.dtype, StDtype::BF16) << t.name;
    params += t.n_elements();
  }
  EXPECT_EQ(params, 32514560);  // docs/anchors.md
  const StTensorView& emb = m.get("model.embed_tokens.weight");
  EXPECT_EQ(emb.shape, (std::vector<int64_t>{8192, 512}));
  EXPECT_EQ(emb.rows(), 8192);
  EXPECT_EQ(emb.cols(), 512);
  EXPECT_EQ(m.get("model.layers.3.self_attn.k_proj.weight").shape, (std::vector<int64_t>{128, 512}));
  EXPECT_EQ(m.get("model.layers.7.mlp.down_proj.weight").shape, (std::vector<int64_t>{512, 1536}));
  EXPECT_EQ(m.find("nope"), nullptr);
  EXPECT_THROW(m.get("nope"), Error);

  // llama.cpp's BF16 conversion copies these bytes unchanged (no q/k permutation involved).
  const json man = manifest("golden/refcode-32m-bf16.manifest.json");
  const std::pair<const char*, const char*> same[] = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"lm_head.weight", "output.weight"},
      {"model.layers.0.mlp.gate_proj.weight", "blk.0.ffn_gate.weight"},
      {"model.layers.5.mlp.down_proj.weight", "blk.5.ffn_down.weight"},
      {"model.layers.2.self_attn.v_proj.weight", "blk.2.attn_v.weight"},
  };
  for (auto [hf, gg] : same) {
    const StTensorView& t = m.get(hf);
    ASSERT_EQ(t.nbytes % 32, 0u);  // no GGUF padding in these
    EXPECT_EQ(sha256_hex(t.data, t.nbytes), manifest_sha(man, gg)) << hf;
  }
}

// to_f32 of F16/BF16/F32 sources must equal llama.cpp's --outtype f32 conversion bit for bit.
TEST(Safetensors, ArchFixturesWidenLikeLlamaCpp) {
  struct Case {
    const char* dir;
    StDtype dtype;
  };
  for (auto c : {Case{"llama3-ropescaled", StDtype::F16}, Case{"qwen2-tied-bias", StDtype::BF16},
                 Case{"qwen3-qknorm", StDtype::F32}}) {
    const std::string d = samq::test::shared_path(std::string("golden/archs/") + c.dir);
    SafetensorsModel m = SafetensorsModel::open(d);
    const json man = json::parse(read_file(d + "/llamacpp-f32.manifest.json"));
    const StTensorView& emb = m.get("model.embed_tokens.weight");
    EXPECT_EQ(emb.dtype, c.dtype) << c.dir;
    std::vector<float> f(size_t(emb.n_elements()));
    to_f32(emb, f.data());
    EXPECT_EQ(sha256_hex(f.data(), f.size() * 4), manifest_sha(man, "token_embd.weight")) << c.dir;
    const StTensorView& norm = m.get("model.layers.1.post_attention_layernorm.weight");
    std::vector<float> n(size_t(norm.n_elements()));
    to_f32(norm, n.data());
    EXPECT_EQ(sha256_hex(n.data(), n.size() * 4), manifest_sha(man, "blk.1.ffn_norm.weight")) << c.dir;
    // Row access agrees with the whole-tensor conversion.
    std::vector<float> row(size_t(emb.cols()));
    row_to_f32(emb, 77, row.data());
    EXPECT_EQ(std::memcmp(row.data(), f.data() + 77 * emb.cols(), row.size() * 4), 0);
    EXPECT_THROW(row_to_f32(emb, emb.rows(), row.data()), Error);
  }
  // qwen2: vocab padded to 8256 rows; q/k/v biases present.
  SafetensorsModel q2 = SafetensorsModel::open(samq::test::shared_path("golden/archs/qwen2-tied-bias/model.safetensors"));
  EXPECT_EQ(q2.get("model.embed_tokens.weight").rows(), 8256);
  EXPECT_NE(q2.find("model.layers.0.self_attn.q_proj.bias"), nullptr);
  EXPECT_EQ(q2.find("lm_head.weight"), nullptr);
}

TEST(Safetensors, WellFormedHandMade) {
  // Two F16 tensors and a scalar F32, declared out of data order.
  std::vector<uint8_t> data(4 + 6 * 2 + 2 * 2);
  const uint16_t h[] = {f32_to_fp16(1.0f), f32_to_fp16(-2.0f), f32_to_fp16(0.5f), 0, 0, 0};
  std::memcpy(data.data() + 4, h, 12);
  const float s = 3.25f;
  std::memcpy(data.data(), &s, 4);
  const std::string hdr =
      R"({"b":{"dtype":"F16","shape":[2,3],"data_offsets":[4,16]},"__metadata__":{"format":"pt"},)"
      R"("a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"c":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]}})";
  auto img = st_image(hdr, data);
  std::map<std::string, std::string> md;
  auto ts = parse_safetensors(img.data(), img.size(), "t.safetensors", &md);
  ASSERT_EQ(ts.size(), 3u);
  EXPECT_EQ(ts[0].name, "a");
  EXPECT_EQ(ts[1].name, "b");
  EXPECT_EQ(md["format"], "pt");
  float a;
  to_f32(ts[0], &a);
  EXPECT_EQ(a, 3.25f);
  float b[6];
  to_f32(ts[1], b);
  EXPECT_EQ(b[0], 1.0f);
  EXPECT_EQ(b[1], -2.0f);
  EXPECT_EQ(b[2], 0.5f);
  float row[3];
  row_to_f32(ts[1], 1, row);
  EXPECT_EQ(row[0], 0.0f);
}

TEST(Safetensors, MalformedRejected) {
  std::vector<uint8_t> d8(8);
  EXPECT_REJECTED(std::vector<uint8_t>(5), "truncated", "header length");
  {
    auto img = st_image("{}", {});
    const uint64_t big = 1000;
    std::memcpy(img.data(), &big, 8);
    EXPECT_REJECTED(img, "header length", "1000");
  }
  EXPECT_REJECTED(st_image("{\"a\":", {}), "header JSON", "does not parse");
  EXPECT_REJECTED(st_image("[1,2]", {}), "not an object");
  EXPECT_REJECTED(st_image(R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", d8), "tensor 'w'",
                  "dtype I64", "t.safetensors", "not supported");
  EXPECT_REJECTED(st_image(R"({"w":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", d8), "F8_E4M3");
  EXPECT_REJECTED(st_image(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", d8), "tensor 'w'", "dtype");
  EXPECT_REJECTED(st_image(R"({"w":{"dtype":"F32","shape":"x","data_offsets":[0,4]}})", d8), "shape");
  EXPECT_REJECTED(st_image(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", d8), "shape entry");
  EXPECT_REJECTED(st_image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", d8), "data_offsets");
  EXPECT_REJECTED(st_image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", d8), "outside");
  EXPECT_REJECTED(st_image(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8), "outside",
                  "8 bytes");
  EXPECT_REJECTED(st_image(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8), "needs 12");
  EXPECT_REJECTED(
      st_image(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})", d8),
      "more than the file holds");
  EXPECT_REJECTED(st_image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"F16","shape":[2],"data_offsets":[2,6]}})",
                           d8),
                  "overlap", "'a'", "'b'");
  // An empty tensor between two overlapping ones does not hide the overlap.
  EXPECT_REJECTED(st_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("e":{"dtype":"F32","shape":[0],"data_offsets":[2,2]},)"
                           R"("b":{"dtype":"F16","shape":[1],"data_offsets":[4,6]}})",
                           d8),
                  "overlap", "'a'", "'b'");
  EXPECT_REJECTED(st_image(R"({"__metadata__":{"k":1}})", {}), "__metadata__");
}

TEST(Safetensors, ShardedIndexErrors) {
  const std::string dir = samq::test::temp_dir();
  std::vector<uint8_t> d8(8);
  auto img = st_image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d8);
  write_file_atomic(dir + "/s1.safetensors", std::string(img.begin(), img.end()));
  write_file_atomic(dir + "/model.safetensors.index.json", R"({"weight_map":{"w":"s1.safetensors"}})");
  SafetensorsModel ok = SafetensorsModel::open(dir);
  EXPECT_EQ(ok.tensors().size(), 1u);
  EXPECT_EQ(ok.total_bytes(), 8u);

  write_file_atomic(dir + "/model.safetensors.index.json",
                    R"({"weight_map":{"w":"s1.safetensors","missing":"s1.safetensors"}})");
  try {
    SafetensorsModel::open(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'missing'"), std::string::npos) << e.what();
  }
  write_file_atomic(dir + "/model.safetensors.index.json", R"({"weight_map":{"w":"../etc/passwd"}})");
  EXPECT_THROW(SafetensorsModel::open(dir), Error);
  write_file_atomic(dir + "/model.safetensors.index.json", R"({"weight_map":{"w":"nofile.safetensors"}})");
  EXPECT_THROW(SafetensorsModel::open(dir), Error);
  write_file_atomic(dir + "/model.safetensors.index.json", R"({"metadata":{}})");
  EXPECT_THROW(SafetensorsModel::open(dir), Error);
  const std::string empty = samq::test::temp_dir();
  EXPECT_THROW(SafetensorsModel::open(empty), Error);
}
