// Backward ops: the gradient of every forward op of backend/ops.h, for the sensitivity
// analysis (src/analyze), as a table (BackwardOps: one per backend, like Ops) over the CPU
// functions below (the CPU implementation and the tests' subject). Each op reuses the forward op table for what it needs to recompute
// (rms_norm's x_hat and rstd, rope's rotation run at negated positions, attention's softmax
// weights, softmax of the logits), so there is no second copy of the forward code.
//
// Conventions (as backend/ops.h): row-major (rows, cols); activations (n_tokens, width) f32;
// weights (out_features, in_features) as f32 here (the analysis works on f32 copies).
// Every gradient output is ACCUMULATED (+=) so that shared inputs (q/k/v read the same
// normed activations) sum naturally; callers zero buffers first. Optional outputs are null.
// Reductions over tokens run in a fixed order: results do not depend on the thread count.
//
// Oracle: tests/grad/ checks each op against central finite differences of a double
// precision forward written independently in the test.
#pragma once
#include <cstdint>

#include "backend/ops.h"

namespace samq {

// y(n, rows) = x(n, cols) W^T + b:
//   dx(n, cols) += dy W;  dw(rows, cols) += dy^T x;  db(rows) += sum_t dy[t].
void matmul_backward(const float* x, const float* dy, int64_t n, const float* w, int64_t rows,
                     int64_t cols, float* dx, float* dw, float* db);

// y = x * rstd * weight (per row of d):
//   x_hat = x * rstd;  g = dy * weight;
//   dx += rstd * (g - x_hat * mean(g * x_hat));  dweight += sum_t dy * x_hat.
// Also the q/k norm of qwen3: call with rows = n * n_head and d = head_dim.
void rms_norm_backward(const Ops& ops, const float* x, const float* dy, int64_t n, int64_t d,
                       const float* weight, float eps, float* dx, float* dweight);

// RoPE is a rotation per pair, so its transpose is the rotation by the negated angle: the
// forward rope at positions -pos. dx is rotated in place (gradient w.r.t. the pre-rope input).
void rope_backward(const Ops& ops, float* dx, int64_t n, int64_t n_head, int64_t head_dim,
                   const int32_t* pos, const RopeParams& p);

// Causal GQA attention of one sequence (a.n_kv keys; query t sees keys 0..pos[t], or the last
// a.window of them). The mask enters only through probs (0 where masked), so the formulas below
// hold for any mask.
// probs: the softmax weights (n_head, n_tokens, n_kv), e.g. from the forward's a.probs.
// With P = probs of head h and kv head g = h / (n_head / n_head_kv):
//   dV_g += P^T dO_h;  dP = dO_h V_g^T;  dS = P * (dP - rowsum(P * dP));
//   dQ_h += scale dS K_g;  dK_g += scale dS^T Q_h.
// dq (n_tokens, n_head*hd), dk and dv (n_kv, n_head_kv*hd); any may be null.
void attention_backward(const AttentionArgs& a, const float* probs, const float* dout, float* dq,
                        float* dk, float* dv);

// y = silu(g) * u:  dg += dy * u * s * (1 + g * (1 - s)), s = sigmoid(g);  du += dy * silu(g).
void swiglu_backward(const float* gate, const float* up, const float* dy, int64_t n, float* dgate,
                     float* dup);

// Softmax + cross-entropy over rows of logits (n, v), label[t] < 0 means no loss at row t:
//   loss = sum_t scale * -log p_t[label_t];  dlogits[t] = scale * (p_t - onehot(label_t)).
// dlogits is written (not accumulated); rows without a label get zeros. Returns the loss.
// If probs_out is not null it receives the softmax (n, v).
double softmax_cross_entropy_backward(const Ops& ops, const float* logits, const int32_t* labels,
                                      int64_t n, int64_t v, float scale, float* dlogits,
                                      float* probs_out = nullptr);

// Embedding lookup out[t] = E[ids[t]]:  dE[ids[t]] += dy[t] (rows in token order).
void embedding_backward(const int32_t* ids, const float* dy, int64_t n, int64_t d, float* dE);

// Bias add y = x + b (per row):  db += sum_t dy[t].
void bias_backward(const float* dy, int64_t n, int64_t d, float* db);

// argmax_i (logits[i] + gumbel_noise(key, i)) in double, the first index on ties: a draw from
// softmax(logits) (backend/gumbel.h).
int32_t gumbel_label(const float* logits, int64_t v, uint64_t key);

// The backward and statistics ops of one backend, over its memory (every pointer in the
// backend's memory, as for Ops; host arrays are named so). model/backward.h and src/analyze
// are written once over this table. Reductions over tokens run in a fixed order on every
// backend: results do not depend on the thread count.
class BackwardOps {
 public:
  virtual ~BackwardOps() = default;
  virtual const char* name() const = 0;
  // The forward table of the same backend (recomputations, memory).
  virtual const Ops& ops() const = 0;

