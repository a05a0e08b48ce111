// Internal interface between the files of the CUDA backend: the device form of a weight, and the
// forward ops as functions of a Device (cuda_ops.cu, cuda_attention.cu) that the backward table
// (cuda_backward.cu) reuses. Callers hold a Scope on the device.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/cuda/cuda_common.cuh"
#include "backend/ops.h"

namespace samq::cuda {

// A tensor uploaded by prepare_weight: its bytes in its own ggml type, rows packed
// row_bytes = ggml_row_size(type, cols) apart. backend_data() is the device pointer (model code
// reads 1-D F32 tensors through it).
struct CudaWeight final : PreparedWeight {
  Device* dev = nullptr;
  GgmlType type = GgmlType::F32;
  int64_t rows = 0, cols = 0, row_bytes = 0;
  void* data = nullptr;
  // A quantized weight expanded once to the order-1 bf16x3 form the split GEMM reads (3 cols
  // bf16 per row), kept while the weight lives, within the process's cache budget
  // (cuda_ops.cu split3_cache_budget); null until first used or when over the budget.
  mutable uint16_t* split3 = nullptr;
  mutable int64_t split3_bytes = 0;
  ~CudaWeight() override;
  const void* backend_data() const override { return data; }
};

// w's device form on d, or samq::Error naming `op`, the weight's shape and type and the fix.
const CudaWeight& uploaded(const WeightView& w, const Device& d, const char* op);

// The n int32 at ids (device), downloaded (waits), each checked to lie in [0, limit).
std::vector<int32_t> checked_ids(Device& d, const int32_t* ids, int64_t n, int64_t limit, const char* what);

// Forward ops (semantics of backend/ops.h).
void rms_norm(Device& d, const float* x, int64_t n, int64_t dim, const float* weight, float eps, float* y,
              float* rstd_out);
// negate: rotate by -pos[t] (the backward pass).
void rope(Device& d, float* x, int64_t n, int64_t n_head, int64_t head_dim, const int32_t* pos, const RopeParams& p,
          bool negate);
void softmax(Device& d, float* x, int64_t n, int64_t dim);
void attention(Device& d, const AttentionArgs& a);
// BackwardOps::attention_backward: recomputes the softmax weights per group of heads.
void attention_backward(Device& d, const AttentionArgs& a, const float* dout, float* dq, float* dk, float* dv);

// Ops::eval_token_stats (cuda_eval.cu).
void eval_token_stats(Device& d, const float* logits, int64_t n, int64_t v, const int32_t* next, const EvalBase* base,
                      EvalTokenStats* out);

// Rows of weight tiles dequantized at a time into f32 scratch (about 256 MiB).
int64_t weight_tile_rows(int64_t rows, int64_t cols);

}  // namespace samq::cuda
