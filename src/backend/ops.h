// The op table: every numeric operation of the transformer forward pass, behind one interface
// so that the model code (src/model/forward.cpp) is written once and a CUDA backend can slot in
// later. Two implementations ship today:
//   reference_ops()  plain scalar loops, float32, written to be read (the oracle of the tests);
//   cpu_ops()        the fast CPU path: AVX2 / AVX-512 chosen at run time, multithreaded via
//                    core/parallel.h, repacked int8 tiles (prepare_weight) or OpenBLAS
//                    sgemm for many-token matmuls.
// tests/backend/ checks every fast op against its reference on odd shapes.
//
// Conventions
// - Shapes are written (rows, cols), row-major, rows contiguous. A weight matrix is
//   (out_features, in_features) exactly as stored in GGUF (ne[1], ne[0]); any ggml type.
// - Activations are (n_tokens, width) f32.
// - Ops never allocate what the caller can see; they keep no state between calls.
//
// What the backward pass (helper H, files named *backward*) relies on:
// - Every op is a pure function of its inputs, so backward ops may recompute forward
//   intermediates. The ones that are expensive or awkward to recompute are exposed as
//   optional outputs: rms_norm writes rstd (one per row) when asked, attention writes the
//   softmax probabilities (n_head, n_tokens, n_kv) when asked.
// - The model forward (src/model/forward.h) reports every intermediate activation through
//   ForwardHooks keyed by (name, layer), so backward code can capture what it needs without
//   editing the forward code.
#pragma once
#include <cstdint>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/ggml_type.h"