  // As matmul_backward above, with w the forward weight in any type (its prepared form when the
  // backend has one); dx, dw, db may be null and are accumulated (+=).
  virtual void matmul_backward(const float* x, const float* dy, int64_t n, const WeightView& w, float* dx,
                               float* dw, float* db) const = 0;
  virtual void rms_norm_backward(const float* x, const float* dy, int64_t n, int64_t d, const float* weight,
                                 float eps, float* dx, float* dweight) const = 0;
  virtual void rope_backward(float* dx, int64_t n, int64_t n_head, int64_t head_dim, const int32_t* pos,
                             const RopeParams& p) const = 0;
  // Recomputes the softmax weights itself (a.probs and a.out are not used); a.pos as in forward.
  virtual void attention_backward(const AttentionArgs& a, const float* dout, float* dq, float* dk,
                                  float* dv) const = 0;
  virtual void swiglu_backward(const float* gate, const float* up, const float* dy, int64_t n, float* dgate,
                               float* dup) const = 0;
  // labels (n) in backend memory. Returns the loss (waits for the device).
  virtual double softmax_cross_entropy_backward(const float* logits, const int32_t* labels, int64_t n, int64_t v,
                                                float scale, float* dlogits, float* probs_out) const = 0;
  // labels[t] = gumbel_label(logits + t*v, v, keys[t]) for each row t with keys[t] >= 0, else -1:
  // draws from softmax(logits) by the Gumbel-max trick (backend/gumbel.h). keys: n int64 in
  // backend memory.
  virtual void sample_labels(const float* logits, int64_t n, int64_t v, const int64_t* keys,
                             int32_t* labels) const = 0;
  virtual void embedding_backward(const int32_t* ids, const float* dy, int64_t n, int64_t d, float* dE) const = 0;
  virtual void bias_backward(const float* dy, int64_t n, int64_t d, float* db) const = 0;

  // ---- mixture of experts (defaults: host loops in backend/cpu/ops_moe.cpp; device backends
  // without an override fail naming the op)
  // Through Ops::moe_route with the choice ids (n, k) held fixed (top-k is piecewise constant):
  // p = softmax(logits), w_j = p[ids_j] (/ S, S = sum_j p[ids_j], when norm).
  //   norm:  dp[ids_j] = (dw_j - sum_i dw_i w_i) / S;  else dp[ids_j] = dw_j (0 elsewhere);
  //   dlogits += p * (dp - sum_e p_e dp_e).
  virtual void moe_route_backward(const float* logits, const int32_t* ids, const float* dweights, int64_t n,
                                  int64_t n_expert, int64_t k, bool norm, float* dlogits) const;
  // Through Ops::scatter_add_rows (out[rows[i]] += scale[i] * src[i]), given dout:
  //   dsrc[i] += scale[i] * dout[rows[i]];  dscale[i] += src[i] . dout[rows[i]]  (either may be null).
  virtual void scatter_add_rows_backward(const float* src, const float* dout, int64_t d, const int32_t* rows,
                                         const float* scale, int64_t n, float* dsrc, float* dscale) const;

  // ---- statistics of the sensitivity analysis
  // acc[j] += sum_t v[t, j]^2 over the rows of v (n, w), in double, in a fixed order (token order
  // on the CPU; on CUDA fixed token segments added in order, the same to ~1e-16 relative).
  virtual void col_sq_accumulate(const float* v, int64_t n, int64_t w, double* acc) const = 0;
  // acc[i] += g[i]^2 (float).
  virtual void sq_accumulate(const float* g, int64_t n, float* acc) const = 0;
  // sum_i g[i]^2 in double (waits for the device).
  virtual double sum_sq(const float* g, int64_t n) const = 0;
  // sq_accumulate and sum_sq fused, without waiting: acc[i] += g[i]^2 when acc is not null, and
  // *sum_out = sum_i g[i]^2 (the value sum_sq returns, bit for bit) when sum_out is not null;
  // sum_out is one double in backend memory, read back by the caller when it needs it (many
  // tensors' sums with one download). One pass over g on the GPU. Default: the two ops above.
  virtual void sq_accumulate_sum(const float* g, int64_t n, float* acc, double* sum_out) const;
  // H(cols, cols) += x^T x over the rows of x (n, cols), in double: the upper triangle only
  // (H[i*cols + j], j >= i); the caller mirrors it once at the end.
  virtual void xtx_accumulate(const float* x, int64_t n, int64_t cols, double* H) const = 0;
  // The mean of such a sum as float, mirrored, into host memory `out` (cols x cols):
  // out[i*cols + j] = float(H[min(i,j)*cols + max(i,j)]) / count (HessianFile::mean's values). The
  // default reads H through ops().download and works on the host; the GPU does it on the device
  // (H never crosses PCIe in double).
  virtual void xtx_mean(const double* H, int64_t cols, float count, float* out) const;
};

const BackwardOps& cpu_backward_ops();        // over cpu_ops() (src/backend/cpu/ops_backward.cpp)
const BackwardOps& reference_backward_ops();  // over reference_ops() (the same functions)

}  // namespace samq
