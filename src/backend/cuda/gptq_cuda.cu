// GPTQ on an NVIDIA GPU (backend/cuda/gptq_cuda.h): cuSOLVER for U, the CPU's in-batch step on
// the host, the beyond-batch updates of W on the device.
#include "backend/cuda/cuda_owners.cuh"  // first: fmt under nvcc

#include "backend/cuda/gptq_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "core/parallel.h"
#include "quant/gptq.h"
#include "quant/gptq_grid_impl.h"
#include "quant/block_dispatch_impl.h"

namespace samq {
namespace {

// Status checks of cuBLAS and cuSOLVER (the CUDA runtime's, the owners and SAMQ_CK: cuda_owners.cuh).
using namespace cuda_owners;
using cuda_owners::check;  // in the overload set with the cuBLAS and cuSOLVER checks below

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail("gptq (CUDA): {} failed: {} ({})", what, cublasGetStatusString(s), int(s));
}

const char* cusolver_status_name(cusolverStatus_t s) {
  switch (s) {
    case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    default: return "cuSOLVER error";
  }
}

void check(cusolverStatus_t s, const char* what) {
  if (s != CUSOLVER_STATUS_SUCCESS) fail("gptq (CUDA): {} failed: {} ({})", what, cusolver_status_name(s), int(s));
}


class Event {
 public:
  Event() { SAMQ_CK(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() { cudaEventDestroy(e_); }
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

class Solver {
 public:
  explicit Solver(cudaStream_t s) {
    SAMQ_CK(cusolverDnCreate(&h_));
    const cusolverStatus_t st = cusolverDnCreateParams(&params_);
    if (st != CUSOLVER_STATUS_SUCCESS) {
      cusolverDnDestroy(h_);
      check(st, "cusolverDnCreateParams(&params_)");
    }
    try {
      SAMQ_CK(cusolverDnSetStream(h_, s));
    } catch (...) {
      cusolverDnDestroyParams(params_);
      cusolverDnDestroy(h_);
      throw;
    }
  }
  Solver(const Solver&) = delete;
  Solver& operator=(const Solver&) = delete;
  ~Solver() {
    cusolverDnDestroyParams(params_);
    cusolverDnDestroy(h_);
  }
  cusolverDnHandle_t get() const { return h_; }
  cusolverDnParams_t params() const { return params_; }

 private:
  cusolverDnHandle_t h_ = nullptr;
  cusolverDnParams_t params_ = nullptr;
};

class Blas {
 public:
  explicit Blas(cudaStream_t s) {
    SAMQ_CK(cublasCreate(&h_));
    try {
      SAMQ_CK(cublasSetStream(h_, s));
      // f32 throughout: no TF32 (nor any other reduced precision), whatever the environment says.
      SAMQ_CK(cublasSetMathMode(h_, CUBLAS_PEDANTIC_MATH));
    } catch (...) {
      cublasDestroy(h_);
      throw;
    }
  }
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;
  ~Blas() { cublasDestroy(h_); }
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------------
// Kernels.

constexpr int kTile = 32;  // transposing tiles: 32 x 32 elements, blocks of 32 x 8 threads
constexpr int kTileRows = 8;

// A (n x n, row-major; symmetric) = J Hd J with Hd the CPU's damped H (quant/gptq.cpp: damped()):
// A[i][j] = Hd[p][q], p = n-1-i, q = n-1-j, Hd[p][q] = 0.5 * (H[p][q] + H[q][p]) in double, and on
// the diagonal (d > 0 ? d : 1) + lambda. Same operations in double as the CPU: same bits.
__global__ void damped_reversed_kernel(const float* __restrict__ H, double* __restrict__ A, int64_t n,
                                       double lambda) {
  __shared__ float t1[kTile][kTile + 1];  // t1[y][x] = H[p][q] of element (i0 + y, j0 + x)
  __shared__ float t2[kTile][kTile + 1];  // t2[x][y] = H[q][p] of element (i0 + y, j0 + x)
  const int64_t i0 = int64_t(blockIdx.y) * kTile, j0 = int64_t(blockIdx.x) * kTile;
  const int tx = int(threadIdx.x);
  for (int y = int(threadIdx.y); y < kTile; y += kTileRows) {
    const int64_t i = i0 + y, j = j0 + tx;  // consecutive tx: consecutive (descending) addresses
    if (i < n && j < n) t1[y][tx] = H[(n - 1 - i) * n + (n - 1 - j)];
    const int64_t jj = j0 + y, ii = i0 + tx;  // element (ii, jj) needs H[n-1-jj][n-1-ii]
    if (ii < n && jj < n) t2[y][tx] = H[(n - 1 - jj) * n + (n - 1 - ii)];
  }
  __syncthreads();
  for (int y = int(threadIdx.y); y < kTile; y += kTileRows) {
    const int64_t i = i0 + y, j = j0 + tx;
    if (i >= n || j >= n) continue;
    double v = __dmul_rn(0.5, __dadd_rn(double(t1[y][tx]), double(t2[tx][y])));
    if (i == j) {
      if (!(v > 0)) v = 1.0;
      v = __dadd_rn(v, lambda);
    }
    A[i * n + j] = v;
  }
}

// U[a][b] = Linv(n-1-a, n-1-b) for a <= b, else 0 (U row-major; Linv column-major, lower).
template <typename T>
__global__ void reversed_upper_kernel(const double* __restrict__ Linv, T* __restrict__ U, int64_t n) {
  __shared__ double tile[kTile][kTile + 1];  // tile[y][x]: element (a0 + x, b0 + y)
  const int64_t a0 = int64_t(blockIdx.y) * kTile, b0 = int64_t(blockIdx.x) * kTile;
  const int tx = int(threadIdx.x);
  for (int y = int(threadIdx.y); y < kTile; y += kTileRows) {
    const int64_t a = a0 + tx, b = b0 + y;  // consecutive tx: consecutive rows of one column of Linv
    if (a < n && b < n && a <= b) tile[y][tx] = Linv[(n - 1 - a) + (n - 1 - b) * n];
  }
  __syncthreads();
  for (int y = int(threadIdx.y); y < kTile; y += kTileRows) {
    const int64_t a = a0 + y, b = b0 + tx;
    if (a < n && b < n) U[a * n + b] = a <= b ? T(tile[tx][y]) : T(0);
  }
}

// The first i with !(L[i][i] > 0) or L[i][i] not finite (atomicMin into *first, preset to n).
__global__ void bad_pivot_kernel(const double* __restrict__ L, int64_t n, unsigned long long* first) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const double d = L[i * n + i];
  if (!(d > 0) || !isfinite(d)) atomicMin(first, static_cast<unsigned long long>(i));
}

// W[r][c] -= sum over jj in [0, kb) of E[r][jj] * U[i1 + jj][c] for r < rows, c in [c0, c1), as the
// CPU does it (quant/gptq.cpp: `wr[k] -= e * uj[k]` for jj = 0, 1, ...): w = w - e * u with the
// product and the difference each rounded to float (explicit _rn intrinsics: never contracted to
// an FMA), in ascending jj. 64 x 128 outputs per block of 256 threads, 4 x 8 per thread.
constexpr int kBM = 64, kBN = 128, kBK = 16;

__global__ void __launch_bounds__(256) update_exact_kernel(float* __restrict__ W, int64_t ldw,
                                                           const float* __restrict__ E, int64_t lde,
                                                           const float* __restrict__ U, int64_t ldu, int64_t rows,
                                                           int64_t c0, int64_t c1, int64_t i1, int kb) {
  __shared__ __align__(16) float Es[kBK][kBM + 4];  // Es[kk][m] = E[r0 + m][k0 + kk]
  __shared__ __align__(16) float Us[kBK][kBN];      // Us[kk][x] = U[i1 + k0 + kk][cb + x]
  const int tid = int(threadIdx.x), tx = tid & 15, ty = tid >> 4;
  const int64_t r0 = int64_t(blockIdx.y) * kBM, cb = c0 + int64_t(blockIdx.x) * kBN;
  // This thread's outputs: rows r0 + 4 ty + i (i < 4); columns cb + 4 tx + j and cb + 64 + 4 tx + j
  // (j < 4), i.e. column offset col(j) below for j < 8.
  auto col = [&](int j) { return (j < 4 ? 4 * tx + j : 64 + 4 * tx + (j - 4)); };
  float acc[4][8];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = r0 + 4 * ty + i;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t c = cb + col(j);
      acc[i][j] = (r < rows && c < c1) ? W[r * ldw + c] : 0.0f;
    }
  }
  for (int k0 = 0; k0 < kb; k0 += kBK) {
#pragma unroll
    for (int s = 0; s < (kBM * kBK) / 256; ++s) {
      const int idx = tid + 256 * s, m = idx >> 4, kk = idx & 15;
      const int64_t r = r0 + m;
      const int k = k0 + kk;
      Es[kk][m] = (r < rows && k < kb) ? E[r * lde + k] : 0.0f;
    }
#pragma unroll
    for (int s = 0; s < (kBK * kBN) / 256; ++s) {
      const int idx = tid + 256 * s, kk = idx >> 7, x = idx & 127;
      const int64_t c = cb + x;
      const int k = k0 + kk;
      Us[kk][x] = (c < c1 && k < kb) ? U[(i1 + k) * ldu + c] : 0.0f;
    }
    __syncthreads();
    const int kend = min(kBK, kb - k0);
    for (int kk = 0; kk < kend; ++kk) {
      const float4 e4 = *reinterpret_cast<const float4*>(&Es[kk][4 * ty]);
      const float4 ua = *reinterpret_cast<const float4*>(&Us[kk][4 * tx]);
      const float4 ub = *reinterpret_cast<const float4*>(&Us[kk][64 + 4 * tx]);
      const float e[4] = {e4.x, e4.y, e4.z, e4.w};
      const float u[8] = {ua.x, ua.y, ua.z, ua.w, ub.x, ub.y, ub.z, ub.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = __fsub_rn(acc[i][j], __fmul_rn(e[i], u[j]));
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = r0 + 4 * ty + i;
    if (r >= rows) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t c = cb + col(j);
      if (c < c1) W[r * ldw + c] = acc[i][j];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The in-batch step on the device: gptq_lazy_batch (quant/gptq.cpp) for row r = one thread, on
// columns i1 .. i1+kb of W in place (they are not read again), with U's rows from the device copy.
// At each block start the block is quantized from the current values (quantize_row's weighted
// path with the importance vector), each column takes its grid's nearest level, its error (over
// U's diagonal) goes to E and updates the rest of the batch; at each block end the levels are
// packed and the block written to out. Same float operations as the CPU (this file is compiled
// without FMA contraction).

template <GgmlType T>
__global__ void gptq_batch_kernel(float* W, int64_t n, int64_t rows, int64_t i1, int64_t kb, const float* U,
                                  const float* importance, uint8_t* out, int64_t row_bytes, float* E) {
  using B = typename quant_detail::BlockOf<T>::type;
  constexpr int bs = quant_detail::BlockOf<T>::size;
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  float* wr = W + r * n + i1;
  B blk;
  int lev[bs];
  for (int64_t jl = 0; jl < kb; ++jl) {
    const int64_t j = i1 + jl;
    const int jb = int(j % bs);
    if (jb == 0) {
      float x[bs];
      for (int e = 0; e < bs; ++e) x[e] = wr[jl + e];
      // quantize_row(T, x, blk, bs, importance + j): a legacy type's row is this one block
      quant_detail::quantize_block_as<T>(x, importance + j, quant_detail::row_sigma2(x, bs), blk);
    }
    const ElemGrid g = elem_grid(T, &blk, jb);
    const float* uj = U + j * n + i1;  // uj[kl] = U[j][i1 + kl]
    const float ujj = uj[jl];
    const int q = g.nearest(wr[jl]);
    lev[jb] = q;
    const float e = (wr[jl] - g.value(q)) / ujj;
    E[r * kb + jl] = e;
    for (int64_t kl = jl + 1; kl < kb; ++kl) wr[kl] -= e * uj[kl];
    if (jb == bs - 1) {
      set_block_levels_unchecked(T, &blk, lev);
      const uint8_t* src = reinterpret_cast<const uint8_t*>(&blk);
      uint8_t* dst = out + r * row_bytes + (j / bs) * int64_t(sizeof(B));
      for (size_t k = 0; k < sizeof(B); ++k) dst[k] = src[k];
    }
  }
}

template <GgmlType T>
void launch_batch(float* W, int64_t n, int64_t rows, int64_t i1, int64_t kb, const float* U, const float* imp,
                  uint8_t* out, int64_t row_bytes, float* E, cudaStream_t s) {
  constexpr int kRowThreads = 64;
  gptq_batch_kernel<T><<<unsigned((rows + kRowThreads - 1) / kRowThreads), kRowThreads, 0, s>>>(
      W, n, rows, i1, kb, U, imp, out, row_bytes, E);
  check_launch("gptq_batch_kernel");
}

void batch_on_device(GgmlType t, float* W, int64_t n, int64_t rows, int64_t i1, int64_t kb, const float* U,
                     const float* imp, uint8_t* out, int64_t row_bytes, float* E, cudaStream_t s) {
  switch (t) {
#define SAMQ_GPTQ_CASE(X) \
  case GgmlType::X: return launch_batch<GgmlType::X>(W, n, rows, i1, kb, U, imp, out, row_bytes, E, s);
    SAMQ_GPTQ_CASE(Q2_K) SAMQ_GPTQ_CASE(Q3_K) SAMQ_GPTQ_CASE(Q4_K) SAMQ_GPTQ_CASE(Q5_K) SAMQ_GPTQ_CASE(Q6_K)
    SAMQ_GPTQ_CASE(Q8_0) SAMQ_GPTQ_CASE(Q4_0) SAMQ_GPTQ_CASE(Q4_1) SAMQ_GPTQ_CASE(Q5_0) SAMQ_GPTQ_CASE(Q5_1)
    SAMQ_GPTQ_CASE(IQ4_NL) SAMQ_GPTQ_CASE(IQ4_XS)
#undef SAMQ_GPTQ_CASE
    default: fail("gptq (CUDA): type {} has no device in-batch step", ggml_type_name(t));
  }
}

dim3 tile_grid(int64_t n) {
  const unsigned t = unsigned((n + kTile - 1) / kTile);
  return dim3(t, t);
}

// ---------------------------------------------------------------------------------------------
// L^-1 where L L^T = J Hd J (the CPU's factorization), column-major in the lower triangle of the
// returned n x n buffer (the strict upper triangle holds leftovers of A). Phases timed when asked.
DevBuf<double> inverse_factor(const float* H, int64_t n, double damp, cudaStream_t stream, const Solver& solver,
                              double* t_upload, double* t_factor) {
  if (n <= 0) fail("gptq: empty Hessian");
  const double lambda = gptq_damping_lambda(H, n, damp);
  const size_t nn = size_t(n) * size_t(n);
  auto t0 = std::chrono::steady_clock::now();
  DevBuf<double> A(nn);
  {
    DevBuf<float> dH(nn);
    SAMQ_CK(cudaMemcpyAsync(dH.get(), H, nn * sizeof(float), cudaMemcpyHostToDevice, stream));
    SAMQ_CK(cudaStreamSynchronize(stream));
    if (t_upload) *t_upload = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    damped_reversed_kernel<<<tile_grid(n), dim3(kTile, kTileRows), 0, stream>>>(dH.get(), A.get(), n, lambda);
    check_launch("damped_reversed_kernel");
    SAMQ_CK(cudaStreamSynchronize(stream));  // before dH is freed
  }
  // Workspaces for potrf and trtri (one device buffer of the larger size).
  size_t dws_potrf = 0, hws_potrf = 0, dws_trtri = 0, hws_trtri = 0;
  SAMQ_CK(cusolverDnXpotrf_bufferSize(solver.get(), solver.params(), CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, A.get(),
                                      n, CUDA_R_64F, &dws_potrf, &hws_potrf));
  SAMQ_CK(cusolverDnXtrtri_bufferSize(solver.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F,
                                      A.get(), n, &dws_trtri, &hws_trtri));
  DevBuf<unsigned char> dws(std::max<size_t>(std::max(dws_potrf, dws_trtri), 1));
  std::vector<unsigned char> hws(std::max<size_t>(std::max(hws_potrf, hws_trtri), 1));
  DevBuf<int> info(1);
  DevBuf<unsigned long long> first_bad(1);
  SyncAtExit sync_before_free(stream);  // the buffers above outlive every queued use

  SAMQ_CK(cusolverDnXpotrf(solver.get(), solver.params(), CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, A.get(), n,
                           CUDA_R_64F, dws.get(), dws_potrf, hws.data(), hws_potrf, info.get()));
  int h_info = 0;
  SAMQ_CK(cudaMemcpyAsync(&h_info, info.get(), sizeof(int), cudaMemcpyDeviceToHost, stream));
  SAMQ_CK(cudaStreamSynchronize(stream));
  if (h_info < 0) fail("gptq (CUDA): cusolverDnXpotrf rejected its parameter {}", -h_info);
  // The CPU's message. cuSOLVER reports the order of the first non-positive-definite leading
  // minor; NaN pivots may go unreported, so the factor's diagonal is checked as well.
  int64_t bad = h_info > 0 ? int64_t(h_info) - 1 : n;
  if (bad == n) {
    const unsigned long long preset = static_cast<unsigned long long>(n);
    SAMQ_CK(cudaMemcpyAsync(first_bad.get(), &preset, sizeof(preset), cudaMemcpyHostToDevice, stream));
    bad_pivot_kernel<<<unsigned((n + 255) / 256), 256, 0, stream>>>(A.get(), n, first_bad.get());
    check_launch("bad_pivot_kernel");
    unsigned long long h_first = 0;
    SAMQ_CK(cudaMemcpyAsync(&h_first, first_bad.get(), sizeof(h_first), cudaMemcpyDeviceToHost, stream));
    SAMQ_CK(cudaStreamSynchronize(stream));
    bad = int64_t(h_first);
  }
  if (bad < n) {
    double pivot = 0;
    SAMQ_CK(cudaMemcpyAsync(&pivot, A.get() + bad * n + bad, sizeof(double), cudaMemcpyDeviceToHost, stream));
    SAMQ_CK(cudaStreamSynchronize(stream));
    fail("gptq: the damped Hessian is not positive definite (pivot {} = {})", bad, pivot);
  }

  SAMQ_CK(cusolverDnXtrtri(solver.get(), CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, A.get(), n,
                           dws.get(), dws_trtri, hws.data(), hws_trtri, info.get()));
  SAMQ_CK(cudaMemcpyAsync(&h_info, info.get(), sizeof(int), cudaMemcpyDeviceToHost, stream));
  SAMQ_CK(cudaStreamSynchronize(stream));
  if (h_info < 0) fail("gptq (CUDA): cusolverDnXtrtri rejected its parameter {}", -h_info);
  if (h_info > 0) fail("gptq: the damped Hessian is not positive definite (pivot {} = 0)", h_info - 1);
  if (t_factor) *t_factor = seconds_since(t0);
  return A;
}

template <typename T>
void reversed_upper(const DevBuf<double>& Linv, T* U, int64_t n, cudaStream_t stream) {
  reversed_upper_kernel<T><<<tile_grid(n), dim3(kTile, kTileRows), 0, stream>>>(Linv.get(), U, n);
  check_launch("reversed_upper_kernel");
}

// W[:, c0:c1) -= E * U[i1:i1+kb, c0:c1) on the device.
void update(GptqCudaUpdate mode, const Blas& blas, cudaStream_t stream, float* dW, int64_t n, const float* dE,
            int64_t lde, const float* dU, int64_t rows, int64_t c0, int64_t c1, int64_t i1, int64_t kb) {
  if (c1 <= c0 || rows == 0 || kb == 0) return;
  if (mode == GptqCudaUpdate::Exact) {
    const dim3 grid(unsigned((c1 - c0 + kBN - 1) / kBN), unsigned((rows + kBM - 1) / kBM));
    update_exact_kernel<<<grid, 256, 0, stream>>>(dW, n, dE, lde, dU, n, rows, c0, c1, i1, int(kb));
    check_launch("update_exact_kernel");
  } else {
    // Column-major view: W^T[c0:c1, :] (m x rows, ld n) -= U^T (m x kb, ld n) * E^T (kb x rows, ld lde).
    const float minus_one = -1.0f, one = 1.0f;
    SAMQ_CK(cublasSgemm(blas.get(), CUBLAS_OP_N, CUBLAS_OP_N, int(c1 - c0), int(rows), int(kb), &minus_one,
                        dU + i1 * n + c0, int(n), dE, int(lde), &one, dW + c0, int(n)));
  }
}

}  // namespace

std::vector<double> gptq_inverse_cholesky_upper_cuda(const float* H, int64_t n, double damp, int device) {
  if (n <= 0) fail("gptq: empty Hessian");
  DeviceScope scope(device);
  Stream stream;
  Solver solver(stream.get());
  DevBuf<double> Linv = inverse_factor(H, n, damp, stream.get(), solver, nullptr, nullptr);
  const size_t nn = size_t(n) * size_t(n);
  DevBuf<double> dU(nn);
  SyncAtExit sync_before_free(stream.get());
  reversed_upper(Linv, dU.get(), n, stream.get());
  std::vector<double> U(nn);
  SAMQ_CK(cudaMemcpyAsync(U.data(), dU.get(), nn * sizeof(double), cudaMemcpyDeviceToHost, stream.get()));
  stream.sync();
  return U;
}

size_t gptq_quantize_tensor_cuda(GgmlType t, const float* W, void* dst, int64_t rows, int64_t cols, const float* H,
                                 const GptqOptions& opt, int device) {
  return gptq_quantize_tensor_cuda(t, W, dst, rows, cols, H, opt, device, GptqCudaConfig{});
}

size_t gptq_quantize_tensor_cuda(GgmlType t, const float* W, void* dst, int64_t rows, int64_t cols, const float* H,
                                 const GptqOptions& opt, int device, const GptqCudaConfig& cfg) {
  const auto t_start = std::chrono::steady_clock::now();
  GptqCudaTimings tm;
  gptq_check_shapes(t, rows, cols);
  const int64_t n = cols;
  const int64_t B = gptq_batch_columns(t);
  const size_t row_bytes = size_t(ggml_row_size(t, cols));
  uint8_t* out = static_cast<uint8_t*>(dst);
  const std::vector<float> importance = gptq_importance(H, n, opt.damp);

  DeviceScope scope(device);
  Stream stream;
  const cudaStream_t s = stream.get();
  Solver solver(s);
  Blas blas(s);
  tm.setup = seconds_since(t_start);

  // U as float on the device; its diagonal blocks (one per batch, B x B, ld B) on the host.
  auto t0 = std::chrono::steady_clock::now();
  const size_t nn = size_t(n) * size_t(n);
  DevBuf<float> dU;
  const int64_t n_batches = (n + B - 1) / B;
  std::vector<float> hUd(size_t(n_batches * B * B), 0.0f);
  {
    DevBuf<double> Linv = inverse_factor(H, n, opt.damp, s, solver, &tm.h_upload, nullptr);
    dU = DevBuf<float>(nn);
    reversed_upper(Linv, dU.get(), n, s);
    for (int64_t i1 = 0; i1 < n; i1 += B) {
      const int64_t kb = std::min(B, n - i1);
      SAMQ_CK(cudaMemcpy2DAsync(&hUd[size_t(i1 * B)], size_t(B) * sizeof(float), dU.get() + i1 * n + i1,
                                size_t(n) * sizeof(float), size_t(kb) * sizeof(float), size_t(kb),
                                cudaMemcpyDeviceToHost, s));
    }
    stream.sync();  // before Linv is freed
  }
  tm.inverse = seconds_since(t0) - tm.h_upload;
  if (rows == 0) {
    tm.total = seconds_since(t_start);
    if (cfg.timings) *cfg.timings = tm;
    return 0;
  }

  if (cfg.device_steps) {
    t0 = std::chrono::steady_clock::now();
    DevBuf<float> dW(size_t(rows) * size_t(n));
    DevBuf<float> dE(size_t(rows) * size_t(B));
    DevBuf<float> dImp(static_cast<size_t>(n));
    DevBuf<uint8_t> dOut(size_t(rows) * row_bytes);
    SyncAtExit sync_before_free(s);
    SAMQ_CK(cudaMemcpyAsync(dW.get(), W, size_t(rows) * size_t(n) * sizeof(float), cudaMemcpyHostToDevice, s));
    SAMQ_CK(cudaMemcpyAsync(dImp.get(), importance.data(), size_t(n) * sizeof(float), cudaMemcpyHostToDevice, s));
    stream.sync();
    tm.w_upload = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    for (int64_t i1 = 0; i1 < n; i1 += B) {
      const int64_t i2 = std::min(n, i1 + B), kb = i2 - i1;
      batch_on_device(t, dW.get(), n, rows, i1, kb, dU.get(), dImp.get(), dOut.get(), int64_t(row_bytes), dE.get(), s);
      update(cfg.update, blas, s, dW.get(), n, dE.get(), kb, dU.get(), rows, i2, n, i1, kb);
    }
    SAMQ_CK(cudaMemcpyAsync(out, dOut.get(), size_t(rows) * row_bytes, cudaMemcpyDeviceToHost, s));
    stream.sync();
    tm.batches = seconds_since(t0);
    tm.total = seconds_since(t_start);
    if (cfg.timings) *cfg.timings = tm;
    return size_t(rows) * row_bytes;
  }

  t0 = std::chrono::steady_clock::now();
  DevBuf<float> dW(size_t(rows) * size_t(n));
  DevBuf<float> dE(size_t(rows) * size_t(B));
  PinnedBuf<float> hW(size_t(rows) * size_t(B));  // the current batch's columns, rows x kb
  PinnedBuf<float> hE(size_t(rows) * size_t(B));  // its errors, rows x kb
  Event next_ready;
  SyncAtExit sync_before_free(s);
  SAMQ_CK(cudaMemcpyAsync(dW.get(), W, size_t(rows) * size_t(n) * sizeof(float), cudaMemcpyHostToDevice, s));
  stream.sync();
  tm.w_upload = seconds_since(t0);

  // Batch b's columns reach the host once every earlier batch's update of them is done. After
  // batch b: update batch b+1's columns, download them (event), then update the rest while the
  // host already works on batch b+1.
  t0 = std::chrono::steady_clock::now();
  auto download = [&](int64_t i1, int64_t kb) {
    SAMQ_CK(cudaMemcpy2DAsync(hW.get(), size_t(kb) * sizeof(float), dW.get() + i1, size_t(n) * sizeof(float),
                              size_t(kb) * sizeof(float), size_t(rows), cudaMemcpyDeviceToHost, s));
    SAMQ_CK(cudaEventRecord(next_ready.get(), s));
  };
  download(0, std::min(B, n));
  for (int64_t i1 = 0; i1 < n; i1 += B) {
    const int64_t i2 = std::min(n, i1 + B), kb = i2 - i1;
    SAMQ_CK(cudaEventSynchronize(next_ready.get()));
    const auto th = std::chrono::steady_clock::now();
    const float* Ub = &hUd[size_t(i1 * B)];
    parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
      gptq_lazy_batch(t, hW.get() + r0 * kb, kb, hE.get() + r0 * kb, kb, r1 - r0, i1, i2, Ub, B, importance.data(),
                      out + size_t(r0) * row_bytes, row_bytes);
    });
    tm.host_steps += seconds_since(th);
    if (i2 == n) break;
    SAMQ_CK(cudaMemcpyAsync(dE.get(), hE.get(), size_t(rows) * size_t(kb) * sizeof(float), cudaMemcpyHostToDevice, s));
    const int64_t i3 = std::min(n, i2 + B);
    update(cfg.update, blas, s, dW.get(), n, dE.get(), kb, dU.get(), rows, i2, i3, i1, kb);
    download(i2, i3 - i2);
    update(cfg.update, blas, s, dW.get(), n, dE.get(), kb, dU.get(), rows, i3, n, i1, kb);
  }
  stream.sync();
  tm.batches = seconds_since(t0);
  tm.total = seconds_since(t_start);
  if (cfg.timings) *cfg.timings = tm;
  return size_t(rows) * row_bytes;
}

}  // namespace samq
