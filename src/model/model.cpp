// Model loading (GGUF or HF directory) and in-memory tensor replacement.
//
// GGUF: every tensor is a view into the memory map (no copy), any ggml type.
// HF:   every tensor is a view into the safetensors maps (F32/F16/BF16 rows have the same
//       layout as ggml's), names mapped by model/tensor_names.h. The Llama q/k rows are NOT
//       permuted: HF's rotate-half layout is exactly ggml's NeoX RoPE, so an HF-loaded llama
//       runs with NeoX RoPE on unpermuted q/k (same numbers as the permuted GGUF with normal
//       RoPE; per-row quantization is unaffected by the row order). llama3 RoPE factors are
//       computed from config.json as llama.cpp's converter computes rope_freqs.weight.
#include "model/model.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <numbers>

#include "core/error.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "model/tensor_names.h"
#include "model/tokenizer.h"
#include "quant/quantize.h"

namespace samq {

const float* Tensor::f32() const {
  if (type != GgmlType::F32) fail("tensor {}: expected f32, found {}", name, ggml_type_name(type));
  return reinterpret_cast<const float*>(data);
}

WeightView Tensor::mat(int64_t e) const {
  if (e < 0 || e >= n_mat) fail("tensor {}: no matrix {} (holds {})", name, e, n_mat);
  const int64_t r = mat_rows();
  return WeightView{type, r, cols, data + e * r * row_bytes(), row_bytes()};
}

void for_each_tensor(ModelWeights& w, const std::function<void(Tensor&)>& fn) {
  auto v = [&](Tensor& t) {
    if (t.present()) fn(t);
  };
  v(w.rope_freqs);
  v(w.token_embd);
  for (auto& l : w.layers) {
    for (Tensor* t : {&l.attn_norm, &l.attn_q, &l.attn_q_bias, &l.attn_k, &l.attn_k_bias, &l.attn_v,
                      &l.attn_v_bias, &l.attn_qkv, &l.attn_q_norm, &l.attn_k_norm, &l.attn_output,
                      &l.attn_output_bias, &l.ffn_norm, &l.ffn_gate, &l.ffn_up, &l.ffn_down,
                      &l.ffn_gate_inp, &l.ffn_gate_exps, &l.ffn_up_exps, &l.ffn_down_exps})
      v(*t);
  }
  v(w.output_norm);
  v(w.output);
}

void for_each_tensor(const ModelWeights& w, const std::function<void(const Tensor&)>& fn) {
  for_each_tensor(const_cast<ModelWeights&>(w), [&](Tensor& t) { fn(t); });
}

namespace {

// Where a GGUF-named tensor goes in the weights struct (nullptr: unknown name).
Tensor* slot(ModelWeights& w, std::string_view name) {
  const GgufNameParts p = parse_gguf_name(name);
  const bool bias = p.suffix == "bias";
  if (p.layer < 0) {
    if (bias) return nullptr;
    if (p.kind == "token_embd") return &w.token_embd;
    if (p.kind == "output_norm") return &w.output_norm;
    if (p.kind == "output") return &w.output;
    if (p.kind == "rope_freqs") return &w.rope_freqs;
    return nullptr;
  }
  if (p.layer >= int(w.layers.size())) return nullptr;
  LayerWeights& l = w.layers[p.layer];
  if (p.kind == "attn_norm" && !bias) return &l.attn_norm;
  if (p.kind == "attn_q") return bias ? &l.attn_q_bias : &l.attn_q;
  if (p.kind == "attn_k") return bias ? &l.attn_k_bias : &l.attn_k;
  if (p.kind == "attn_v") return bias ? &l.attn_v_bias : &l.attn_v;
  if (p.kind == "attn_output") return bias ? &l.attn_output_bias : &l.attn_output;
  if (p.kind == "attn_qkv" && !bias) return &l.attn_qkv;
  if (p.kind == "attn_q_norm" && !bias) return &l.attn_q_norm;
  if (p.kind == "attn_k_norm" && !bias) return &l.attn_k_norm;
  if (p.kind == "ffn_norm" && !bias) return &l.ffn_norm;
  if (p.kind == "ffn_gate" && !bias) return &l.ffn_gate;
  if (p.kind == "ffn_up" && !bias) return &l.ffn_up;
  if (p.kind == "ffn_down" && !bias) return &l.ffn_down;
  if (p.kind == "ffn_gate_inp" && !bias) return &l.ffn_gate_inp;
  if (p.kind == "ffn_gate_exps" && !bias) return &l.ffn_gate_exps;
  if (p.kind == "ffn_up_exps" && !bias) return &l.ffn_up_exps;
  if (p.kind == "ffn_down_exps" && !bias) return &l.ffn_down_exps;
  return nullptr;
}

void expect_shape(const Tensor& t, int64_t rows, int64_t cols, const std::string& src) {
  if (!t.present()) fail("{}: missing tensor for ({} x {})", src, rows, cols);
  if (t.rows != rows || t.cols != cols)
    fail("{}: tensor {} has shape ({}, {}), expected ({}, {})", src, t.name, t.rows, t.cols, rows, cols);
}

void check_weights(const Model& m) {
  const auto& h = m.hparams;
  const auto& w = m.weights;
  const std::string& src = m.path;
  auto need = [&](const Tensor& t, const char* what, int64_t rows, int64_t cols) {
    if (!t.present()) fail("{}: missing tensor {}", src, what);
    expect_shape(t, rows, cols, src);
  };
  need(w.token_embd, "token_embd.weight", h.n_vocab, h.n_embd);
  need(w.output_norm, "output_norm.weight", 1, h.n_embd);
  if (w.output.present()) expect_shape(w.output, h.n_vocab, h.n_embd, src);
  for (int64_t i = 0; i < h.n_layer; ++i) {
    const auto& l = w.layers[i];
    const std::string b = fmt::format("blk.{}.", i);
    need(l.attn_norm, (b + "attn_norm.weight").c_str(), 1, h.n_embd);
    if (h.fused_qkv_gate_up) {
      need(l.attn_qkv, (b + "attn_qkv.weight").c_str(), h.n_embd_q() + 2 * h.n_embd_kv(), h.n_embd);
      for (const Tensor* t : {&l.attn_q, &l.attn_k, &l.attn_v, &l.ffn_gate})
        if (t->present()) fail("{}: tensor {} in a model with fused attn_qkv / gate+up ffn_up ({})", src, t->name, h.arch);
    } else {
      need(l.attn_q, (b + "attn_q.weight").c_str(), h.n_embd_q(), h.n_embd);
      need(l.attn_k, (b + "attn_k.weight").c_str(), h.n_embd_kv(), h.n_embd);
      need(l.attn_v, (b + "attn_v.weight").c_str(), h.n_embd_kv(), h.n_embd);
      if (l.attn_qkv.present()) fail("{}: fused tensor {} in a {} model", src, l.attn_qkv.name, h.arch);
    }
    need(l.attn_output, (b + "attn_output.weight").c_str(), h.n_embd, h.n_embd_q());
    need(l.ffn_norm, (b + "ffn_norm.weight").c_str(), 1, h.n_embd);
    if (h.is_moe()) {
      auto need_exps = [&](const Tensor& t, const char* what, int64_t rows, int64_t cols) {
        need(t, (b + what).c_str(), h.n_expert * rows, cols);
        if (t.n_mat != h.n_expert)
          fail("{}: tensor {} holds {} experts, expected {}", src, t.name, t.n_mat, h.n_expert);
      };
      need(l.ffn_gate_inp, (b + "ffn_gate_inp.weight").c_str(), h.n_expert, h.n_embd);
      if (l.ffn_gate_inp.type != GgmlType::F32)
        fail("{}: tensor {} (router) must be f32, found {}", src, l.ffn_gate_inp.name, ggml_type_name(l.ffn_gate_inp.type));
      need_exps(l.ffn_gate_exps, "ffn_gate_exps.weight", h.n_ff_exp, h.n_embd);
      need_exps(l.ffn_up_exps, "ffn_up_exps.weight", h.n_ff_exp, h.n_embd);
      need_exps(l.ffn_down_exps, "ffn_down_exps.weight", h.n_embd, h.n_ff_exp);
      for (const Tensor* t : {&l.ffn_gate, &l.ffn_up, &l.ffn_down})
        if (t->present()) fail("{}: tensor {} in a mixture-of-experts layer", src, t->name);
    } else if (h.fused_qkv_gate_up) {
      need(l.ffn_up, (b + "ffn_up.weight").c_str(), 2 * h.n_ff, h.n_embd);
      need(l.ffn_down, (b + "ffn_down.weight").c_str(), h.n_embd, h.n_ff);
    } else {
      need(l.ffn_gate, (b + "ffn_gate.weight").c_str(), h.n_ff, h.n_embd);
      need(l.ffn_up, (b + "ffn_up.weight").c_str(), h.n_ff, h.n_embd);
      need(l.ffn_down, (b + "ffn_down.weight").c_str(), h.n_embd, h.n_ff);
      for (const Tensor* t : {&l.ffn_gate_inp, &l.ffn_gate_exps, &l.ffn_up_exps, &l.ffn_down_exps})
        if (t->present()) fail("{}: expert tensor {} in a dense model", src, t->name);
    }
    if (l.attn_q_bias.present()) expect_shape(l.attn_q_bias, 1, h.n_embd_q(), src);
    if (l.attn_k_bias.present()) expect_shape(l.attn_k_bias, 1, h.n_embd_kv(), src);
    if (l.attn_v_bias.present()) expect_shape(l.attn_v_bias, 1, h.n_embd_kv(), src);
    if (l.attn_q_norm.present()) expect_shape(l.attn_q_norm, 1, h.head_dim, src);
    if (l.attn_k_norm.present()) expect_shape(l.attn_k_norm, 1, h.head_dim, src);
    for (const Tensor* t : {&l.attn_norm, &l.ffn_norm, &l.attn_q_norm, &l.attn_k_norm, &l.attn_q_bias,
                            &l.attn_k_bias, &l.attn_v_bias, &l.attn_output_bias})
      if (t->present() && t->type != GgmlType::F32)
        fail("{}: tensor {} must be f32, found {}", src, t->name, ggml_type_name(t->type));
  }
  if (w.output_norm.type != GgmlType::F32) fail("{}: output_norm.weight must be f32", src);
}

// Tensors held as f32 on the heap (1-D tensors of an HF checkpoint, computed rope factors).
Tensor owned_f32(std::string name, int64_t rows, int64_t cols, std::vector<float> v) {
  Tensor t;
  t.name = std::move(name);
  t.type = GgmlType::F32;
  t.rows = rows;
  t.cols = cols;
  t.owned = std::make_shared<std::vector<uint8_t>>(v.size() * 4);
  std::memcpy(t.owned->data(), v.data(), v.size() * 4);
  t.data = t.owned->data();
  return t;
}

// llama3 RoPE frequency divisors, as llama.cpp's converter writes rope_freqs.weight.
std::vector<float> llama3_rope_factors(const ModelHparams& h) {
  const double base = h.rope_theta, dim = double(h.n_rot());
  const double old_ctx = double(h.rope_orig_ctx), factor = h.rope_factor;
  const double lo = h.rope_low_freq_factor, hi = h.rope_high_freq_factor;
  const double low_wavelen = old_ctx / lo, high_wavelen = old_ctx / hi;
  std::vector<float> f;
  for (int64_t i = 0; i < h.n_rot(); i += 2) {
    const double freq = 1.0 / std::pow(base, double(i) / dim);
    const double wavelen = 2 * std::numbers::pi / freq;
    if (wavelen < high_wavelen) {
      f.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      f.push_back(float(factor));
    } else {
      const double smooth = (old_ctx / wavelen - lo) / (hi - lo);
      f.push_back(float(1.0 / ((1 - smooth) / factor + smooth)));
    }
  }
  return f;
}

std::shared_ptr<Model> load_gguf(const std::string& path) {
  auto file = std::make_shared<GgufFile>(GgufFile::open(path));
  auto m = std::make_shared<Model>();
  m->path = path;
  m->hparams = hparams_from_gguf(*file);
  m->keep_alive = file;
  m->gguf = file;
  m->weights.layers.resize(m->hparams.n_layer);
  for (const GgufTensorInfo& ti : file->tensors()) {
    Tensor* s = slot(m->weights, ti.name);
    if (!s) fail("{}: unexpected tensor {} (not part of a {} model)", path, ti.name, m->hparams.arch);
    const bool exps = parse_gguf_name(ti.name).kind.ends_with("_exps");
    if (ti.ne[3] != 1 || (ti.ne[2] != 1 && !exps)) fail("{}: tensor {} has more than {} dims", path, ti.name, exps ? 3 : 2);
    s->name = ti.name;
    s->type = ti.type;
    s->n_mat = ti.ne[2];
    s->rows = ti.ne[1] * ti.ne[2];
    s->cols = ti.ne[0];
    s->data = ti.data;
  }
  return m;
}

const Tensor& router_slot(Model& m, const std::string& name) {
  static const Tensor none;
  const GgufNameParts p = parse_gguf_name(name);
  if (p.kind != "ffn_gate_inp" || p.layer < 0 || p.layer >= int(m.weights.layers.size())) return none;
  return m.weights.layers[size_t(p.layer)].ffn_gate_inp;
}

// The experts of an HF checkpoint (one 2-D tensor each) copied into one owned 3-D tensor, as the
// converter stacks them (expert e = rows [e * r, (e + 1) * r)); the stored type is kept.
void stack_experts(Model& m, const std::string& name, const std::vector<const StTensorView*>& parts) {
  for (size_t e = 0; e < parts.size(); ++e)
    if (!parts[e]) fail("{}: expert {} of {} is missing", m.path, e, name);
  const StTensorView& p0 = *parts[0];
  if (p0.shape.size() != 2) fail("{}: tensor {} is not 2-D", p0.file, p0.name);
  Tensor* s = slot(m.weights, name);
  if (!s) fail("{}: tensor {} has no place in a {} model", m.path, name, m.hparams.arch);
  s->name = name;
  s->type = p0.dtype == StDtype::F32 ? GgmlType::F32 : p0.dtype == StDtype::F16 ? GgmlType::F16 : GgmlType::BF16;
  s->n_mat = int64_t(parts.size());
  s->cols = p0.shape[1];
  s->rows = p0.shape[0] * s->n_mat;
  s->owned = std::make_shared<std::vector<uint8_t>>(size_t(s->n_bytes()));
  for (size_t e = 0; e < parts.size(); ++e) {
    const StTensorView& p = *parts[e];
    if (p.shape != p0.shape || p.dtype != p0.dtype)
      fail("{}: expert tensor {} differs in shape or dtype from {}", p.file, p.name, p0.name);
    std::memcpy(s->owned->data() + e * p.nbytes, p.data, p.nbytes);
  }
  s->data = s->owned->data();
}

std::shared_ptr<Model> load_hf(const std::string& dir) {
  auto st = std::make_shared<SafetensorsModel>(SafetensorsModel::open(dir));
  auto m = std::make_shared<Model>();
  m->path = dir;
  m->hparams = hparams_from_hf_config(dir);
  m->hf_layout = true;
  m->keep_alive = st;
  m->weights.layers.resize(m->hparams.n_layer);
  std::map<std::string, std::vector<const StTensorView*>> experts;  // stacked name -> expert parts
  for (const StTensorView& tv : st->tensors()) {
    if (const auto e = parse_hf_expert_name(tv.name)) {
      auto& parts = experts[e->gguf];
      if (m->hparams.n_expert <= 0 || e->expert >= m->hparams.n_expert)
        fail("{}: tensor {}: expert {} of a model with {} experts", tv.file, tv.name, e->expert, m->hparams.n_expert);
      parts.resize(size_t(m->hparams.n_expert));
      parts[size_t(e->expert)] = &tv;
      continue;
    }
    const auto name = hf_to_gguf_name(tv.name);
    if (!name) continue;
    Tensor* s = slot(m->weights, *name);
    if (!s) fail("{}: tensor {} ({}) has no place in a {} model", tv.file, tv.name, *name, m->hparams.arch);
    if (tv.shape.size() > 2) fail("{}: tensor {} has more than 2 dims", tv.file, tv.name);
    s->name = *name;
    s->rows = tv.shape.size() == 2 ? tv.shape[0] : 1;
    s->cols = tv.shape.empty() ? 1 : tv.shape.back();
    // 1-D tensors and the MoE router are held as f32, as the converter writes them.
    if (tv.shape.size() == 1 || (tv.shape.size() == 2 && s->rows == 1) || s == &router_slot(*m, *name)) {
      std::vector<float> v(tv.n_elements());
      to_f32(tv, v.data());
      *s = owned_f32(*name, s->rows, s->cols, std::move(v));
      continue;
    }
    s->type = tv.dtype == StDtype::F32 ? GgmlType::F32 : tv.dtype == StDtype::F16 ? GgmlType::F16 : GgmlType::BF16;
    s->data = tv.data;
  }
  for (auto& [name, parts] : experts) stack_experts(*m, name, parts);
  if (m->hparams.tied_embeddings) m->weights.output = Tensor{};
  if (m->hparams.rope_scaling == RopeScalingType::Llama3) {
    auto f = llama3_rope_factors(m->hparams);
    const int64_t n = int64_t(f.size());
    m->weights.rope_freqs = owned_f32("rope_freqs.weight", 1, n, std::move(f));
  }
  return m;
}

}  // namespace

namespace {
// Host-memory backends prepare the matmul weights only (and read the rest in place); device
// backends need every tensor in their memory.
void prepare_tensor(const Ops& ops, const ModelWeights& w, Tensor& t) {
  t.prepared.reset();
  if (!t.present()) return;
  if (ops.host_memory()) {
    // Stacked experts are read matrix by matrix through Tensor::mat, without a prepared form.
    const bool matmul = t.rows > 1 && t.n_mat == 1 && (&t != &w.token_embd || !w.output.present());
    if (!matmul) return;
  }
  t.prepared = std::shared_ptr<const PreparedWeight>(ops.prepare_weight(t.view()));
}
}  // namespace

std::shared_ptr<Model> Model::load(const std::string& path, const Ops& ops) { return load(path, ops, true); }

std::shared_ptr<Model> Model::load(const std::string& path, const Ops& ops, bool prepare_layers) {
  std::shared_ptr<Model> m;
  if (std::filesystem::is_directory(path))
    m = load_hf(path);
  else if (std::filesystem::exists(path))
    m = load_gguf(path);
  else
    fail("{}: no such file or directory", path);
  check_weights(*m);
  if (prepare_layers) {
    m->prepare_weights(ops);
  } else {
    m->ops = &ops;
    for (Tensor* t : {&m->weights.token_embd, &m->weights.output_norm, &m->weights.output, &m->weights.rope_freqs})
      prepare_tensor(ops, m->weights, *t);
  }
  return m;
}


namespace {
template <class Fn>
void for_each_layer_tensor(LayerWeights& L, Fn&& fn) {
  for (Tensor* t : {&L.attn_norm, &L.attn_q, &L.attn_k, &L.attn_v, &L.attn_q_bias, &L.attn_k_bias, &L.attn_v_bias,
                    &L.attn_qkv, &L.attn_q_norm, &L.attn_k_norm, &L.attn_output, &L.attn_output_bias, &L.ffn_norm, &L.ffn_gate,
                    &L.ffn_up, &L.ffn_down, &L.ffn_gate_inp, &L.ffn_gate_exps, &L.ffn_up_exps, &L.ffn_down_exps})
    if (t->present()) fn(*t);
}

// The page-aligned range inside [p, p + n) (madvise wants page boundaries; the partial pages at
// either end may be shared with a neighbouring tensor and are left alone).
void advise_inner(const uint8_t* p, int64_t n, int advice) {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  uintptr_t a = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + uintptr_t(n)) & ~(page - 1);
  if (b > a) madvise(reinterpret_cast<void*>(a), b - a, advice);
}
}  // namespace

