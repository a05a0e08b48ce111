// Shared machinery of the CUDA backend (backend/cuda/cuda_backend.h): one Device per GPU (its
// stream, cuBLAS handle, memory pool for temporaries, lock), error checks that throw
// samq::Error naming the call and the device, stream-ordered temporaries, row-major GEMM
// wrappers over cuBLAS, and the deterministic block reductions the kernels share.
//
// Rules every file of the backend follows:
// - All work of a device is enqueued on its one stream, in call order; nothing needs an event.
// - Every CUDA/cuBLAS return code is checked; every kernel launch is followed by check_launch.
// - No float atomics: every reduction has a fixed order (block_sum_double's tree, or a thread
//   looping in index order), so results do not vary from run to run.
// - Where a value must equal the CPU's bit for bit (dequantized weights, rounded activations,
//   RoPE rotations), kernels use __fmul_rn/__fadd_rn/__fsub_rn so that nvcc cannot contract
//   into FMAs (the CPU is built with -ffp-contract=off).
#pragma once
// fmt configures itself differently under nvcc (__NVCC__: no constexpr, yet consteval format
// strings), which does not compile; seen as the host compiler it works, with the same
// configuration as the rest of samq (so no ODR differences).
#pragma push_macro("__NVCC__")
#undef __NVCC__
#include <fmt/format.h>

#include "core/error.h"
#pragma pop_macro("__NVCC__")

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "backend/ops.h"

namespace samq::cuda {

struct Device {
  int index = 0;
  std::string label;  // "cuda:0 (NVIDIA H200)"
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cudaMemPool_t pool = nullptr;  // temporaries of the ops (stream-ordered, cached)
  std::recursive_mutex mu;       // one op at a time per device (host-side state, caches)
  // RoPE inverse frequencies already on the device, keyed by their values.
  struct RopeFreqs {
    std::vector<float> inv;
    float* dev = nullptr;
  };
  std::vector<RopeFreqs> rope_cache;
};

// The device of that index, opened on first use (never destroyed: CUDA's own teardown at exit
// must not race with ours). Throws when the index does not exist or the device cannot be opened.
Device& device(int index);

void check(cudaError_t e, const char* what, const Device& d);
void check_blas(cublasStatus_t s, const char* what, const Device& d);
// After a kernel launch: the launch error, if any, names the kernel.
void check_launch(const char* kernel, const Device& d);

// Makes d current on this thread and holds its lock for the duration of one op.
class Scope {
 public:
  explicit Scope(Device& d);
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  std::unique_lock<std::recursive_mutex> lock_;
};

// Device memory for the duration of one op, allocated and freed in stream order from d.pool.
class Tmp {
 public:
  Tmp(Device& d, size_t bytes);
  ~Tmp();
  Tmp(const Tmp&) = delete;
  Tmp& operator=(const Tmp&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  Device* d_;
  void* p_ = nullptr;
};

// Byte budgets of the ops' scratch: dequantized weight tiles, 16-bit halves and double copies of
// activations (scratch_bytes, 256 MiB), attention scores per chunk (attention_bytes, 512 MiB).
// SAMQ_CUDA_SCRATCH_BYTES / SAMQ_CUDA_ATTN_BYTES override them (read per call: the tests force
// the tiled and chunked paths on small shapes).
int64_t scratch_bytes();
int64_t attention_bytes();

// Grid size for a grid-stride loop over n items.
inline unsigned grid_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > (1 << 20)) b = 1 << 20;
  return unsigned(b);
}

// ---- GEMM, row-major (as cblas_sgemm(CblasRowMajor, ...)):
//   C(M, N) = alpha * op(A)(M, K) . op(B)(K, N) + beta * C
// op(A) = A (stored (M, K), row stride lda) or, with ta, A^T (A stored (K, M)); same for B.
// f32: FP32 compute, no TF32 (CUBLAS_COMPUTE_32F_PEDANTIC).
void gemm_f32(Device& d, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// batch products, matrix i at A + i*sa, B + i*sb, C + i*sc.
void gemm_f32_batched(Device& d, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                      int64_t lda, int64_t sa, const float* B, int64_t ldb, int64_t sb, float beta, float* C,
                      int64_t ldc, int64_t sc, int64_t batch);
// A and B of one 16-bit type (CUDA_R_16BF or CUDA_R_16F), C f32, FP32 accumulation: the
// products of 16-bit values are exact in f32, so only the summation order differs from f32.
void gemm_16(Device& d, cudaDataType_t t, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
             const void* A, int64_t lda, const void* B, int64_t ldb, float beta, float* C, int64_t ldc);

// ---- reductions inside one block (blockDim.x a power of two, <= 1024): a fixed tree over
// shared memory, so the result depends only on the inputs, never on timing. Every thread of the
// block must call them; all threads get the result.
template <class T>
__device__ inline T block_reduce(T v, T* sh, int op /*0 sum, 1 max, 2 min*/) {
  const int tid = threadIdx.x;
  __syncthreads();  // sh may still be read by a previous reduction
  sh[tid] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) {
      const T a = sh[tid], b = sh[tid + s];
      sh[tid] = op == 0 ? a + b : op == 1 ? (a > b ? a : b) : (a < b ? a : b);
    }
    __syncthreads();
  }
  return sh[0];
}

constexpr int kReduceThreads = 256;

}  // namespace samq::cuda
