// Devices, error checks, temporaries and the GEMM wrappers of the CUDA backend
// (cuda_common.cuh).
#include "backend/cuda/cuda_common.cuh"  // first: it includes fmt the way nvcc needs

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "backend/cuda/cuda_backend.h"

namespace samq {

int cuda_device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no device: not an error for the caller
    return 0;
  }
  return n;
}

namespace cuda {

namespace {

std::string name_of(int index) { return fmt::format("cuda:{}", index); }

const char* blas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
  }
}

Device* open_device(int index) {
  const int count = cuda_device_count();
  if (index < 0 || index >= count)
    fail("cuda:{}: no such device ({} CUDA device(s) present)", index, count);
  auto d = std::make_unique<Device>();
  d->index = index;
  d->label = name_of(index);
  check(cudaSetDevice(index), "cudaSetDevice", *d);
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties", *d);
  d->label = fmt::format("cuda:{} ({})", index, prop.name);
  check(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags", *d);
  check_blas(cublasCreate(&d->blas), "cublasCreate", *d);
  check_blas(cublasSetStream(d->blas, d->stream), "cublasSetStream", *d);
  // No TF32 anywhere: f32 GEMMs also ask for CUBLAS_COMPUTE_32F_PEDANTIC explicitly.
  check_blas(cublasSetMathMode(d->blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode", *d);
  cudaMemPoolProps props{};
  props.allocType = cudaMemAllocationTypePinned;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = index;
  check(cudaMemPoolCreate(&d->pool, &props), "cudaMemPoolCreate", *d);
  // Keep freed temporaries cached (Tmp and alloc() trim the pool when memory runs out).
  uint64_t threshold = UINT64_MAX;
  check(cudaMemPoolSetAttribute(d->pool, cudaMemPoolAttrReleaseThreshold, &threshold),
        "cudaMemPoolSetAttribute(ReleaseThreshold)", *d);
  return d.release();
}

}  // namespace

Device& device(int index) {
  static std::mutex mu;
  static std::vector<Device*> devices;  // never freed (see cuda_common.cuh)
  std::lock_guard<std::mutex> lock(mu);
  if (index < 0 || index >= 1024) fail("cuda:{}: no such device", index);
  if (int(devices.size()) <= index) devices.resize(size_t(index) + 1, nullptr);
  if (!devices[index]) devices[index] = open_device(index);
  return *devices[index];
}

namespace {
int64_t env_bytes(const char* name, int64_t dflt) {
  const char* v = std::getenv(name);
  if (!v || !*v) return dflt;
  const long long x = std::atoll(v);
  return x > 0 ? int64_t(x) : dflt;
}
}  // namespace

int64_t scratch_bytes() { return env_bytes("SAMQ_CUDA_SCRATCH_BYTES", int64_t(256) << 20); }
int64_t attention_bytes() { return env_bytes("SAMQ_CUDA_ATTN_BYTES", int64_t(512) << 20); }

void check(cudaError_t e, const char* what, const Device& d) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a non-sticky error so later calls report their own
  fail("{}: {} failed: {} ({})", d.label, what, cudaGetErrorName(e), cudaGetErrorString(e));
}

void check_blas(cublasStatus_t s, const char* what, const Device& d) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  fail("{}: {} failed: {} ({})", d.label, what, blas_status_name(s), int(s));
}

void check_launch(const char* kernel, const Device& d) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    fail("{}: launch of kernel {} failed: {} ({})", d.label, kernel, cudaGetErrorName(e), cudaGetErrorString(e));
}

Scope::Scope(Device& d) : lock_(d.mu) { check(cudaSetDevice(d.index), "cudaSetDevice", d); }

Tmp::Tmp(Device& d, size_t bytes) : d_(&d) {
  if (bytes == 0) bytes = 256;
  cudaError_t e = cudaMallocFromPoolAsync(&p_, bytes, d.pool, d.stream);
  if (e == cudaErrorMemoryAllocation) {
    // Give cached blocks back and retry once.
    (void)cudaGetLastError();
    check(cudaStreamSynchronize(d.stream), "cudaStreamSynchronize", d);
    check(cudaMemPoolTrimTo(d.pool, 0), "cudaMemPoolTrimTo", d);
    e = cudaMallocFromPoolAsync(&p_, bytes, d.pool, d.stream);
  }
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    (void)cudaMemGetInfo(&free_b, &total_b);
    (void)cudaGetLastError();
    p_ = nullptr;
    fail("{}: temporary of {} bytes could not be allocated ({}; {} of {} bytes free)", d.label, bytes,
            cudaGetErrorString(e), free_b, total_b);
  }
}

Tmp::~Tmp() {
  if (p_) (void)cudaFreeAsync(p_, d_->stream);  // stream-ordered: after every kernel that used it
}

namespace {

void check_dims(const Device& d, std::initializer_list<int64_t> v) {
  for (int64_t x : v)
    if (x < 0 || x > INT_MAX) fail("{}: GEMM dimension {} outside cuBLAS's int range", d.label, x);
}

cublasOperation_t op(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

}  // namespace

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS gets the operands
// swapped (B first), the same transposition flags, m = N and n = M.
void gemm_f32(Device& d, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  check_dims(d, {M, N, K, lda, ldb, ldc});
  check_blas(cublasGemmEx(d.blas, op(tb), op(ta), int(N), int(M), int(K), &alpha, B, CUDA_R_32F, int(ldb), A,
                          CUDA_R_32F, int(lda), &beta, C, CUDA_R_32F, int(ldc), CUBLAS_COMPUTE_32F_PEDANTIC,
                          CUBLAS_GEMM_DEFAULT),
             "cublasGemmEx (f32)", d);
}

void gemm_f32_batched(Device& d, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                      int64_t lda, int64_t sa, const float* B, int64_t ldb, int64_t sb, float beta, float* C,
                      int64_t ldc, int64_t sc, int64_t batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  check_dims(d, {M, N, K, lda, ldb, ldc, batch});
  check_blas(cublasGemmStridedBatchedEx(d.blas, op(tb), op(ta), int(N), int(M), int(K), &alpha, B, CUDA_R_32F,
                                        int(ldb), (long long)sb, A, CUDA_R_32F, int(lda), (long long)sa, &beta, C,
                                        CUDA_R_32F, int(ldc), (long long)sc, int(batch),
                                        CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT),
             "cublasGemmStridedBatchedEx (f32)", d);
}

void gemm_16(Device& d, cudaDataType_t t, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
             const void* A, int64_t lda, const void* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  check_dims(d, {M, N, K, lda, ldb, ldc});
  check_blas(cublasGemmEx(d.blas, op(tb), op(ta), int(N), int(M), int(K), &alpha, B, t, int(ldb), A, t, int(lda),
                          &beta, C, CUDA_R_32F, int(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             t == CUDA_R_16BF ? "cublasGemmEx (bf16)" : "cublasGemmEx (f16)", d);
}

}  // namespace cuda
}  // namespace samq