void Model::prepare_layer(int layer) {
  if (layer < 0 || layer >= int(weights.layers.size())) fail("prepare_layer: no layer {}", layer);
  for_each_layer_tensor(weights.layers[size_t(layer)], [&](Tensor& t) {
    if (!t.prepared) prepare_tensor(*ops, weights, t);
  });
}

void Model::release_layer(int layer) {
  if (layer < 0 || layer >= int(weights.layers.size())) return;
  for_each_layer_tensor(weights.layers[size_t(layer)], [&](Tensor& t) {
    t.prepared.reset();
    if (!t.owned) advise_inner(t.data, t.n_bytes(), MADV_DONTNEED);
  });
}

void Model::prefetch_layer(int layer) const {
  if (layer < 0 || layer >= int(weights.layers.size())) return;
  for_each_layer_tensor(const_cast<LayerWeights&>(weights.layers[size_t(layer)]), [&](Tensor& t) {
    if (!t.owned) advise_inner(t.data, t.n_bytes(), MADV_WILLNEED);
  });
}

int64_t Model::layer_bytes(int layer) const {
  int64_t b = 0;
  if (layer < 0 || layer >= int(weights.layers.size())) return 0;
  for_each_layer_tensor(const_cast<LayerWeights&>(weights.layers[size_t(layer)]), [&](Tensor& t) { b += t.n_bytes(); });
  return b;
}

