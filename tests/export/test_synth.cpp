// `samq synth`: the published shapes in config.json (--config-only, no weights), and on the small
// test shapes (--like tiny / tiny-qwen2, ~12 MB): the checkpoint loads and runs, inspect reports
// its shapes, the index is consistent, the weights have the specified statistics, and the bytes
// depend on the seed only (not on the thread count).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "core/fp16.h"
#include "export/synth.h"
#include "format/hparams.h"
#include "format/safetensors.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/tokenizer.h"

using namespace samq;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string ref_dir() { return test::shared_path("models/refcode-32m"); }

// Runs `samq synth ARGS`; returns the exit code, output in *out.
int synth_cli(const std::string& args, std::string* out = nullptr) {
  std::string o;
  const int rc = test::run_command(test::samq_binary() + " -q synth --tokenizer " + ref_dir() + " " + args, &o);
  if (out) *out = o;
  return rc;
}

std::string slurp(const fs::path& p) { return read_file(p.string()); }

// All files of a directory (name -> bytes).
std::map<std::string, std::string> dir_bytes(const fs::path& d) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::directory_iterator(d)) m[e.path().filename().string()] = slurp(e.path());
  return m;
}

// The tiny checkpoint, written once for the tests that only read it.
const std::string& tiny_dir() {
  static const std::string d = [] {
    const std::string dir = test::temp_dir() + "/tiny";
    std::string out;
    const int rc = synth_cli("--like tiny --seed 7 --shard-size 3MB -o " + dir, &out);
    EXPECT_EQ(rc, 0) << out;
    return dir;
  }();
  return d;
}

