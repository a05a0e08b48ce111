// `samq synth` (see synth.h): plan the tensors, cut them into shards, stream each shard.
#include "export/synth.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <optional>
#include <regex>
#include <set>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "export/synth_weights.h"
#include "model/tokenizer.h"

namespace samq {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::vector<SynthShape>& synth_shapes() {
  static const std::vector<SynthShape> shapes = [] {
    std::vector<SynthShape> v;
    SynthShape l8;
    l8.like = "llama3-8b";
    l8.description = "Llama-3(.1)-8B: hidden 4096, ff 14336, 32 heads, 8 kv, 32 layers, vocab 128256";
    l8.hf_architecture = "LlamaForCausalLM";
    l8.model_type = "llama";
    l8.hidden = 4096, l8.ff = 14336, l8.heads = 32, l8.kv_heads = 8, l8.layers = 32;
    l8.vocab = 128256, l8.max_pos = 131072;
    l8.rope_theta = 500000.0, l8.rms_eps = 1e-5, l8.llama3_rope = true;
    v.push_back(l8);

    SynthShape l70 = l8;
    l70.like = "llama3-70b";
    l70.description = "Llama-3(.1)-70B: hidden 8192, ff 28672, 64 heads, 8 kv, 80 layers, vocab 128256";
    l70.hidden = 8192, l70.ff = 28672, l70.heads = 64, l70.kv_heads = 8, l70.layers = 80;
    v.push_back(l70);

    SynthShape q7;
    q7.like = "qwen2.5-7b";
    q7.description = "Qwen2.5-7B: hidden 3584, ff 18944, 28 heads, 4 kv, 28 layers, vocab 152064, q/k/v bias";
    q7.hf_architecture = "Qwen2ForCausalLM";
    q7.model_type = "qwen2";
    q7.hidden = 3584, q7.ff = 18944, q7.heads = 28, q7.kv_heads = 4, q7.layers = 28;
    q7.vocab = 152064, q7.max_pos = 131072;
    q7.rope_theta = 1000000.0, q7.rms_eps = 1e-6, q7.qkv_bias = true;
    v.push_back(q7);

    SynthShape t = l8;
    t.like = "tiny";
    t.description = "test shape, Llama-3 architecture: hidden 256, ff 704, 4 heads, 2 kv, head_dim 64, 2 layers, vocab 8448";
    t.hidden = 256, t.ff = 704, t.heads = 4, t.kv_heads = 2, t.head_dim = 64, t.layers = 2;
    t.vocab = 8448;  // > the reference tokenizer's 8192: exercises the padded vocabulary
    v.push_back(t);

    SynthShape td = t;
    td.like = "tiny-deep";
    td.description = "test shape, as tiny with 12 layers (an HF checkpoint lists blk.10 before blk.2)";
    td.layers = 12;
    v.push_back(td);

    SynthShape tq = q7;
    tq.like = "tiny-qwen2";
    tq.description = "test shape, Qwen2 architecture: hidden 256, ff 704, 4 heads, 2 kv, 2 layers, vocab 8448, q/k/v bias";
    tq.hidden = 256, tq.ff = 704, tq.heads = 4, tq.kv_heads = 2, tq.layers = 2;
    tq.vocab = 8448;
    v.push_back(tq);
    return v;
  }();
  return shapes;
}

const SynthShape& synth_shape(std::string_view like) {
  std::string names;
  for (const auto& s : synth_shapes()) {
    if (s.like == like) return s;
    names += (names.empty() ? "" : ", ") + s.like;
  }
  fail("--like: unknown shape \"{}\" (known: {})", like, names);
}

std::string synth_config_json(const SynthShape& s, int64_t layers, int32_t bos_id, int32_t eos_id) {
  json j;
  j["architectures"] = json::array({s.hf_architecture});
  j["model_type"] = s.model_type;
  j["attention_dropout"] = 0.0;
  j["bos_token_id"] = bos_id;
  j["eos_token_id"] = eos_id;
  j["hidden_act"] = "silu";
  j["hidden_size"] = s.hidden;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = s.ff;
  j["max_position_embeddings"] = s.max_pos;
  j["num_attention_heads"] = s.heads;
  j["num_hidden_layers"] = layers;
  j["num_key_value_heads"] = s.kv_heads;
  if (s.head_dim > 0) j["head_dim"] = s.head_dim;
  j["rms_norm_eps"] = s.rms_eps;
  j["rope_theta"] = s.rope_theta;
  if (s.llama3_rope)
    j["rope_scaling"] = {{"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192},
                         {"rope_type", "llama3"}};
  j["tie_word_embeddings"] = s.tied;
  j["torch_dtype"] = "bfloat16";
  j["use_cache"] = true;
  j["vocab_size"] = s.vocab;
  if (s.model_type == "llama") {
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
    j["pretraining_tp"] = 1;
  } else {  // qwen2
    j["max_window_layers"] = layers;
    j["sliding_window"] = s.max_pos;
    j["use_sliding_window"] = false;
  }
  return j.dump(2) + "\n";
}

uint64_t parse_byte_size(std::string_view text) {
  std::string t(text);
  size_t i = 0;
  while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.')) ++i;
  const std::string num = t.substr(0, i);
  std::string unit = t.substr(i);
  for (auto& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  double mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KB" || unit == "K") mult = 1e3;
  else if (unit == "MB" || unit == "M") mult = 1e6;
  else if (unit == "GB" || unit == "G") mult = 1e9;
  else if (unit == "KIB") mult = 1024.0;
  else if (unit == "MIB") mult = 1024.0 * 1024;
  else if (unit == "GIB") mult = 1024.0 * 1024 * 1024;
  char* end = nullptr;
  const double v = num.empty() ? -1 : std::strtod(num.c_str(), &end);
  if (mult == 0 || num.empty() || (end && *end) || !(v > 0) || v * mult > 1.8e19)
    fail("size \"{}\": expected a positive number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 5GB",
         text);
  return uint64_t(v * mult);
}

std::string find_reference_tokenizer() {
  std::vector<fs::path> tried;
  if (const char* s = std::getenv("SAMQ_SHARED_DIR"); s && *s) tried.push_back(fs::path(s) / "models/refcode-32m");
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) tried.push_back(exe.parent_path() / "../../shared/models/refcode-32m");
  tried.push_back(fs::path("../shared/models/refcode-32m"));
  std::string where;
  for (const auto& p : tried) {
    if (fs::exists(p / "tokenizer.json", ec)) return fs::weakly_canonical(p, ec).string();
    where += (where.empty() ? "" : ", ") + p.lexically_normal().string();
  }
  fail("the reference tokenizer (refcode-32m's tokenizer.json) was not found (looked in {}); pass --tokenizer DIR",
       where);
}

namespace {

enum class Kind { Embedding, Linear, Norm, Bias };

struct PlannedTensor {
  std::string name;
  std::vector<int64_t> shape;  // PyTorch order
  int64_t rows = 0, cols = 0;  // generator view: (1, n) for 1-D tensors
  Kind kind = Kind::Linear;
  uint64_t key = 0;
  int shard = 0;
  uint64_t offset = 0;  // within its shard's data buffer
  uint64_t bytes() const { return uint64_t(rows) * uint64_t(cols) * 2; }  // BF16
};

uint64_t name_key(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a of the name
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return synth::mix64(synth::mix64(seed) ^ h);
}

std::vector<PlannedTensor> plan_tensors(const SynthShape& s, int64_t layers, uint64_t seed) {
  std::vector<PlannedTensor> v;
  auto add = [&](std::string name, Kind kind, int64_t rows, int64_t cols) {
    PlannedTensor t;
    t.name = std::move(name);
    t.kind = kind;
    t.rows = rows;
    t.cols = cols;
    t.shape = rows == 1 && (kind == Kind::Norm || kind == Kind::Bias) ? std::vector<int64_t>{cols}
                                                                       : std::vector<int64_t>{rows, cols};
    t.key = name_key(seed, t.name);
    v.push_back(std::move(t));
  };
  const int64_t hd = s.head_size(), nq = s.heads * hd, nkv = s.kv_heads * hd;
  // HF state_dict order (save_pretrained fills shards in this order).
  add("model.embed_tokens.weight", Kind::Embedding, s.vocab, s.hidden);
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "self_attn.q_proj.weight", Kind::Linear, nq, s.hidden);
    if (s.qkv_bias) add(p + "self_attn.q_proj.bias", Kind::Bias, 1, nq);
    add(p + "self_attn.k_proj.weight", Kind::Linear, nkv, s.hidden);
    if (s.qkv_bias) add(p + "self_attn.k_proj.bias", Kind::Bias, 1, nkv);
    add(p + "self_attn.v_proj.weight", Kind::Linear, nkv, s.hidden);
    if (s.qkv_bias) add(p + "self_attn.v_proj.bias", Kind::Bias, 1, nkv);
    add(p + "self_attn.o_proj.weight", Kind::Linear, s.hidden, nq);
    add(p + "mlp.gate_proj.weight", Kind::Linear, s.ff, s.hidden);
    add(p + "mlp.up_proj.weight", Kind::Linear, s.ff, s.hidden);
    add(p + "mlp.down_proj.weight", Kind::Linear, s.hidden, s.ff);
    add(p + "input_layernorm.weight", Kind::Norm, 1, s.hidden);
    add(p + "post_attention_layernorm.weight", Kind::Norm, 1, s.hidden);
  }
  add("model.norm.weight", Kind::Norm, 1, s.hidden);
  if (!s.tied) add("lm_head.weight", Kind::Linear, s.vocab, s.hidden);
  return v;
}

std::string shard_name(int i, int n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", i + 1, n);
  return buf;
}

// The safetensors header of one shard: 8-byte length, JSON padded with spaces to a multiple of 8.
std::string shard_header(const std::vector<PlannedTensor>& ts, int shard, const std::string& like, uint64_t seed) {
  json j;
  j["__metadata__"] = {{"format", "pt"},
                       {"samq_synth", "random weights shaped like " + like + ", seed " + std::to_string(seed) +
                                          ": for scale and speed tests only"}};
  for (const auto& t : ts) {
    if (t.shard != shard) continue;
    j[t.name] = {{"dtype", "BF16"}, {"shape", t.shape}, {"data_offsets", {t.offset, t.offset + t.bytes()}}};
  }
  std::string h = j.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + h;
}

// Streams one tensor's BF16 bytes into f, slab by slab: generation of slab k+1 overlaps the
// write of slab k. `pending` carries the write in flight across calls; `bufs` the two slabs.
class SlabWriter {
 public:
  explicit SlabWriter(Progress& prog) : prog_(prog) {}
  ~SlabWriter() { abandon(); }
  // Waits for the write in flight, ignoring its outcome (error paths).
  void abandon() {
    if (pending_.valid()) pending_.wait();
    pending_ = {};
  }