void Model::prepare_weights(const Ops& o) {
  ops = &o;
  for_each_tensor(weights, [&](Tensor& t) { prepare_tensor(o, weights, t); });
}

const float* backend_f32(const Tensor& t) {
  if (t.prepared)
    if (const void* p = t.prepared->backend_data()) return static_cast<const float*>(p);
  return t.f32();
}

Tensor* Model::find(std::string_view name) {
  Tensor* s = slot(weights, name);
  return s && s->present() ? s : nullptr;
}
const Tensor* Model::find(std::string_view name) const { return const_cast<Model*>(this)->find(name); }

Tensor Model::replace(Tensor t) {
  Tensor* s = slot(weights, t.name);
  if (!s || !s->present()) fail("{}: no tensor {} to replace", path, t.name);
  if (s->rows != t.rows || s->cols != t.cols)
    fail("replacing {}: shape ({}, {}) differs from ({}, {})", t.name, t.rows, t.cols, s->rows, s->cols);
  if (t.n_mat == 1) t.n_mat = s->n_mat;  // a round trip made as one tall matrix
  if (t.n_mat != s->n_mat) fail("replacing {}: {} stacked matrices instead of {}", t.name, t.n_mat, s->n_mat);
  Tensor old = std::move(*s);
  *s = std::move(t);
  if (!s->prepared) prepare_tensor(*ops, weights, *s);
  return old;
}