std::vector<float> rows_f32(const StTensorView& t) {
  std::vector<float> v(size_t(t.n_elements()));
  to_f32(t, v.data());
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

TEST(Synth, HelpSaysScaleAndSpeedOnly) {
  std::string out;
  ASSERT_EQ(test::run_command(test::samq_binary() + " synth --help", &out), 0) << out;
  EXPECT_NE(out.find("scale and speed tests only"), std::string::npos) << out;
  EXPECT_NE(out.find("quality figures"), std::string::npos) << out;
  EXPECT_NE(out.find("trained models only"), std::string::npos) << out;
  EXPECT_NE(out.find("vocab_size is the target model's"), std::string::npos) << out;
  for (const char* like : {"llama3-8b", "llama3-70b", "qwen2.5-7b", "tiny"}) EXPECT_NE(out.find(like), std::string::npos);
}

// config.json of the real shapes, field by field (Llama-3.1-8B/70B's and Qwen2.5-7B's published
// configs), written without weights.
TEST(Synth, ConfigOnlyHasThePublishedShapes) {
  struct Want {
    const char* like;
    const char* arch;
    int64_t hidden, ff, heads, kv, layers, vocab;
    double theta, eps;
    bool llama3;
  };
  const Want wants[] = {
      {"llama3-8b", "LlamaForCausalLM", 4096, 14336, 32, 8, 32, 128256, 500000.0, 1e-5, true},
      {"llama3-70b", "LlamaForCausalLM", 8192, 28672, 64, 8, 80, 128256, 500000.0, 1e-5, true},
      {"qwen2.5-7b", "Qwen2ForCausalLM", 3584, 18944, 28, 4, 28, 152064, 1000000.0, 1e-6, false},
  };
  const std::string base = test::temp_dir();
  for (const auto& w : wants) {
    SCOPED_TRACE(w.like);
    const std::string dir = base + "/" + w.like;
    std::string out;
    ASSERT_EQ(synth_cli(std::string("--like ") + w.like + " --config-only -o " + dir, &out), 0) << out;
    EXPECT_FALSE(fs::exists(fs::path(dir) / "model.safetensors.index.json"));
    const json j = json::parse(slurp(fs::path(dir) / "config.json"));
    EXPECT_EQ(j["architectures"], json::array({w.arch}));
    EXPECT_EQ(j["hidden_size"], w.hidden);
    EXPECT_EQ(j["intermediate_size"], w.ff);
    EXPECT_EQ(j["num_attention_heads"], w.heads);
    EXPECT_EQ(j["num_key_value_heads"], w.kv);
    EXPECT_EQ(j["num_hidden_layers"], w.layers);
    EXPECT_EQ(j["vocab_size"], w.vocab);
    EXPECT_EQ(j["rope_theta"].get<double>(), w.theta);
    EXPECT_EQ(j["rms_norm_eps"].get<double>(), w.eps);
    EXPECT_EQ(j["tie_word_embeddings"], false);
    EXPECT_EQ(j["torch_dtype"], "bfloat16");
    EXPECT_FALSE(j.contains("head_dim"));  // none of the three real configs has it
    if (w.llama3) {
      const json& rs = j.at("rope_scaling");
      EXPECT_EQ(rs["rope_type"], "llama3");
      EXPECT_EQ(rs["factor"].get<double>(), 8.0);
      EXPECT_EQ(rs["low_freq_factor"].get<double>(), 1.0);
      EXPECT_EQ(rs["high_freq_factor"].get<double>(), 4.0);
      EXPECT_EQ(rs["original_max_position_embeddings"], 8192);
      EXPECT_EQ(j["attention_bias"], false);
    } else {
      EXPECT_FALSE(j.contains("rope_scaling"));
    }
    // samq reads it as the real model.
    const ModelHparams h = hparams_from_hf_config(dir);
    EXPECT_EQ(h.n_embd, w.hidden);
    EXPECT_EQ(h.n_layer, w.layers);
    EXPECT_EQ(h.n_vocab, w.vocab);
    EXPECT_EQ(h.head_dim, 128);
    EXPECT_EQ(h.attn_bias, !w.llama3);  // qwen2: q/k/v biases
    EXPECT_EQ(h.rope_scaling, w.llama3 ? RopeScalingType::Llama3 : RopeScalingType::None);
    // The reference tokenizer, byte for byte, loadable with the target's (padded) vocabulary.
    EXPECT_EQ(slurp(fs::path(dir) / "tokenizer.json"), slurp(fs::path(ref_dir()) / "tokenizer.json"));
    EXPECT_EQ(slurp(fs::path(dir) / "tokenizer_config.json"), slurp(fs::path(ref_dir()) / "tokenizer_config.json"));
    const Tokenizer tok = Tokenizer::from_hf_dir(dir, h.n_vocab);
    EXPECT_EQ(tok.n_vocab(), w.vocab);
    EXPECT_EQ(tok.bos(), h.bos_id);
    EXPECT_FALSE(tok.encode("def main():\n    return 42\n", true, false).empty());
  }
  std::string out;
  ASSERT_EQ(synth_cli("--like llama3-70b --layers 8 --config-only -o " + base + "/l70-8", &out), 0) << out;
  EXPECT_EQ(json::parse(slurp(fs::path(base) / "l70-8/config.json"))["num_hidden_layers"], 8);
}

TEST(Synth, ClearErrors) {
  const std::string base = test::temp_dir();
  std::string out;
  EXPECT_NE(synth_cli("--like llama3-13b -o " + base + "/x", &out), 0);
  EXPECT_NE(out.find("unknown shape \"llama3-13b\""), std::string::npos) << out;
  EXPECT_NE(out.find("llama3-70b"), std::string::npos) << out;
  EXPECT_NE(synth_cli("--like tiny --layers 3 -o " + base + "/x", &out), 0);
  EXPECT_NE(out.find("--layers 3: out of range for tiny (1..2"), std::string::npos) << out;
  EXPECT_NE(synth_cli("--like llama3-8b --layers 0 -o " + base + "/x", &out), 0);
  EXPECT_NE(out.find("--layers 0"), std::string::npos) << out;
  EXPECT_NE(synth_cli("--like tiny --shard-size 5XB -o " + base + "/x", &out), 0);
  EXPECT_NE(out.find("--shard-size"), std::string::npos) << out;
  write_file_atomic(base + "/afile", "x");
  EXPECT_NE(synth_cli("--like tiny -o " + base + "/afile", &out), 0);
  EXPECT_NE(out.find("not a directory"), std::string::npos) << out;
  EXPECT_NE(synth_cli("--like tiny -o " + base + "/afile/sub", &out), 0);
  EXPECT_NE(out.find("cannot create the directory"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(base + "/x"));  // nothing written on a bad option
}

// The index names every tensor once, in the file that holds it; shards respect --shard-size.
TEST(Synth, ShardsAndIndexAreConsistent) {
  const fs::path d = tiny_dir();
  const json idx = json::parse(slurp(d / "model.safetensors.index.json"));
  const auto& wm = idx.at("weight_map");
  std::set<std::string> files;
  for (auto it = wm.begin(); it != wm.end(); ++it) files.insert(it.value().get<std::string>());
  ASSERT_GE(files.size(), 3u);  // ~12 MB in 3 MB shards
  const std::regex re(R"(model-(\d{5})-of-(\d{5})\.safetensors)");
  int k = 0;
  uint64_t data = 0;
  size_t n = 0;
  for (const auto& f : files) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(f, m, re)) << f;
    EXPECT_EQ(std::stoi(m[1]), ++k);
    EXPECT_EQ(std::stoul(m[2]), files.size());
    const std::string bytes = slurp(d / f);
    std::map<std::string, std::string> md;
    const auto ts = parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), f, &md);
    EXPECT_EQ(md["format"], "pt");
    uint64_t header = 0;
    for (int i = 0; i < 8; ++i) header |= uint64_t(uint8_t(bytes[size_t(i)])) << (8 * i);
    EXPECT_EQ(header % 8, 0u);
    uint64_t in_shard = 0;
    for (const auto& t : ts) {
      EXPECT_EQ(wm.at(t.name), f) << t.name;
      EXPECT_EQ(t.dtype, StDtype::BF16);
      in_shard += t.nbytes;
      ++n;
    }
    EXPECT_EQ(8 + header + in_shard, bytes.size()) << f;  // no gaps
    EXPECT_TRUE(in_shard <= 3000000 || ts.size() == 1) << f;
    data += in_shard;
  }
  EXPECT_EQ(n, wm.size());
  EXPECT_EQ(idx["metadata"]["total_size"], data);
  EXPECT_EQ(SafetensorsModel::open(d.string()).tensors().size(), wm.size());  // samq's own checks
  for (const auto& e : fs::directory_iterator(d))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "left over: " << e.path();
}

