// Source models: HF directories (config.json + safetensors + tokenizer.json) and GGUF files,
// both presented as GGUF-named tensors (see source_model.h).
#include "export/source_model.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

#include <sys/mman.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/mapped_file.h"
#include "core/sha256.h"
#include "export/convert_metadata.h"
#include "format/safetensors.h"
#include "model/tensor_names.h"
#include "model/tokenizer.h"
#include "quant/llama_ftype.h"
#include "quant/quantize.h"

namespace samq {

uint32_t llama_ftype_of(GgmlType t) {
  if (const auto f = llama_ftype_for(t)) return *f;
  fail("ggml type {} has no llama.cpp file type", ggml_type_name(t));
}

GgmlType convert_tensor_type(const SourceTensor& t, GgmlType out) {
  if (t.generated || keeps_f32(t.name, int(t.n_dims))) return GgmlType::F32;
  if (out == GgmlType::F32 || out == GgmlType::F16 || out == GgmlType::BF16) return out;
  const auto& info = ggml_type_info(out);
  if (t.cols() % info.block_size != 0) return GgmlType::F16;  // the converter's fallback
  return out;
}

int64_t SourceModel::find_tensor(std::string_view name) const {
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (tensors_[i].name == name) return int64_t(i);
  return -1;
}

void SourceModel::write_metadata(GgufWriter& w, std::optional<GgmlType> file_type) const {
  for (const auto& v : metadata_) w.set(v.key(), v);
  if (file_type) w.set_u32("general.file_type", llama_ftype_of(*file_type));
}

namespace {

// Streaming: drop the mapped source pages of a tensor once converted, so resident memory stays
// near one tensor rather than the whole model (pages fault back in if read again).
void release_pages(const uint8_t* p, uint64_t n) {
  static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t b = (uintptr_t(p) + page - 1) / page * page;
  const uintptr_t e = (uintptr_t(p) + n) / page * page;
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

GgmlType ggml_of(StDtype d) {
  switch (d) {
    case StDtype::F32: return GgmlType::F32;
    case StDtype::F16: return GgmlType::F16;
    case StDtype::BF16: return GgmlType::BF16;
  }
  return GgmlType::F32;
}

// ---- HF directory -------------------------------------------------------------------------
class HfSourceModel final : public SourceModel {
 public:
  explicit HfSourceModel(const std::string& dir) {
    path_ = dir;
    is_gguf_ = false;
    hparams_ = hparams_from_hf_config(dir);
    st_ = SafetensorsModel::open(dir);
    tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::from_hf_dir(dir, hparams_.n_vocab));

    // Generated tensors first, then each shard (sorted file names) sorted by HF name.
    if (hparams_.arch == "llama" && hparams_.rope_scaling == RopeScalingType::Llama3) {
      rope_freqs_ = llama3_rope_factors(dir, hparams_);
      SourceTensor t;
      t.name = "rope_freqs.weight";
      t.n_dims = 1;
      t.ne[0] = int64_t(rope_freqs_.size());
      t.generated = true;
      tensors_.push_back(t);
      views_.push_back(nullptr);
      permute_heads_.push_back(0);
      expert_parts_.emplace_back();
    }
    std::map<std::string, std::vector<const StTensorView*>> by_file;
    for (const auto& v : st_.tensors()) by_file[v.file].push_back(&v);
    if (hparams_.is_moe() && !hparams_.expert_weights_norm)
      fail("{}/config.json: norm_topk_prob = false: llama.cpp's {} always renormalises the top-k expert weights, "
           "so a GGUF file cannot hold this model",
           dir, hparams_.arch);
    for (const auto& file : st_.files()) {
      auto& list = by_file[file];
      std::sort(list.begin(), list.end(), [](auto* a, auto* b) { return a->name < b->name; });
      for (const StTensorView* v : list) add_tensor(*v);
    }
    if (find_tensor("token_embd.weight") < 0) fail("{}: no model.embed_tokens.weight tensor", dir);
    for (const auto& [layer, parts] : experts_)
      fail("{}: layer {} has {} of its {} expert tensors (missing in the checkpoint)", dir, layer, parts.size(),
           3 * hparams_.n_expert);

    // gguf-py's parameter count: a stacked expert tensor counts one expert's share (size label
    // "<n_expert>x<shared + one expert>").
    int64_t n_params = 0;
    for (const auto& t : tensors_) n_params += t.n_dims == 3 ? t.n_elements() / t.ne[2] : t.n_elements();
    // general.file_type of the source: the most common type of its matrices (config.json's
    // dtype may be absent or disagree with the stored tensors).
    std::map<GgmlType, int64_t> count;
    for (const auto& t : tensors_)
      if (t.n_dims >= 2) count[t.source_type] += t.n_elements();
    GgmlType src_type = GgmlType::BF16;
    int64_t best = -1;
    for (const auto& [type, n] : count)
      if (n > best) best = n, src_type = type;
    metadata_ = hf_converter_metadata(dir, hparams_, *tokenizer_, n_params, llama_ftype_of(src_type));
  }

  void read_f32(size_t i, float* out) const override {
    if (i >= tensors_.size()) fail("{}: tensor index {} out of range", path_, i);
    const SourceTensor& t = tensors_[i];
    if (t.generated) {
      std::copy(rope_freqs_.begin(), rope_freqs_.end(), out);
      return;
    }
    if (!expert_parts_[i].empty()) {
      const int64_t per = t.ne[0] * t.ne[1];
      for (size_t e = 0; e < expert_parts_[i].size(); ++e) {
        const StTensorView& v = *expert_parts_[i][e];
        to_f32(v, out + int64_t(e) * per);
        release_pages(v.data, v.nbytes);
      }
      return;
    }
    const StTensorView& v = *views_[i];
    if (!permute_heads_[i]) {
      to_f32(v, out);
    } else {
      std::vector<float> tmp(size_t(v.n_elements()));
      to_f32(v, tmp.data());
      permute_qk_rows(tmp.data(), out, t.rows(), size_t(t.cols()) * sizeof(float), permute_heads_[i]);
    }
    release_pages(v.data, v.nbytes);
  }

  const Tokenizer& tokenizer() const override { return *tokenizer_; }

  std::string identity_sha256() const override {
    namespace fs = std::filesystem;
    Sha256 h;
    h.update(read_file((fs::path(path_) / "config.json").string()));
    const auto index = fs::path(path_) / "model.safetensors.index.json";
    if (fs::exists(index)) {
      h.update(read_file(index.string()));
    } else {
      // Single file: its header (u64 length + JSON) identifies names, shapes and layout.
      for (const auto& f : st_.files()) {
        const std::string head = read_file_prefix(f);
        h.update(head);
      }
    }
    return h.hex();
  }

 private:
  static std::string read_file_prefix(const std::string& f) {
    MappedFile m(f);
    if (m.size() < 8) fail("{}: too small for a safetensors file", f);
    uint64_t n = 0;
    std::memcpy(&n, m.data(), 8);
    n = std::min<uint64_t>(n + 8, m.size());
    return std::string(reinterpret_cast<const char*>(m.data()), size_t(n));
  }

  // Per-expert tensors are held back until a layer has all 3 x n_expert of them, then its stacked
  // ffn_{down,gate,up}_exps are emitted in that order, as the converter's modify_tensors does.
  void add_expert_part(const StTensorView& v, const HfExpertPart& p) {
    if (!hparams_.is_moe()) fail("{}: expert tensor '{}' in a dense model", v.file, v.name);
    if (p.expert >= hparams_.n_expert)
      fail("{}: tensor '{}': expert {} of a model with {} experts", v.file, v.name, p.expert, hparams_.n_expert);
    if (v.shape.size() != 2) fail("{}: expert tensor '{}' is not 2-D", v.file, v.name);
    auto& parts = experts_[p.layer];
    if (!parts.emplace(p.gguf + "#" + std::to_string(p.expert), &v).second)
      fail("{}: tensor '{}' appears twice", v.file, v.name);
    if (int64_t(parts.size()) < 3 * hparams_.n_expert) return;
    const std::string blk = "blk." + std::to_string(p.layer) + ".";
    // The converter's order: qwen3moe stacks down, gate, up; Mixtral (llama) w1, w2, w3 = gate, down, up.
    static constexpr const char* kQwen[] = {"ffn_down_exps", "ffn_gate_exps", "ffn_up_exps"};
    static constexpr const char* kMixtral[] = {"ffn_gate_exps", "ffn_down_exps", "ffn_up_exps"};
    for (const char* kind : hparams_.arch == "llama" ? kMixtral : kQwen) {
      const std::string name = blk + kind + ".weight";
      std::vector<const StTensorView*> list;
      for (int64_t e = 0; e < hparams_.n_expert; ++e) {
        auto it = parts.find(name + "#" + std::to_string(e));
        if (it == parts.end()) fail("{}: layer {}: expert {} of {} is missing", path_, p.layer, e, name);
        const StTensorView* x = it->second;
        if (!list.empty() && (x->shape != list[0]->shape || x->dtype != list[0]->dtype))
          fail("{}: expert tensor '{}' differs in shape or dtype from '{}'", x->file, x->name, list[0]->name);
        list.push_back(x);
      }
      SourceTensor t;
      t.name = name;
      t.source_name = "model.layers." + std::to_string(p.layer) + (hparams_.arch == "llama" ? ".block_sparse_moe.experts.*" : ".mlp.experts.*");
      t.source_type = ggml_of(list[0]->dtype);
      t.n_dims = 3;
      t.ne[0] = list[0]->shape[1];
      t.ne[1] = list[0]->shape[0];
      t.ne[2] = hparams_.n_expert;
      tensors_.push_back(std::move(t));
      views_.push_back(nullptr);
      permute_heads_.push_back(0);
      expert_parts_.push_back(std::move(list));
    }
    experts_.erase(p.layer);
  }

  void add_tensor(const StTensorView& v) {
    if (const auto p = parse_hf_expert_name(v.name)) return add_expert_part(v, *p);
    const auto name = hf_to_gguf_name(v.name);
    if (!name) return;
    if (*name == "output.weight" && hparams_.tied_embeddings) return;  // tied: llama.cpp reuses token_embd
    SourceTensor t;
    t.name = *name;
    t.source_name = v.name;
    t.source_type = ggml_of(v.dtype);
    // The converter squeezes size-1 dims, then writes the numpy shape reversed.
    std::vector<int64_t> shape;
    for (int64_t d : v.shape)
      if (d != 1) shape.push_back(d);
    if (shape.empty()) shape.push_back(1);
    if (shape.size() > 4) fail("{}: tensor '{}' has {} dims (max 4)", v.file, v.name, shape.size());
    t.n_dims = uint32_t(shape.size());
    for (size_t k = 0; k < shape.size(); ++k) t.ne[k] = shape[shape.size() - 1 - k];
    int heads = 0;
    if (hparams_.arch == "llama") {
      const auto kind = tensor_kind(t.name);
      if (kind == "attn_q") heads = int(hparams_.n_head);
      if (kind == "attn_k") heads = int(hparams_.n_head_kv);
    }
    tensors_.push_back(std::move(t));
    views_.push_back(&v);
    permute_heads_.push_back(heads);
    expert_parts_.emplace_back();
  }

  SafetensorsModel st_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<const StTensorView*> views_;  // parallel to tensors_; nullptr for generated
  std::vector<int> permute_heads_;          // q/k permutation head count, 0 for none
  std::vector<std::vector<const StTensorView*>> expert_parts_;  // per expert, for stacked tensors
  std::map<int, std::map<std::string, const StTensorView*>> experts_;  // layer -> parts held back
  std::vector<float> rope_freqs_;
};

// ---- GGUF file ----------------------------------------------------------------------------
class GgufSourceModel final : public SourceModel {
 public:
  explicit GgufSourceModel(const std::string& path) : file_(GgufFile::open(path)) {
    path_ = path;
    is_gguf_ = true;
    hparams_ = hparams_from_gguf(file_);
    metadata_ = file_.kv();
    for (const auto& ti : file_.tensors()) {
      SourceTensor t;
      t.name = ti.name;
      t.source_name = ti.name;
      t.n_dims = ti.n_dims;
      std::copy(std::begin(ti.ne), std::end(ti.ne), t.ne);
      t.source_type = ti.type;
      tensors_.push_back(std::move(t));
    }
  }

