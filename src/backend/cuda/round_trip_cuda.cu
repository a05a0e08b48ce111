// Quantizer round trips and their weighted errors on the GPU (backend/cuda/round_trip_cuda.h).
// Built with -fmad=false (CMakeLists.txt): the shared block quantizers must not be contracted.
#include "backend/cuda/cuda_owners.cuh"  // first: fmt under nvcc

#include "backend/cuda/round_trip_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/cuda_common.cuh"
#include "core/fp16.h"
#include "quant/block_dispatch_impl.h"

namespace samq {
namespace {

using namespace cuda_owners;
using namespace quant_detail;

// Device memory from the device's pool (so the analysis' reported peak counts it), allocated and
// freed in the order of this file's own stream.
template <typename T>
class PoolBuf {
 public:
  PoolBuf() = default;
  PoolBuf(cudaMemPool_t pool, cudaStream_t st, size_t n) : st_(st), n_(n) {
    if (n == 0) return;
    cudaError_t e = cudaMallocFromPoolAsync(reinterpret_cast<void**>(&p_), n * sizeof(T), pool, st);
    if (e == cudaErrorMemoryAllocation) {  // cached temporaries of the ops may hold it: release them once
      (void)cudaGetLastError();
      check(cudaMemPoolTrimTo(pool, 0), "cudaMemPoolTrimTo");
      e = cudaMallocFromPoolAsync(reinterpret_cast<void**>(&p_), n * sizeof(T), pool, st);
    }
    if (e != cudaSuccess) {
      p_ = nullptr;
      fail("round trip (CUDA): allocating {} bytes failed: {} ({})", n * sizeof(T), cudaGetErrorString(e), int(e));
    }
  }
  PoolBuf(const PoolBuf&) = delete;
  PoolBuf& operator=(const PoolBuf&) = delete;
  PoolBuf& operator=(PoolBuf&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      st_ = o.st_;
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~PoolBuf() { reset(); }
  void reset() {
    if (p_) (void)cudaFreeAsync(p_, st_);
    p_ = nullptr;
    n_ = 0;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  cudaStream_t st_ = nullptr;
  size_t n_ = 0;
};

// Elements per GPU thread: one block of the type (one element for F16/BF16).
SAMQ_HD constexpr int elems_of(GgmlType t) {
  switch (t) {
    case GgmlType::F16: case GgmlType::BF16: return 1;
    case GgmlType::Q8_0: case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1:
    case GgmlType::IQ4_NL: return 32;
    default: return QK_K;
  }
}

// x (n = elems_of(T) values) quantized as quantize_row would (qw: the block's importance slice or
// null; sigma2: the row's mean square, for the weighted legacy types) and dequantized into y.
template <GgmlType T>
__device__ void round_trip_block(const float* x, const float* qw, float sigma2, float* y) {
  if constexpr (T == GgmlType::F16) {
    y[0] = fp16_to_f32(f32_to_fp16(x[0]));
  } else if constexpr (T == GgmlType::BF16) {
    y[0] = bf16_to_f32(f32_to_bf16(x[0]));
  } else {
    typename BlockOf<T>::type b;
    quantize_block_as<T>(x, qw, sigma2, b);
    dequantize_block(b, y);
  }
}

struct KernelArgs {
  int64_t rows, cols, mat_rows, col_rows;
  const float* w;
  const float* qim;     // null: plain
  const float* sigma2;  // per row (weighted legacy types), else null
  const float* imx;
  const float* full[2];
  double full_norm;
  const double* row_coef[2];
  const double* col[2];
  float* out;           // quant_round_trip_cuda: the dequantized values; else null
};

constexpr int kThreads = 64;

// One thread per block, grid-stride in block order; per-thread sums in that order, then the
// CUDA block's fixed tree: partial[blockIdx.x * 5 + k]. Deterministic for a given grid.
template <GgmlType T>
__global__ void __launch_bounds__(kThreads) round_trip_kernel(KernelArgs a, double* partial) {
  constexpr int N = elems_of(T);
  const int64_t nb = a.cols / N, total = a.rows * nb;
  double acc[kRoundTripSums] = {0, 0, 0, 0, 0};
  for (int64_t id = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; id < total;
       id += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = id / nb, c0 = (id % nb) * N, m = r / a.mat_rows;
    const int64_t e0 = r * a.cols + c0;
    float x[N], y[N];
    for (int j = 0; j < N; ++j) x[j] = a.w[e0 + j];
    round_trip_block<T>(x, a.qim ? a.qim + m * a.cols + c0 : nullptr, a.sigma2 ? a.sigma2[r] : 0.f, y);
    if (a.out) {
      for (int j = 0; j < N; ++j) a.out[e0 + j] = y[j];
      continue;
    }
    const double* colv[2] = {nullptr, nullptr};
    for (int k = 0; k < 2; ++k)
      if (a.col[k]) colv[k] = a.col[k] + (r / a.col_rows) * a.cols + c0;
    const float* im = a.imx + m * a.cols + c0;
    for (int j = 0; j < N; ++j) {
      const double d = double(x[j]) - y[j];
      for (int k = 0; k < 2; ++k) {
        if (a.full[k]) {
          const float F = float(a.full[k][e0 + j] * a.full_norm);
          acc[k] += F * d * d;
        }
        if (colv[k]) {
          const float F = float(a.row_coef[k][r] * colv[k][j]);
          acc[2 + k] += F * d * d;
        }
      }
      acc[4] += im[j] * d * d;
    }
  }
  if (a.out) return;
  __shared__ double sh[kThreads];
  for (int k = 0; k < kRoundTripSums; ++k) {
    __syncthreads();
    sh[threadIdx.x] = acc[k];
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
      __syncthreads();
    }
    if (threadIdx.x == 0) partial[int64_t(blockIdx.x) * kRoundTripSums + k] = sh[0];
  }
}

// sigma^2 of each row as the CPU's weighted legacy path computes it (row_sigma2: one float sum
// in index order).
__global__ void row_sigma2_kernel(const float* w, int64_t rows, int64_t cols, float* out) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r < rows) out[r] = row_sigma2(w + r * cols, cols);
}

bool needs_sigma2(GgmlType t) {
  return t == GgmlType::Q4_0 || t == GgmlType::Q4_1 || t == GgmlType::Q5_0 || t == GgmlType::Q5_1;
}

template <GgmlType T>
void launch_type(const KernelArgs& a, unsigned grid, double* partial, cudaStream_t st) {
  round_trip_kernel<T><<<grid, kThreads, 0, st>>>(a, partial);
  check_launch("round_trip_kernel");
}

void launch(GgmlType t, const KernelArgs& a, unsigned grid, double* partial, cudaStream_t st) {
  switch (t) {
    case GgmlType::F16: return launch_type<GgmlType::F16>(a, grid, partial, st);
    case GgmlType::BF16: return launch_type<GgmlType::BF16>(a, grid, partial, st);
    case GgmlType::Q8_0: return launch_type<GgmlType::Q8_0>(a, grid, partial, st);
    case GgmlType::Q4_0: return launch_type<GgmlType::Q4_0>(a, grid, partial, st);
    case GgmlType::Q4_1: return launch_type<GgmlType::Q4_1>(a, grid, partial, st);
    case GgmlType::Q5_0: return launch_type<GgmlType::Q5_0>(a, grid, partial, st);
    case GgmlType::Q5_1: return launch_type<GgmlType::Q5_1>(a, grid, partial, st);
    case GgmlType::IQ4_NL: return launch_type<GgmlType::IQ4_NL>(a, grid, partial, st);
    case GgmlType::IQ4_XS: return launch_type<GgmlType::IQ4_XS>(a, grid, partial, st);
    case GgmlType::Q2_K: return launch_type<GgmlType::Q2_K>(a, grid, partial, st);
    case GgmlType::Q3_K: return launch_type<GgmlType::Q3_K>(a, grid, partial, st);
    case GgmlType::Q4_K: return launch_type<GgmlType::Q4_K>(a, grid, partial, st);
    case GgmlType::Q5_K: return launch_type<GgmlType::Q5_K>(a, grid, partial, st);
    case GgmlType::Q6_K: return launch_type<GgmlType::Q6_K>(a, grid, partial, st);
    default: fail("round trip (CUDA): type {} is not supported", ggml_type_name(t));
  }
}

// A fixed grid for the shape (never the device's size: the sums must not depend on the GPU).
unsigned grid_for_blocks(int64_t n_blocks) {
  return unsigned(std::clamp<int64_t>((n_blocks + kThreads - 1) / kThreads, 1, 4096));
}

void check_shape(GgmlType t, int64_t rows, int64_t cols) {
  if (!round_trip_cuda_supported(t)) fail("round trip (CUDA): type {} is not supported", ggml_type_name(t));
  if (rows < 0 || cols <= 0 || cols % elems_of(t) != 0)
    fail("round trip (CUDA): a ({}, {}) tensor cannot be stored as {}", rows, cols, ggml_type_name(t));
}

template <typename T>
T* upload(PoolBuf<T>& buf, const T* host, size_t n, cudaMemPool_t pool, cudaStream_t st) {
  if (!host) return nullptr;
  buf = PoolBuf<T>(pool, st, n);
  check(cudaMemcpyAsync(buf.get(), host, n * sizeof(T), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync (upload)");
  return buf.get();
}

}  // namespace

bool round_trip_cuda_supported(GgmlType t) {
  switch (t) {
    case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q8_0: case GgmlType::Q4_0: case GgmlType::Q4_1:
    case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::IQ4_NL: case GgmlType::IQ4_XS: case GgmlType::Q2_K:
    case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K: return true;
    default: return false;
  }
}

std::vector<std::array<double, kRoundTripSums>> round_trip_errors_cuda(const std::vector<GgmlType>& types,
                                                                        const RoundTripErrorInputs& in, int device) {
  const int64_t rows = in.rows, cols = in.cols;
  for (GgmlType t : types) check_shape(t, rows, cols);
  if (in.mat_rows <= 0 || rows % in.mat_rows != 0) fail("round trip (CUDA): {} rows are not a whole number of {}-row matrices", rows, in.mat_rows);
  if (!in.w || !in.imx) fail("round trip (CUDA): the weights and the importance weights are required");
  const bool fact = in.row_coef[0] || in.row_coef[1];
  if (fact && (in.col_rows <= 0 || rows % in.col_rows != 0)) fail("round trip (CUDA): bad col_rows {}", in.col_rows);
  DeviceScope scope(device);
  const cudaMemPool_t pool = cuda::device(device).pool;
  Stream stream;
  const cudaStream_t st = stream.get();
  const size_t n = size_t(rows * cols), n_mat = size_t(rows / in.mat_rows);
  PoolBuf<float> w, qim, imx, full[2], sigma2;
  PoolBuf<double> rc[2], col[2], partial;
  SyncAtExit sync(st);  // after the buffers: in-flight work ends before they are freed
  KernelArgs a{};
  a.rows = rows;
  a.cols = cols;
  a.mat_rows = in.mat_rows;
  a.col_rows = fact ? in.col_rows : rows;
  a.w = upload(w, in.w, n, pool, st);
  a.qim = upload(qim, in.quant_imatrix, n_mat * size_t(cols), pool, st);
  a.imx = upload(imx, in.imx, n_mat * size_t(cols), pool, st);
  a.full_norm = in.full_norm;
  for (int k = 0; k < 2; ++k) {
    a.full[k] = upload(full[k], in.full[k], n, pool, st);
    if (in.row_coef[k]) {
      if (!in.col[k]) fail("round trip (CUDA): factored sum {} has row coefficients but no column values", k);
      a.row_coef[k] = upload(rc[k], in.row_coef[k], size_t(rows), pool, st);
      a.col[k] = upload(col[k], in.col[k], size_t(rows / in.col_rows) * size_t(cols), pool, st);
    }
  }
  std::vector<std::array<double, kRoundTripSums>> out;
  std::vector<double> host;
  for (GgmlType t : types) {
    KernelArgs at = a;
    if (needs_sigma2(t) && a.qim) {
      if (!sigma2.get()) {
        sigma2 = PoolBuf<float>(pool, st, size_t(rows));
        row_sigma2_kernel<<<unsigned((rows + 127) / 128), 128, 0, st>>>(a.w, rows, cols, sigma2.get());
        check_launch("row_sigma2_kernel");
      }
      at.sigma2 = sigma2.get();
    }
    const unsigned grid = grid_for_blocks(rows * (cols / elems_of(t)));
    if (partial.size() < size_t(grid) * kRoundTripSums) partial = PoolBuf<double>(pool, st, size_t(grid) * kRoundTripSums);
    launch(t, at, grid, partial.get(), st);
    host.resize(size_t(grid) * kRoundTripSums);
    check(cudaMemcpyAsync(host.data(), partial.get(), host.size() * sizeof(double), cudaMemcpyDeviceToHost, st),
          "cudaMemcpyAsync (sums)");
    stream.sync();
    std::array<double, kRoundTripSums> s{};
    for (unsigned b = 0; b < grid; ++b)
      for (int k = 0; k < kRoundTripSums; ++k) s[size_t(k)] += host[size_t(b) * kRoundTripSums + size_t(k)];
    out.push_back(s);
  }
  return out;
}

void quant_round_trip_cuda(GgmlType t, const float* src, float* dst, int64_t rows, int64_t cols,
                           const float* imatrix, int device) {
  check_shape(t, rows, cols);
  DeviceScope scope(device);
  const cudaMemPool_t pool = cuda::device(device).pool;
  Stream stream;
  const cudaStream_t st = stream.get();
  const size_t n = size_t(rows * cols);
  PoolBuf<float> w, qim, out, sigma2;
  SyncAtExit sync(st);
  KernelArgs a{};
  a.rows = rows;
  a.cols = cols;
  a.mat_rows = rows > 0 ? rows : 1;
  a.col_rows = a.mat_rows;
  a.w = upload(w, src, n, pool, st);
  a.qim = upload(qim, imatrix, size_t(cols), pool, st);
  out = PoolBuf<float>(pool, st, n);
  a.out = out.get();
  if (needs_sigma2(t) && a.qim) {
    sigma2 = PoolBuf<float>(pool, st, size_t(rows));
    row_sigma2_kernel<<<unsigned((rows + 127) / 128), 128, 0, st>>>(a.w, rows, cols, sigma2.get());
    check_launch("row_sigma2_kernel");
    a.sigma2 = sigma2.get();
  }
  if (n) launch(t, a, grid_for_blocks(rows * (cols / elems_of(t))), nullptr, st);
  check(cudaMemcpyAsync(dst, out.get(), n * sizeof(float), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync (result)");
  stream.sync();
}

}  // namespace samq