TEST(Synth, InspectReportsTheShapes) {
  std::string out;
  ASSERT_EQ(test::run_command(test::samq_binary() + " inspect " + tiny_dir() + " --json 2>/dev/null", &out), 0) << out;
  const json j = json::parse(out);
  const json& h = j.at("hparams");
  EXPECT_EQ(h["arch"], "llama");
  EXPECT_EQ(h["n_embd"], 256);
  EXPECT_EQ(h["n_ff"], 704);
  EXPECT_EQ(h["n_layer"], 2);
  EXPECT_EQ(h["n_head"], 4);
  EXPECT_EQ(h["n_head_kv"], 2);
  EXPECT_EQ(h["head_dim"], 64);
  EXPECT_EQ(h["n_vocab"], 8448);
  EXPECT_EQ(h["rope_scaling"], "llama3");
  EXPECT_EQ(h["source_dtype"], "bf16");
  std::map<std::string, json> shape;
  for (const auto& t : j.at("tensors")) shape[t["name"]] = t["shape"];
  EXPECT_EQ(shape.size(), 1u + 2 * 9 + 2);
  EXPECT_EQ(shape["model.embed_tokens.weight"], json::array({8448, 256}));
  EXPECT_EQ(shape["lm_head.weight"], json::array({8448, 256}));
  EXPECT_EQ(shape["model.layers.1.self_attn.q_proj.weight"], json::array({256, 256}));
  EXPECT_EQ(shape["model.layers.1.self_attn.k_proj.weight"], json::array({128, 256}));
  EXPECT_EQ(shape["model.layers.1.mlp.down_proj.weight"], json::array({256, 704}));
  EXPECT_EQ(shape["model.layers.0.input_layernorm.weight"], json::array({256}));
  const int64_t per_layer = 256 * 256 * 2 + 128 * 256 * 2 + 3 * 704 * 256 + 2 * 256;
  EXPECT_EQ(j["totals"]["params"], 2 * 8448 * 256 + 2 * per_layer + 256);
}