std::vector<float> Model::tensor_f32(const Tensor& t) const {
  std::vector<float> out(t.n_elements());
  const WeightView v = t.view();
  for (int64_t r = 0; r < t.rows; ++r) dequantize_weight_row(v, r, out.data() + r * t.cols);
  return out;
}

Tensor Model::replace_with_round_trip(std::string_view name, GgmlType type, const float* imatrix) {
  const Tensor* cur = find(name);
  if (!cur) fail("{}: no tensor {}", path, name);
  const std::vector<float> src = tensor_f32(*cur);
  std::vector<float> dst(src.size());
  // Stacked experts: matrix by matrix, each with its own imatrix slice (n_mat * cols values).
  const int64_t R = cur->mat_rows(), C = cur->cols;
  for (int64_t e = 0; e < cur->n_mat; ++e)
    quant_round_trip(type, src.data() + e * R * C, dst.data() + e * R * C, R, C, imatrix ? imatrix + e * C : nullptr);
  return replace(owned_f32(std::string(name), cur->rows, cur->cols, std::move(dst)));
}

Tokenizer load_tokenizer(const Model& m) {
  if (m.gguf) return Tokenizer::from_gguf(*m.gguf);
  return Tokenizer::from_hf_dir(m.path, m.hparams.n_vocab);
}

RopeParams rope_params(const Model& m) {
  const auto& h = m.hparams;
  RopeParams p;
  p.n_rot = h.n_rot();
  p.theta = h.rope_theta;
  p.neox = m.hf_layout || h.arch != "llama";
  if (h.rope_scaling == RopeScalingType::Linear && h.rope_factor > 0) p.freq_scale = 1.0f / h.rope_factor;
  if (m.weights.rope_freqs.present()) p.freq_factors = m.weights.rope_freqs.f32();
  if (m.hf_layout && m.transformers_rope) {
    if (h.source_dtype == "bf16") p.inv_freq_type = GgmlType::BF16;
    if (h.source_dtype == "f16") p.inv_freq_type = GgmlType::F16;
  }
  return p;
}

}  // namespace samq
