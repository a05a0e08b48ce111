// A tiny random model built in memory (no file) for gradient checks and analysis tests:
// every feature of the four architectures can be switched on (biases, q/k norm, tied
// embeddings, llama3 rope_freqs, NeoX rope). Header-only so tests/analyze can use it too.
#pragma once
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "model/model.h"

namespace samq::test {

struct TinyConfig {
  std::string arch = "llama";  // llama | qwen2 | qwen3 | qwen3moe | mixtral (llama with experts) | phi3 (fused)
  int64_t n_vocab = 23, n_embd = 32, n_layer = 2, n_head = 4, n_head_kv = 2, head_dim = 8, n_ff = 48;
  int64_t n_expert = 4, n_expert_used = 2, n_ff_exp = 16;  // qwen3moe and mixtral only
  int64_t n_swa = 0;  // sliding window (mistral), 0: none
  bool norm_topk = true;
  bool bias = false, qk_norm = false, tied = false, rope_freqs = false;
  uint32_t seed = 1;
  float scale = 0.3f;
};

inline Tensor tiny_tensor(const std::string& name, int64_t rows, int64_t cols, std::mt19937& g,
                          float scale, float offset = 0.0f) {
  Tensor t;
  t.name = name;
  t.type = GgmlType::F32;
  t.rows = rows;
  t.cols = cols;
  t.owned = std::make_shared<std::vector<uint8_t>>(size_t(rows * cols) * sizeof(float));
  t.data = t.owned->data();
  std::normal_distribution<float> d(0.0f, 1.0f);
  float* p = reinterpret_cast<float*>(t.owned->data());
  for (int64_t i = 0; i < rows * cols; ++i) p[i] = offset + scale * d(g);
  return t;
}

inline std::shared_ptr<Model> make_tiny_model(const TinyConfig& c) {
  auto m = std::make_shared<Model>();
  ModelHparams& h = m->hparams;
  const bool moe = c.arch == "qwen3moe" || c.arch == "mixtral";
  h.arch = c.arch == "mixtral" ? "llama" : c.arch;
  h.n_swa = c.n_swa;
  h.fused_qkv_gate_up = c.arch == "phi3";
  h.n_vocab = c.n_vocab;
  h.n_ctx_train = 64;
  h.n_embd = c.n_embd;
  h.n_layer = c.n_layer;
  h.n_head = c.n_head;
  h.n_head_kv = c.n_head_kv;
  h.head_dim = c.head_dim;
  h.n_ff = c.n_ff;
  h.rope_theta = 10000.0f;
  h.rms_eps = 1e-5f;
  h.tied_embeddings = c.tied;
  h.attn_bias = c.bias;
  h.qk_norm = c.qk_norm;
  if (moe) {
    h.n_expert = c.n_expert;
    h.n_expert_used = c.n_expert_used;
    h.n_ff_exp = c.n_ff_exp;
    h.expert_weights_norm = c.norm_topk;
  }
  h.bos_id = 0;
  h.eos_id = 1;
  h.source_dtype = "f32";
  std::mt19937 g(c.seed);
  const float s = c.scale;
  ModelWeights& w = m->weights;
  w.token_embd = tiny_tensor("token_embd.weight", c.n_vocab, c.n_embd, g, 1.0f);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights L;
    L.attn_norm = tiny_tensor(p + "attn_norm.weight", 1, c.n_embd, g, 0.1f, 1.0f);
    if (c.arch == "phi3") {
      L.attn_qkv = tiny_tensor(p + "attn_qkv.weight", (c.n_head + 2 * c.n_head_kv) * c.head_dim, c.n_embd, g, s);
    } else {
      L.attn_q = tiny_tensor(p + "attn_q.weight", c.n_head * c.head_dim, c.n_embd, g, s);
      L.attn_k = tiny_tensor(p + "attn_k.weight", c.n_head_kv * c.head_dim, c.n_embd, g, s);
      L.attn_v = tiny_tensor(p + "attn_v.weight", c.n_head_kv * c.head_dim, c.n_embd, g, s);
    }
    if (c.bias) {
      L.attn_q_bias = tiny_tensor(p + "attn_q.bias", 1, c.n_head * c.head_dim, g, 0.2f);
      L.attn_k_bias = tiny_tensor(p + "attn_k.bias", 1, c.n_head_kv * c.head_dim, g, 0.2f);
      L.attn_v_bias = tiny_tensor(p + "attn_v.bias", 1, c.n_head_kv * c.head_dim, g, 0.2f);
    }
    if (c.qk_norm) {
      L.attn_q_norm = tiny_tensor(p + "attn_q_norm.weight", 1, c.head_dim, g, 0.1f, 1.0f);
      L.attn_k_norm = tiny_tensor(p + "attn_k_norm.weight", 1, c.head_dim, g, 0.1f, 1.0f);
    }
    L.attn_output = tiny_tensor(p + "attn_output.weight", c.n_embd, c.n_head * c.head_dim, g, s);
    L.ffn_norm = tiny_tensor(p + "ffn_norm.weight", 1, c.n_embd, g, 0.1f, 1.0f);
    if (moe) {
      const int64_t NE = c.n_expert;
      L.ffn_gate_inp = tiny_tensor(p + "ffn_gate_inp.weight", NE, c.n_embd, g, 1.0f);
      L.ffn_gate_exps = tiny_tensor(p + "ffn_gate_exps.weight", NE * c.n_ff_exp, c.n_embd, g, s);
      L.ffn_up_exps = tiny_tensor(p + "ffn_up_exps.weight", NE * c.n_ff_exp, c.n_embd, g, s);
      L.ffn_down_exps = tiny_tensor(p + "ffn_down_exps.weight", NE * c.n_embd, c.n_ff_exp, g, s);
      for (Tensor* t : {&L.ffn_gate_exps, &L.ffn_up_exps, &L.ffn_down_exps}) t->n_mat = NE;
    } else if (c.arch == "phi3") {
      L.ffn_up = tiny_tensor(p + "ffn_up.weight", 2 * c.n_ff, c.n_embd, g, s);
      L.ffn_down = tiny_tensor(p + "ffn_down.weight", c.n_embd, c.n_ff, g, s);
    } else {
      L.ffn_gate = tiny_tensor(p + "ffn_gate.weight", c.n_ff, c.n_embd, g, s);
      L.ffn_up = tiny_tensor(p + "ffn_up.weight", c.n_ff, c.n_embd, g, s);
      L.ffn_down = tiny_tensor(p + "ffn_down.weight", c.n_embd, c.n_ff, g, s);
    }
    w.layers.push_back(std::move(L));
  }
  w.output_norm = tiny_tensor("output_norm.weight", 1, c.n_embd, g, 0.1f, 1.0f);
  if (!c.tied) w.output = tiny_tensor("output.weight", c.n_vocab, c.n_embd, g, s);
  if (c.rope_freqs) {
    w.rope_freqs = tiny_tensor("rope_freqs.weight", 1, c.head_dim / 2, g, 0.0f, 1.0f);
    float* f = reinterpret_cast<float*>(w.rope_freqs.owned->data());
    for (int64_t i = 0; i < c.head_dim / 2; ++i) f[i] = 1.0f + float(i);
    h.rope_scaling = RopeScalingType::Llama3;
  }
  m->path = "<tiny " + c.arch + ">";
  m->ggml_numerics = false;  // exact f32: finite differences must not see f16/Q8 rounding steps
  return m;
}

inline std::vector<int32_t> tiny_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = int32_t(g() % uint32_t(vocab));
  return t;
}

// Calibration chunks for a tiny model: one sequence of len tokens per seed.
inline std::vector<std::vector<int32_t>> tiny_chunks(const TinyConfig& c, int64_t len,
                                                     std::initializer_list<uint32_t> seeds) {
  std::vector<std::vector<int32_t>> chunks;
  for (uint32_t s : seeds) chunks.push_back(tiny_tokens(len, c.n_vocab, s));
  return chunks;
}

// The analysis tests' usual setup: the default tiny model and two 12-token chunks (seeds 1, 2).
struct TinyCalibration {
  TinyConfig cfg;
  std::shared_ptr<Model> model = make_tiny_model(cfg);
  std::vector<std::vector<int32_t>> chunks = tiny_chunks(cfg, 12, {1, 2});
};

}  // namespace samq::test