namespace samq {

// A backend's own form of a weight tensor (the CPU's repacked int8 tiles,
// backend/cpu/packed_gemm.h; the CUDA backend's device copy), made once by Ops::prepare_weight
// and kept by the model.
struct PreparedWeight {
  virtual ~PreparedWeight() = default;
  // The tensor's bytes (its own ggml type, rows * row_bytes) in the backend's memory, or nullptr
  // when the backend reads the host bytes (the CPU). Model code passes 1-D tensors (norm
  // weights, biases) to ops through this (model/model.h: backend_f32).
  virtual const void* backend_data() const { return nullptr; }
};

// A read-only matrix of any ggml type: (rows, cols), row r at data + r * row_bytes.
struct WeightView {
  GgmlType type = GgmlType::F32;
  int64_t rows = 0, cols = 0;
  const void* data = nullptr;
  int64_t row_bytes = 0;  // ggml_row_size(type, cols) for packed tensors
  // matmul rounds activations as ggml does for this weight type (see Ops::matmul); false:
  // exact float32 activations (used to compare with HF transformers' float32 logits).
  bool ggml_act_rounding = true;
  // Optional form of the same matrix made by the backend that runs the matmul
  // (Ops::prepare_weight); nullptr: matmul reads `data`. Views made outside Model::load (round
  // trips, tests) have none.
  const PreparedWeight* prepared = nullptr;
};

// RoPE as ggml implements it (ggml-formats.md §1.8).
struct RopeParams {
  int64_t n_rot = 0;          // rotated dims per head (== head_dim for all supported archs)
  float theta = 10000.0f;     // freq_base
  float freq_scale = 1.0f;    // linear scaling: positions multiplied by this
  bool neox = false;          // false: pairs (2i, 2i+1) (llama); true: (i, i + n_rot/2) (qwen2/3)
  const float* freq_factors = nullptr;  // n_rot/2 divisors of the frequencies (llama3 rope_freqs)
  // Emulation of HF transformers for checkpoints stored in F16/BF16: its rotary inv_freq
  // buffer ends up rounded to the checkpoint dtype (measured against the golden logits:
  // without it, max |Δ logit| is 8e-2 for the bf16 qwen2 checkpoint, with it 1e-5).
  // F32 = exact float32 frequencies, as llama.cpp computes them.
  GgmlType inv_freq_type = GgmlType::F32;
};

// First key a query at position p sees: 0, or p - window + 1 with a window.
inline int64_t attention_first_key(int64_t p, int64_t window) {
  return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

// The n_rot/2 inverse frequencies of p: freq_scale * theta^(-2i/n_rot) / freq_factors[i],
// in float32, rounded to p.inv_freq_type.
std::vector<float> rope_inv_freq(const RopeParams& p);

// Causal attention of one sequence over its KV cache, optionally windowed.
struct AttentionArgs {
  int64_t n_tokens = 0;    // query rows
  int64_t n_kv = 0;        // cache rows visible (keys at positions 0..n_kv-1)
  int64_t n_head = 0, n_head_kv = 0, head_dim = 0;
  const float* q = nullptr;    // (n_tokens, n_head*head_dim), already roped
  const float* k = nullptr;    // (n_kv, n_head_kv*head_dim) cache rows, roped
  const float* v = nullptr;    // (n_kv, n_head_kv*head_dim)
  const int32_t* pos = nullptr;  // (n_tokens) position of each query; it sees keys 0..pos[i]
  float scale = 1.0f;          // usually 1/sqrt(head_dim)
  float* out = nullptr;        // (n_tokens, n_head*head_dim)
  float* probs = nullptr;      // optional (n_head, n_tokens, n_kv): softmax weights (0 where masked)
  // Sliding window (> 0): query i sees only keys pos[i] - window + 1 .. pos[i] (itself included,
  // as HF transformers' and llama.cpp's sliding-window masks); 0: all of 0..pos[i]. (Last, so
  // that positional initialisers keep their meaning.)
  int64_t window = 0;
};

// Per-position statistics of `samq eval` (eval/perplexity.h) for Ops::eval_token_stats.
struct EvalTokenStats {
  float nll = 0;        // -log softmax(logits)[next]
  float nll_base = 0;   // -(decoded base log-prob of next)                       (with a base)
  float kld = 0;        // sum over the base's codes > 0 of p_b (log p_b - log q)  (with a base)
  float dp = 0;         // exp(-nll) - exp(-nll_base)                              (with a base)
  int32_t same_top = 0; // argmax(logits) == the base's argmax (1/0)               (with a base)
};

// The base distributions of n rows as eval/logits_codec.h defines them (llama-perplexity's
// 16-bit log-prob codes: code_i > 0 for logit_i within 16 of the max; decoded
// log p_i = scale * code_i + min_log_prob), in one of two forms, every array in backend memory:
// - logits (n, v) set: full base logits, encoded row by row exactly as encode_dist() does;
// - otherwise the codec's sparse rows: scale[r], min_log_prob[r], and entries
//   offsets[r] .. offsets[r+1]-1 (offsets: n+1 values, offsets[0] = 0) of ids (ascending within
//   a row) and codes (> 0).
struct EvalBase {
  const float* logits = nullptr;
  const float* scale = nullptr;
  const float* min_log_prob = nullptr;
  const int64_t* offsets = nullptr;
  const int32_t* ids = nullptr;
  const uint16_t* codes = nullptr;
};

// Memory. Every pointer an op reads or writes (activations, ids, positions, outputs, the
// float* weights of rms_norm and biases, the KV cache) lives in the backend's memory: host
// memory for reference_ops() and cpu_ops(), device memory for the CUDA backend. Model code owns
// such memory only through Buffer (backend/buffer.h), never reads or writes its bytes, and moves
// data in and out with upload/download. Weight matrices arrive as WeightView: `data` is host
// memory (the mapped file); a backend that cannot read host memory uses `prepared`.
class Ops {
 public:
  virtual ~Ops() = default;
  virtual const char* name() const = 0;

  // ---- memory (defaults: host memory)
  virtual bool host_memory() const { return true; }
  virtual void* alloc(size_t bytes) const;  // 64-byte aligned, uninitialized; throws samq::Error
  virtual void release(void* p) const;
  virtual void upload(void* dst, const void* src, size_t bytes) const;    // host -> backend
  virtual void download(void* dst, const void* src, size_t bytes) const;  // backend -> host (waits)
  virtual void copy(void* dst, const void* src, size_t bytes) const;      // backend -> backend
  virtual void zero(void* dst, size_t bytes) const;
  virtual void synchronize() const {}
  // The backend's memory in bytes: its size, what is free now, and the peak this process has had
  // in use (host backends: the machine's RAM, MemAvailable and the peak RSS; CUDA: the device,
  // and the high-water mark of samq's allocator pool).
  struct MemoryInfo {
    int64_t total = 0, free = 0, peak_used = 0;
  };
  virtual MemoryInfo memory_info() const;
  // Where it runs, for reports: "cpu", "cuda:0 (NVIDIA H200)".
  virtual std::string device() const { return "cpu"; }

  // x = f32(f16(x)) elementwise, round to nearest even (llama.cpp's f16 KV cache).
  virtual void round_f16(float* x, int64_t n) const;

  // y(n, w.rows) = round(x)(n, w.cols) · W^T (+ bias(w.rows) if not null). x is f32 and is
  // first rounded as ggml's CPU matmul rounds it for W's type (Q8_K for K-quants, Q8_0 for
  // Q8_0/Q4_0/Q5_0, BF16/F16 for those weights, none for F32: backend/cpu/act_quant.h), so
  // results track llama.cpp's.
  virtual void matmul(const float* x, int64_t n, const WeightView& w, const float* bias,
                      float* y) const = 0;
  // A prepared form of w for this backend's matmul (same results up to float accumulation
  // order), or nullptr when it has none for w. w.data must outlive the result.
  virtual std::unique_ptr<PreparedWeight> prepare_weight(const WeightView&) const { return nullptr; }
  // out(n, w.cols) = rows ids[0..n) of W, converted to f32 (embedding lookup).
  virtual void get_rows(const WeightView& w, const int32_t* ids, int64_t n, float* out) const = 0;
  // y(n, d) = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps) per row; weight may be null.
  // rstd_out (n) optional. y may alias x.
  virtual void rms_norm(const float* x, int64_t n, int64_t d, const float* weight, float eps,
                        float* y, float* rstd_out) const = 0;
  // In place on x(n, n_head*head_dim): rotate each head's first n_rot dims by pos[i].
  virtual void rope(float* x, int64_t n, int64_t n_head, int64_t head_dim, const int32_t* pos,
                    const RopeParams& p) const = 0;
  virtual void attention(const AttentionArgs& a) const = 0;
  // y(n) = silu(gate) * up, silu(g) = g / (1 + exp(-g)). y may alias gate or up.
  virtual void swiglu(const float* gate, const float* up, int64_t n, float* y) const = 0;
  // In place per row of x(n, d): x = exp(x - max) / sum.
  virtual void softmax(float* x, int64_t n, int64_t d) const = 0;
  // y(n) = a + b. y may alias a or b.
  virtual void add(const float* a, const float* b, int64_t n, float* y) const = 0;
  // dst[r * dst_stride + c] = src[r * src_stride + c] for r < rows, c < cols (a block of columns
  // of a row-major matrix: the fused outputs of phi3's attn_qkv and gate+up ffn_up split into q,
  // k, v / gate, up, and back for their gradients). Default: a host loop; a backend without
  // host memory that does not override it fails naming the op.
  virtual void copy_cols(float* dst, int64_t dst_stride, const float* src, int64_t src_stride, int64_t rows,
                         int64_t cols) const;

  // ---- mixture of experts (model/moe.h). Defaults: host loops (backend/cpu/ops_moe.cpp, the
  // reference; deterministic, sequential in row order); a backend without host memory that does
  // not override them fails naming the op.
  // Router: per row of logits (n, n_expert), p = softmax(row); ids[t, 0..k) = the k largest p in
  // descending order (lower index first on ties), weights[t, j] = p[ids[t, j]], divided by their
  // sum when norm. ids, weights: (n, k).
  virtual void moe_route(const float* logits, int64_t n, int64_t n_expert, int64_t k, bool norm, int32_t* ids,
                         float* weights) const;
  // out[i] = x[rows[i]] for i < n, rows of d floats.
  virtual void gather_rows(const float* x, int64_t d, const int32_t* rows, int64_t n, float* out) const;
  // out[rows[i]] += scale[i] * src[i] for i = 0..n-1 in that order (scale null: 1).
  virtual void scatter_add_rows(const float* src, int64_t d, const int32_t* rows, const float* scale, int64_t n,
                                float* out) const;

  // out[r] for the n rows of logits (n, v) (the model's logits, next-token ids next (n) and, when
  // base is not null, the base distributions of the same rows; out (n) in backend memory):
  // exactly what eval/perplexity.cpp's KldAccumulator computes per scored position (log-sum-exp
  // and KL terms summed in double; first index on ties for both argmaxes; no base: only nll).
  // base itself is a host struct whose arrays are in backend memory. Default: a host loop
  // (backend/cpu/ops_eval.cpp, the reference); CUDA: one block per row.
  virtual void eval_token_stats(const float* logits, int64_t n, int64_t v, const int32_t* next,
                                const EvalBase* base, EvalTokenStats* out) const;
};

const Ops& reference_ops();  // scalar oracle (src/backend/cpu/ops_reference.cpp)
const Ops& cpu_ops();        // fast CPU path (src/backend/cpu/ops_cpu.cpp)

// Row r of W as f32 (n = w.cols values); used by both implementations and by tests.
void dequantize_weight_row(const WeightView& w, int64_t r, float* out);

}  // namespace samq
