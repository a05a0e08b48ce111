// Sensitivity statistics accumulated over calibration chunks, per weight tensor:
//   - gradient L2 norm summed over batches (one batch = one chunk; text labels) — the
//     baseline signal of the article samq started from;
//   - the Fisher diagonal, exact ("full": the squared chunk gradient, per element) and
//     factored (E[(dL/dy)^2] per output row x E[x^2] per input column, O(rows + cols)),
//     each with the text's next tokens as labels (empirical Fisher) and with labels drawn
//     from the model's own predictions (model Fisher: the one that governs the KL divergence
//     to the unquantized model, since E_y~p[g g^T] is its Hessian at zero perturbation);
//   - per input column sums of x^2 with counts (the importance matrix, analyze/imatrix.h).
//
// MoE: a stacked expert tensor (n_mat experts) keeps its row statistics per stacked row (so per
// expert), and its column sums and token counts per expert, from the rows routed to each (the
// backward's on_expert_linear hook). Its Fisher is therefore the routing-weighted one: a token
// adds to expert e's statistics only when routed to e, with its routing weight inside dL/dy. An
// expert no calibration token was routed to has no statistics; it is given the mean of the routed
// experts' (fill_unrouted_experts): calibration text says nothing about it, other text may route
// to it, and zero would let the planner starve it; an average expert is the neutral prior. Its
// importance matrix stays 1.0 per column (llama-quantize's rule for an expert without data).
//
// Normalization: every Fisher here is per scored token, so 0.5 * sum F * (w - q(w))^2 is the
// predicted increase of the MEAN per-token loss (nats), the unit of sensitivity.json.
// With model-sampled labels the per-position score functions are uncorrelated, so the squared
// gradient of a chunk's summed loss is an unbiased estimate of the sum of per-token Fishers.
//
// One chunk costs a forward and two backward passes (empirical, model labels). Model labels are
// drawn by the Gumbel-max trick from counter-based noise keyed by (seed, chunk, position)
// (backend/gumbel.h: robust to tiny logit differences between backends) and every reduction runs in
// a fixed order, so results do not depend on the thread count.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/buffer.h"
#include "backend/ops.h"
#include "backend/ops_backward.h"
#include "model/backward.h"
#include "model/model.h"

namespace samq {

enum FisherLabels : int { kEmpirical = 0, kModelLabels = 1 };

struct TensorStats {
  std::string name, kind;
  int layer = -1;
  int64_t rows = 0, cols = 0;
  bool linear = false;     // a matmul weight (hooks give x and dy)
  bool embedding = false;  // token_embd (rows looked up)
  double grad_norm_sum = 0;            // sum over chunks of ||dL/dW||_2 (text labels)
  std::vector<float> g2[2];            // full: sum over chunks of (dL/dW)^2, per element
  std::vector<double> row_sq[2];       // factored: sum over token rows of dy_j^2 (linear), or
                                       //   of dy_i^2 per column (embedding)
  std::vector<double> col_sq;          // sum over token rows of x_i^2 (linear inputs)
  std::vector<double> row_count;       // embedding: occurrences of each row as an input token
  int64_t n_rows_seen = 0;             // token rows that went through this tensor
  // MoE: n_mat stacked experts; col_sq then holds n_mat * cols sums (expert-major), and
  // mat_rows_seen the token rows routed to each expert (as measured; 0 for an unrouted expert,
  // whose statistics are filled with the routed experts' mean: filled[e]).
  int64_t n_mat = 1;
  std::vector<double> mat_rows_seen;  // measured routing counts
  std::vector<double> mat_count;      // counts the statistics stand for (filled: the routed mean)
  std::vector<bool> filled;
  int64_t mat_rows() const { return rows / n_mat; }
};

// Gives every expert of s without routed tokens the mean statistics of the routed ones (see the
// top of this file): row sums, column sums, counts and the full Fisher rows. No-op for dense
// tensors and when no expert was routed to.
void fill_unrouted_experts(TensorStats& s);

struct FisherOptions {
  bool full = true;          // keep the exact diagonal (rows*cols floats per tensor and label kind)
  uint64_t seed = 0x5a3d;    // model-label sampling
  int64_t loss_from = 0;     // positions < loss_from carry no loss (0: all but the last)
};

// The layer-streamed pass (run_streamed): see analyze/layer_stream.h.
struct StreamOptions {
  std::string scratch_dir;  // residual checkpoints in files there; empty: host memory
  bool progress = true;
  // Called once per tensor as soon as its statistics are final (host copies, with the counts of
  // the whole calibration set); its full Fisher rows are freed when it returns (it may move them
  // out, e.g. to predict on another thread).
  std::function<void(TensorStats&)> on_tensor_done;
};

class SensitivityAccumulator {
 public:
  // The statistics accumulate in the backend's memory (bops); the host copies in stats() are
  // brought up to date on first read after add_chunk.
  SensitivityAccumulator(const Model& m, const BackwardOps& bops, FisherOptions o = {});
  // streamed: nothing is allocated per tensor up front; use run_streamed instead of add_chunk.
  SensitivityAccumulator(const Model& m, const BackwardOps& bops, FisherOptions o, bool streamed);
  ~SensitivityAccumulator();