  void write_tensor(AtomicFile& f, const PlannedTensor& t) {
    const int64_t nch = synth::n_chunks(t.rows, t.cols);
    const int64_t rpc = synth::rows_per_chunk(t.cols);
    const int64_t chunk_bytes = rpc * t.cols * 2;
    const int64_t per_slab = std::max<int64_t>(1, kSlabBytes / chunk_bytes);
    std::optional<synth::LinearGen> lin;
    std::optional<synth::NormGen> norm;
    if (t.kind == Kind::Linear) lin.emplace(t.rows, t.cols, t.key);
    if (t.kind == Kind::Norm) norm.emplace(t.cols, t.key);
    for (int64_t c0 = 0; c0 < nch; c0 += per_slab) {
      const int64_t c1 = std::min(nch, c0 + per_slab);
      const int64_t r0 = c0 * rpc, r1 = std::min(t.rows, c1 * rpc);
      const size_t n = size_t((r1 - r0) * t.cols * 2);
      std::vector<uint8_t>& buf = bufs_[cur_];
      buf.resize(n);
      switch (t.kind) {
        case Kind::Embedding: synth::fill_chunks(buf.data(), true, t.rows, t.cols, t.key, c0, c1, synth::EmbeddingGen{}); break;
        case Kind::Linear: synth::fill_chunks(buf.data(), true, t.rows, t.cols, t.key, c0, c1, *lin); break;
        case Kind::Norm: synth::fill_chunks(buf.data(), true, t.rows, t.cols, t.key, c0, c1, *norm); break;
        case Kind::Bias: synth::fill_chunks(buf.data(), true, t.rows, t.cols, t.key, c0, c1, synth::BiasGen{}); break;
      }
      drain();
      const uint8_t* p = buf.data();
      pending_ = std::async(std::launch::async, [&f, p, n] { f.write(p, n); });
      pending_bytes_ = n;
      cur_ ^= 1;
    }
  }
  // Waits for the write in flight (rethrowing its error) and counts it.
  void drain() {
    if (!pending_.valid()) return;
    pending_.get();
    done_ += pending_bytes_;
    pending_bytes_ = 0;
    prog_.set(int64_t(done_ / 1000000));
  }