// samq loads the checkpoint (padded tokenizer included) and the forward pass gives finite,
// non-degenerate logits; tiny-qwen2 exercises the q/k/v biases.
TEST(Synth, LoadsTokenizesAndRuns) {
  const std::string qdir = test::temp_dir() + "/tiny-qwen2";
  std::string out;
  ASSERT_EQ(synth_cli("--like tiny-qwen2 --layers 1 -o " + qdir, &out), 0) << out;
  for (const std::string& dir : {tiny_dir(), qdir}) {
    SCOPED_TRACE(dir);
    auto m = Model::load(dir);
    EXPECT_EQ(m->hparams.n_vocab, 8448);
    const Tokenizer tok = load_tokenizer(*m);
    EXPECT_EQ(tok.n_vocab(), 8448);
    const auto ids = tok.encode("for i in range(10):\n    print(i)\n", true, false);
    ASSERT_GT(ids.size(), 4u);
    for (int32_t id : ids) EXPECT_LT(id, 8192);  // the reference tokenizer's own tokens
    const std::vector<float> logits = forward_logits(*m, cpu_ops(), ids);
    ASSERT_EQ(logits.size(), ids.size() * 8448);
    double sum2 = 0;
    for (float x : logits) {
      ASSERT_TRUE(std::isfinite(x));
      sum2 += double(x) * x;
    }
    const double rms = std::sqrt(sum2 / double(logits.size()));
    EXPECT_GT(rms, 1e-3);
    EXPECT_LT(rms, 1e3);
  }
  EXPECT_TRUE(Model::load(qdir)->hparams.attn_bias);
}

// Per-row scales (log-normal, sigma 0.25), outlier input columns (x6, max(1, cols/1024) of
// them), norm weights ~1 with a few x4 channels, embedding std 0.02, biases std 0.05.
TEST(Synth, WeightStatisticsAreAsSpecified) {
  const SafetensorsModel st = SafetensorsModel::open(tiny_dir());
  {  // lm_head: 8448 rows of 256 columns
    const StTensorView& t = st.get("lm_head.weight");
    const auto v = rows_f32(t);
    const int64_t R = t.rows(), C = t.cols();
    std::vector<double> col2(size_t(C), 0.0);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) col2[size_t(c)] += double(v[size_t(r * C + c)]) * v[size_t(r * C + c)];
    std::vector<double> col_rms;
    for (double s : col2) col_rms.push_back(std::sqrt(s / double(R)));
    const double med = median(col_rms);
    // Median column RMS: E[row_scale^2]^(1/2) / sqrt(256) = exp(0.25^2) / 16.
    EXPECT_NEAR(med, std::exp(0.0625) / 16, 0.06 / 16);
    int outliers = 0;
    std::vector<bool> out_col(size_t(C), false);
    for (int64_t c = 0; c < C; ++c)
      if (col_rms[size_t(c)] > 3 * med) {
        ++outliers;
        out_col[size_t(c)] = true;
        EXPECT_NEAR(col_rms[size_t(c)] / med, 6.0, 0.6);
      }
    // Row RMS over the ordinary columns: log-normal with sigma 0.25 (plus ~0.044 of sampling
    // noise over 255 values).
    std::vector<double> log_row;
    for (int64_t r = 0; r < R; ++r) {
      double s = 0;
      int n = 0;
      for (int64_t c = 0; c < C; ++c)
        if (!out_col[size_t(c)]) s += double(v[size_t(r * C + c)]) * v[size_t(r * C + c)], ++n;
      log_row.push_back(0.5 * std::log(s / n));
    }
    double mean = 0, var = 0;
    for (double x : log_row) mean += x / double(R);
    for (double x : log_row) var += (x - mean) * (x - mean) / double(R - 1);
    EXPECT_NEAR(std::sqrt(var), std::sqrt(0.0625 + 1.0 / 510), 0.02);
    EXPECT_EQ(outliers, 1);  // max(1, 256 / 1024)
  }
  {  // down_proj (256, 704): its 704 input columns hold one outlier too
    const StTensorView& t = st.get("model.layers.0.mlp.down_proj.weight");
    const auto v = rows_f32(t);
    std::vector<double> col(size_t(t.cols()), 0.0);
    for (int64_t r = 0; r < t.rows(); ++r)
      for (int64_t c = 0; c < t.cols(); ++c) col[size_t(c)] += double(v[size_t(r * t.cols() + c)]) * v[size_t(r * t.cols() + c)];
    const double med = median(col);
    EXPECT_EQ(std::count_if(col.begin(), col.end(), [&](double c) { return c > 9 * med; }), 1);
  }
  for (const char* name : {"model.layers.0.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight",
                           "model.norm.weight"}) {
    SCOPED_TRACE(name);
    const auto v = rows_f32(st.get(name));
    ASSERT_EQ(v.size(), 256u);
    int boosted = 0;
    double s = 0;
    for (float x : v) {
      EXPECT_GT(x, 0.4f);
      if (x > 2.5f) ++boosted;
      else s += x;
    }
    EXPECT_EQ(boosted, 1);  // max(1, 256 / 512)
    EXPECT_NEAR(s / double(256 - boosted), 1.0, 0.03);
  }
  {
    const auto v = rows_f32(st.get("model.embed_tokens.weight"));
    double s2 = 0, s = 0;
    for (float x : v) s += x, s2 += double(x) * x;
    EXPECT_NEAR(s / double(v.size()), 0.0, 1e-4);
    EXPECT_NEAR(std::sqrt(s2 / double(v.size())), 0.02, 0.001);
  }
}