  void read_f32(size_t i, float* out) const override {
    if (i >= tensors_.size()) fail("{}: tensor index {} out of range", path_, i);
    const GgufTensorInfo& ti = file_.tensors()[i];
    if (!quant_supported(ti.type))
      fail("{}: tensor '{}' has type {}, which samq cannot dequantize yet", path_, ti.name, ggml_type_name(ti.type));
    dequantize_tensor(ti.type, ti.data, out, ti.rows(), ti.cols());
    release_pages(ti.data, ti.nbytes);
  }

  const uint8_t* raw_data(size_t i) const override { return file_.tensors().at(i).data; }

  const Tokenizer& tokenizer() const override {
    std::call_once(tok_once_, [&] { tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::from_gguf(file_)); });
    return *tokenizer_;
  }

  std::string identity_sha256() const override { return sha256_file_hex(path_); }

 private:
  GgufFile file_;
  mutable std::once_flag tok_once_;
  mutable std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace

std::unique_ptr<SourceModel> open_source_model(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (!fs::exists(fs::path(path) / "config.json"))
      fail("{}: a directory without config.json (expected an HF checkpoint)", path);
    return std::make_unique<HfSourceModel>(path);
  }
  if (!fs::exists(path, ec)) fail("{}: no such file or directory", path);
  return std::make_unique<GgufSourceModel>(path);
}

}  // namespace samq