 private:
  static constexpr int64_t kSlabBytes = int64_t(64) << 20;
  Progress& prog_;
  std::vector<uint8_t> bufs_[2];
  int cur_ = 0;
  std::future<void> pending_;
  size_t pending_bytes_ = 0;
  uint64_t done_ = 0;
};

void prepare_dir(const std::string& out_dir) {
  std::error_code ec;
  if (fs::exists(out_dir, ec) && !fs::is_directory(out_dir, ec))
    fail("-o {}: exists and is not a directory", out_dir);
  fs::create_directories(out_dir, ec);
  if (ec) fail("-o {}: cannot create the directory: {}", out_dir, ec.message());
  if (::access(out_dir.c_str(), W_OK | X_OK) != 0)
    fail("-o {}: the directory is not writable: {}", out_dir, std::strerror(errno));
}

void copy_file_atomic(const fs::path& from, const fs::path& to) { write_file_atomic(to.string(), read_file(from.string())); }

}  // namespace

SynthResult write_synth_checkpoint(const SynthOptions& opt, const std::string& out_dir) {
  const SynthShape& s = synth_shape(opt.like);
  const int64_t layers = opt.layers == 0 ? s.layers : opt.layers;
  if (layers < 1 || layers > s.layers)
    fail("--layers {}: out of range for {} (1..{}, its real layer count)", opt.layers, s.like, s.layers);
  if (opt.shard_bytes == 0) fail("--shard-size must be positive");

  // The reference tokenizer must load with the padded vocabulary before anything is written.
  const std::string tok_dir = opt.tokenizer_dir.empty() ? find_reference_tokenizer() : opt.tokenizer_dir;
  const fs::path tok(tok_dir);
  int32_t bos = -1, eos = -1;
  try {
    const Tokenizer t = Tokenizer::from_hf_dir(tok_dir, s.vocab);
    bos = t.bos();
    eos = t.eos();
  } catch (const Error& e) {
    fail("--tokenizer {}: {}", tok_dir, e.what());
  }

  prepare_dir(out_dir);
  const fs::path dir(out_dir);
  SynthResult r;
  r.like = s.like;
  r.layers = layers;

  auto tensors = plan_tensors(s, layers, opt.seed);
  // Shards, as transformers' save_pretrained cuts them: a new shard when the next tensor would
  // push the current one past the limit (a tensor larger than the limit gets a shard alone).
  int n_shards = 0;
  uint64_t cur = 0;
  for (auto& t : tensors) {
    if (n_shards == 0 || (cur > 0 && cur + t.bytes() > opt.shard_bytes)) {
      ++n_shards;
      cur = 0;
    }
    t.shard = n_shards - 1;
    t.offset = cur;
    cur += t.bytes();
    r.tensor_bytes += t.bytes();
    r.n_params += t.rows * t.cols;
  }
  r.n_tensors = int64_t(tensors.size());

  if (!opt.config_only) {
    std::vector<std::string> headers;
    uint64_t total = 0;
    for (int i = 0; i < n_shards; ++i) {
      headers.push_back(shard_header(tensors, i, s.like, opt.seed));
      total += headers.back().size();
    }
    total += r.tensor_bytes;
    Progress prog("synth " + s.like, int64_t((total + 999999) / 1000000), "MB");
    {
      SlabWriter w(prog);
      for (int i = 0; i < n_shards; ++i) {
        const std::string name = shard_name(i, n_shards);
        AtomicFile f((dir / name).string());
        try {
          f.write(headers[size_t(i)]);
          for (const auto& t : tensors)
            if (t.shard == i) w.write_tensor(f, t);
          w.drain();
        } catch (...) {
          w.abandon();  // no write may still use f when it is destroyed (and its temp file removed)
          throw;
        }
        f.commit();
        r.file_bytes += f.tell();
        r.files.push_back(name);
      }
    }
    prog.finish();

    json idx;
    idx["metadata"] = {{"total_size", r.tensor_bytes}, {"total_parameters", r.n_params}};
    json wm = json::object();
    for (const auto& t : tensors) wm[t.name] = shard_name(t.shard, n_shards);
    idx["weight_map"] = wm;
    write_file_atomic((dir / "model.safetensors.index.json").string(), idx.dump(2) + "\n");
    r.files.push_back("model.safetensors.index.json");

    // Shards of an earlier run with another shard count would be left unreferenced: remove them.
    const std::set<std::string> mine(r.files.begin(), r.files.end());
    static const std::regex shard_re(R"(model-\d{5}-of-\d{5}\.safetensors)");
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string n = e.path().filename().string();
      if ((std::regex_match(n, shard_re) && !mine.count(n)) || n == "model.safetensors") fs::remove(e.path(), ec);
    }
  }

  write_file_atomic((dir / "config.json").string(), synth_config_json(s, layers, bos, eos));
  r.files.push_back("config.json");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    std::error_code ec;
    if (!fs::exists(tok / f, ec)) continue;
    copy_file_atomic(tok / f, dir / f);
    r.files.push_back(f);
  }
  r.n_shards = opt.config_only ? 0 : n_shards;
  return r;
}

}  // namespace samq