// Same seed -> the same bytes, whatever the thread count; another seed -> other weights;
// --layers N shares its layers with the full model; a rerun with other shards leaves no stale one.
TEST(Synth, DeterministicForASeedAndAnyThreadCount) {
  const std::string base = test::temp_dir();
  std::string out;
  auto run = [&](const std::string& threads, const std::string& args, const std::string& dir) {
    const int rc = test::run_command(test::samq_binary() + " -q -t " + threads + " synth --tokenizer " + ref_dir() +
                                         " " + args + " -o " + base + "/" + dir,
                                     &out);
    EXPECT_EQ(rc, 0) << out;
    return dir_bytes(base + "/" + dir);
  };
  const auto a = dir_bytes(tiny_dir());  // written with all threads
  const auto b = run("1", "--like tiny --seed 7 --shard-size 3MB", "t1");
  const auto c = run("3", "--like tiny --seed 7 --shard-size 3MB", "t3");
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a == b);
  EXPECT_TRUE(a == c);
  const SafetensorsModel s7 = SafetensorsModel::open(tiny_dir());
  run("2", "--like tiny --seed 8 --layers 1", "s8");
  run("2", "--like tiny --seed 7 --layers 1", "s7l1");
  const SafetensorsModel s8 = SafetensorsModel::open(base + "/s8"), s7l1 = SafetensorsModel::open(base + "/s7l1");
  EXPECT_EQ(s7l1.tensors().size(), 1u + 9 + 2);
  for (const auto& t : s7l1.tensors()) {
    SCOPED_TRACE(t.name);
    const StTensorView& full = s7.get(t.name);
    ASSERT_EQ(full.nbytes, t.nbytes);
    EXPECT_EQ(std::memcmp(full.data, t.data, t.nbytes), 0);  // a tensor depends on (seed, name, shape)
    const StTensorView& other = s8.get(t.name);
    EXPECT_NE(std::memcmp(other.data, t.data, t.nbytes), 0);
  }
  // Rewrite t1 in one shard: the 3 MB shards of the first run are removed.
  run("2", "--like tiny --seed 7", "t1");
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(base + "/t1")) names.insert(e.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"config.json", "model-00001-of-00001.safetensors",
                                          "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"}));
}
