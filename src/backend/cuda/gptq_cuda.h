// GPTQ (quant/gptq.h) with its heavy linear algebra on an NVIDIA GPU; same algorithm and output.
//
//  1. H is uploaded, damped and symmetrized exactly as the CPU's damped() (same lambda, same
//     double arithmetic), index-reversed (A = J H J), factored A = L L^T (cusolverDnXpotrf, lower,
//     double), inverted (cusolverDnXtrtri, lower) and reversed back: U = J L^-1 J, the upper
//     Cholesky factor of H^-1 (H^-1 = U^T U), kept on the device as float like the CPU's copy.
//  2. W lives on the device (f32). Per lazy batch of B columns (gptq_batch_columns) the in-batch
//     step runs on the GPU (GptqCudaConfig::device_steps, the default: one thread per row, the
//     same float operations as the CPU's), or the batch is downloaded, the CPU's own in-batch step (gptq_lazy_batch: block quantizer, grids, nearest
//     levels, errors, in-batch updates, packing) runs on the host over rows with parallel_for,
//     the errors E (rows x B) are uploaded, and W[:, i2:] -= E U[i1:i2, i2:] runs on the GPU.
//     The next batch's columns are updated first and downloaded while the rest of the update runs.
//
// The update (GptqCudaUpdate):
//  - Exact (default): a tiled kernel that performs the CPU's own float operations in the CPU's
//    order (w = w - e * u, product and difference each rounded, batch columns in order), so W
//    matches the CPU bit for bit whenever the float copies of U match. The only difference from
//    gptq_quantize_tensor is then U itself: cuSOLVER's double factorization differs from the CPU's
//    in the last bits, which moves a float entry of U by one ulp with probability ~1e-5.
//  - Sgemm: cuBLAS SGEMM (f32, pedantic math: no TF32). Faster, but its summation order differs
//    from the CPU's; an element near a rounding decision can then take the other level, and the
//    changed error propagates along the rest of that row (same quality, different bytes).
//
// Device memory: H as f32 plus its double copy during the factorization (12 n^2 bytes), then U as
// f32 (4 n^2) and W (4 rows n). Host: pinned batch buffers (2 rows B floats) and the diagonal
// blocks of U (n B floats).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/ggml_type.h"
#include "quant/gptq.h"

namespace samq {

enum class GptqCudaUpdate { Exact, Sgemm };

// Seconds per phase of one gptq_quantize_tensor_cuda call (each ends with a stream sync).
struct GptqCudaTimings {
  double setup = 0;      // device selection, handles, streams (first call: CUDA context creation)
  double h_upload = 0;   // H to the device
  double inverse = 0;    // damping, potrf, trtri, U as float, U's diagonal blocks to the host
  double w_upload = 0;   // W to the device
  double batches = 0;    // the batch loop (host in-batch steps, transfers, GPU updates)
  double host_steps = 0; // part of `batches` spent in the host in-batch steps (0 with device_steps)
  double total = 0;
};

struct GptqCudaConfig {
  GptqCudaUpdate update = GptqCudaUpdate::Exact;
  // Where the in-batch steps run: on the GPU (default: one thread per row runs the CPU's own
  // step, gptq_lazy_batch, with the block quantizers and grids shared with the CPU through
  // quant/*_impl.h, so the bytes are the host step's), or on the host as in step 2 above.
  bool device_steps = true;
  GptqCudaTimings* timings = nullptr;  // filled when set
};

// gptq_quantize_tensor (quant/gptq.h) on cuda:`device`. W, H and dst are host memory. Throws
// samq::Error for what the CPU rejects (same messages: unsupported type, shape, a damped H that is
// not positive definite), a missing device, and any failing CUDA/cuBLAS/cuSOLVER call (named).
size_t gptq_quantize_tensor_cuda(GgmlType t, const float* W, void* dst, int64_t rows, int64_t cols, const float* H,
                                 const GptqOptions& opt, int device);
size_t gptq_quantize_tensor_cuda(GgmlType t, const float* W, void* dst, int64_t rows, int64_t cols, const float* H,
                                 const GptqOptions& opt, int device, const GptqCudaConfig& cfg);

// gptq_inverse_cholesky_upper (quant/gptq.h) computed on cuda:`device` (double, row-major, zeros
// below the diagonal): the U that gptq_quantize_tensor_cuda rounds to float.
std::vector<double> gptq_inverse_cholesky_upper_cuda(const float* H, int64_t n, double damp, int device);

}  // namespace samq