  // One calibration chunk (fresh sequence); chunk_index keys the label sampling.
  void add_chunk(std::span<const int32_t> tokens, int64_t chunk_index);

  // All chunks, layer by layer (analyze/layer_stream.h): the same statistics as add_chunk over
  // the chunks in order, bit for bit, holding one layer's weights, gradients and Fisher at a
  // time. `m` is the accumulator's model, loaded with prepare_layers = false.
  void run_streamed(Model& m, const std::vector<std::vector<int32_t>>& chunks, const StreamOptions& so);

  const std::vector<TensorStats>& stats() const;
  const TensorStats* find(const std::string& name) const;

  int64_t n_chunks() const { return n_chunks_; }
  int64_t n_tokens() const { return n_tokens_; }         // token rows seen
  int64_t n_loss_tokens() const { return n_loss_; }      // scored positions (per label kind)
  double mean_loss() const { return n_loss_ ? loss_sum_ / double(n_loss_) : 0.0; }
  const FisherOptions& options() const { return opt_; }

  // Per-element Fisher of row r of tensor s (cols values), per scored token.
  // factored: from row_sq x col_sq (or row_count x row_sq for the embedding).
  void fisher_row(const TensorStats& s, int labels, bool factored, int64_t r, float* out) const;
  // Sum of the Fisher diagonal of a tensor (full when kept, else factored).
  double fisher_trace(const TensorStats& s, int labels) const;
  // Mean x^2 per input column (the importance matrix), or empty when not a linear weight. For
  // stacked experts: n_mat * cols values, 1.0 for an expert without routed tokens.
  std::vector<float> imatrix(const TensorStats& s) const;

 private:
  // Backend-memory accumulators of one tensor (mirrors of TensorStats' vectors).
  struct DeviceStats {
    Buffer<float> g2[2];
    Buffer<double> row_sq[2], col_sq;
  };
  void sync() const;
  void open_tensor(size_t i);   // allocates (zeroed) backend accumulators of tensor i
  void close_tensor(size_t i);  // copies them to the host and frees them
  // dL/dlogits of one label kind for the current chunk (labels as add_chunk draws them);
  // returns the chunk's summed loss for text labels.
  double dlogits(int k, std::span<const int32_t> tokens, int64_t chunk_index, const float* logits, float* dl);
  BackwardHooks hooks_for(int k, const std::unordered_map<std::string, size_t>& by_name);
  void reduce_gradients(int k, GradientBuffers& g, const std::unordered_map<std::string, size_t>& by_name,
                        const std::string& skip = {});

  const Model& m_;
  const BackwardOps& bops_;
  const Ops& ops_;
  FisherOptions opt_;
  std::unique_ptr<ModelGradient> mg_;
  GradientBuffers grads_;
  mutable std::vector<TensorStats> stats_;
  std::vector<DeviceStats> dev_;
  mutable bool dirty_ = false;
  Buffer<float> dl_;
  Buffer<int32_t> labels_;
  Buffer<int64_t> keys_;
  Buffer<double> sums_;  // per-tensor sums of squares of one chunk gradient
  int64_t n_chunks_ = 0, n_tokens_ = 0, n_loss_ = 0;
  double loss_sum_ = 0;
};

// The key of the model-label draw at (seed, chunk, position) (backend/gumbel.h).
uint64_t label_key(uint64_t seed, uint64_t a, uint64_t b);

}  // namespace samq
