// The forward op table on one GPU (backend/ops.h, backend/cuda/cuda_backend.h).
// - memory: stream-ordered blocks of the device's pool; uploads, downloads and copies on the device's stream;
//   upload and download wait, so host buffers may be reused as soon as they return.
// - matmul: BF16/F16 weights with ggml's activation rounding: activations converted to the
//   weight's 16-bit type and one cuBLAS GEMM on the weight bytes (16-bit inputs, f32 accumulate:
//   exact products, so the CPU's result up to summation order). F32 weights: f32 GEMM in place.
//   Every other case (quantized weights, or exact f32 activations on a 16-bit weight):
//   activations rounded as ggml's CPU rounds them (Q8_K / Q8_0 / Q8_1 quantize-dequantize, in
//   float, bit-identical), weight rows dequantized tile by tile into f32 scratch; then, for
//   quantized weights with ggml rounding, a bf16x3 split GEMM on the tensor cores (hi.hi + hi.lo + lo.hi over K =
//   3 cols: ~2^-17 relative per product; SAMQ_CUDA_QUANT_GEMM=f32 turns it off), else f32 GEMMs.
//   f32 GEMMs never use TF32.
// - rms_norm, softmax: one block per row, sums in double over a fixed tree.
// - rope: angles in double from rope_inv_freq(p) (computed on the host, uploaded once per
//   configuration), as the CPU reference computes them.
// - attention: cuda_attention.cu.
#include "backend/cuda/cuda_common.cuh"  // first: it includes fmt the way nvcc needs

#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>

#include "backend/cpu/act_quant.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_ops.cuh"
#include "backend/cuda/cuda_quant.cuh"

namespace samq::cuda {

namespace {

constexpr int kThreads = 256;

// Prints instead of throwing: for paths that run inside destructors.
void report(cudaError_t e, const char* what, const Device& d) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();
  std::fprintf(stderr, "samq: %s: %s failed: %s\n", d.label.c_str(), what, cudaGetErrorString(e));
}

__global__ void add_bias_kernel(float* y, int64_t n, int64_t rows, const float* bias) {
  const int64_t total = n * rows, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride)
    y[i] = __fadd_rn(y[i], bias[i % rows]);
}

// y = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps): the sum in double as the reference.
__global__ void rms_norm_kernel(const float* x, int64_t n, int64_t dim, const float* weight, float eps, float* y,
                                float* rstd_out) {
  __shared__ double sh[kThreads];
  for (int64_t t = blockIdx.x; t < n; t += gridDim.x) {
    const float* xt = x + t * dim;
    double ss = 0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += double(xt[i]) * double(xt[i]);
    ss = block_reduce<double>(ss, sh, 0);
    const float rstd = float(1.0 / sqrt(ss / double(dim) + double(eps)));
    if (rstd_out && threadIdx.x == 0) rstd_out[t] = rstd;
    float* yt = y + t * dim;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      const float v = __fmul_rn(xt[i], rstd);
      yt[i] = weight ? __fmul_rn(v, weight[i]) : v;
    }
  }
}

// theta = pos * inv_freq[i] in double (as the reference); normal: pairs (2i, 2i+1), neox: (i, i+half).
__global__ void rope_kernel(float* x, int64_t n, int64_t n_head, int64_t head_dim, const int32_t* pos,
                            const float* inv, int64_t half, bool neox, bool negate) {
  const int64_t total = n * n_head * half, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t i = idx % half, th = idx / half, t = th / n_head, h = th % n_head;
    const int64_t p = negate ? -int64_t(pos[t]) : int64_t(pos[t]);
    double s, c;
    sincos(double(p) * double(inv[i]), &s, &c);
    const float cf = float(c), sf = float(s);
    float* v = x + (t * n_head + h) * head_dim;
    const int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    const float x0 = v[a], x1 = v[b];
    v[a] = __fsub_rn(__fmul_rn(x0, cf), __fmul_rn(x1, sf));
    v[b] = __fadd_rn(__fmul_rn(x0, sf), __fmul_rn(x1, cf));
  }
}

__global__ void swiglu_kernel(const float* gate, const float* up, int64_t n, float* y) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = gate[i], u = up[i];
    y[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
  }
}

// Per row: x = exp(x - max) / sum, the sum in double (as the reference).
__global__ void softmax_kernel(float* x, int64_t n, int64_t dim) {
  __shared__ float shf[kThreads];
  __shared__ double shd[kThreads];
  for (int64_t t = blockIdx.x; t < n; t += gridDim.x) {
    float* r = x + t * dim;
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) mx = fmaxf(mx, r[i]);
    mx = block_reduce<float>(mx, shf, 1);
    double sum = 0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      const float e = expf(__fsub_rn(r[i], mx));
      r[i] = e;
      sum += double(e);
    }
    sum = block_reduce<double>(sum, shd, 0);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) r[i] = float(double(r[i]) / sum);
  }
}

__global__ void add_kernel(const float* a, const float* b, int64_t n, float* y) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = __fadd_rn(a[i], b[i]);
}

unsigned row_grid(int64_t n) { return unsigned(std::clamp<int64_t>(n, 1, 1 << 20)); }

const float* rope_freqs_on_device(Device& d, const RopeParams& p) {
  const std::vector<float> inv = rope_inv_freq(p);
  for (const auto& e : d.rope_cache)
    if (e.inv.size() == inv.size() && std::memcmp(e.inv.data(), inv.data(), inv.size() * sizeof(float)) == 0)
      return e.dev;
  Device::RopeFreqs e;
  e.inv = inv;
  check(cudaMalloc(reinterpret_cast<void**>(&e.dev), std::max<size_t>(1, inv.size()) * sizeof(float)),
        "cudaMalloc (rope frequencies)", d);
  check(cudaMemcpyAsync(e.dev, e.inv.data(), inv.size() * sizeof(float), cudaMemcpyHostToDevice, d.stream),
        "cudaMemcpyAsync (rope frequencies)", d);
  check(cudaStreamSynchronize(d.stream), "cudaStreamSynchronize", d);
  d.rope_cache.push_back(std::move(e));
  return d.rope_cache.back().dev;
}

}  // namespace

namespace {

// Bytes of device memory that expanded quantized weights (CudaWeight::split3) may take in this
// process: SAMQ_CUDA_SPLIT_CACHE_BYTES, else an eighth of the first device's memory.
std::atomic<int64_t>& split3_cache_budget(const Device& d) {
  static std::atomic<int64_t> budget = [&] {
    if (const char* e = std::getenv("SAMQ_CUDA_SPLIT_CACHE_BYTES")) return int64_t(std::strtoll(e, nullptr, 10));
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo", d);
    return int64_t(total_b / 8);
  }();
  return budget;
}

// w's bf16x3 expansion, made on first use when the budget allows (else null: the caller expands
// tiles per call).
const uint16_t* split3_cached(Device& d, const CudaWeight& cw) {
  if (cw.split3) return cw.split3;
  const int64_t bytes = cw.rows * cw.cols * 3 * int64_t(sizeof(uint16_t));
  auto& budget = split3_cache_budget(d);
  if (budget.fetch_sub(bytes) < bytes) {
    budget.fetch_add(bytes);
    return nullptr;
  }
  void* p = nullptr;
  if (cudaMallocFromPoolAsync(&p, size_t(bytes), d.pool, d.stream) != cudaSuccess) {
    (void)cudaGetLastError();  // no room now: tiles per call, as without the cache
    budget.fetch_add(bytes);
    return nullptr;
  }
  dequantize_rows_split3(d, cw.type, cw.data, cw.row_bytes, cw.cols, 0, cw.rows, static_cast<uint16_t*>(p));
  cw.split3 = static_cast<uint16_t*>(p);
  cw.split3_bytes = bytes;
  return cw.split3;
}

}  // namespace

CudaWeight::~CudaWeight() {
  if (!data || !dev) return;
  std::lock_guard<std::recursive_mutex> lock(dev->mu);
  report(cudaSetDevice(dev->index), "cudaSetDevice", *dev);
  report(cudaFreeAsync(data, dev->stream), "cudaFreeAsync (weight)", *dev);  // a block of the pool (alloc)
  if (split3) {
    report(cudaFreeAsync(split3, dev->stream), "cudaFreeAsync (expanded weight)", *dev);
    split3_cache_budget(*dev).fetch_add(split3_bytes);
  }
}

const CudaWeight& uploaded(const WeightView& w, const Device& d, const char* op) {
  const auto* cw = dynamic_cast<const CudaWeight*>(w.prepared);
  if (!cw)
    fail("{} {}: weight ({} x {}, {}) was not uploaded{}: Model::prepare_weights(cuda_ops())", d.label, op, w.rows,
            w.cols, ggml_type_name(w.type), w.prepared ? " (its prepared form belongs to another backend)" : "");
  if (cw->dev != &d)
    fail("{} {}: weight ({} x {}, {}) was uploaded to {}, not this device", d.label, op, w.rows, w.cols,
            ggml_type_name(w.type), cw->dev ? cw->dev->label : "?");
  if (cw->type != w.type || cw->rows != w.rows || cw->cols != w.cols)
    fail("{} {}: weight view ({} x {}, {}) does not match its uploaded form ({} x {}, {})", d.label, op, w.rows,
            w.cols, ggml_type_name(w.type), cw->rows, cw->cols, ggml_type_name(cw->type));
  return *cw;
}

std::vector<int32_t> checked_ids(Device& d, const int32_t* ids, int64_t n, int64_t limit, const char* what) {
  std::vector<int32_t> h(static_cast<size_t>(std::max<int64_t>(n, 0)));
  if (n <= 0) return h;
  check(cudaMemcpyAsync(h.data(), ids, size_t(n) * sizeof(int32_t), cudaMemcpyDeviceToHost, d.stream),
        "cudaMemcpyAsync (ids)", d);
  check(cudaStreamSynchronize(d.stream), "cudaStreamSynchronize", d);
  for (int64_t t = 0; t < n; ++t)
    if (h[t] < 0 || h[t] >= limit) fail("{}: {} {} at row {} out of range ({} rows)", d.label, what, h[t], t, limit);
  return h;
}

int64_t weight_tile_rows(int64_t rows, int64_t cols) {
  const int64_t per = std::max<int64_t>(1, scratch_bytes() / (std::max<int64_t>(cols, 1) * int64_t(sizeof(float))));
  return std::max<int64_t>(1, std::min(rows, per));
}

void rms_norm(Device& d, const float* x, int64_t n, int64_t dim, const float* weight, float eps, float* y,
              float* rstd_out) {
  if (n <= 0) return;
  rms_norm_kernel<<<row_grid(n), kThreads, 0, d.stream>>>(x, n, dim, weight, eps, y, rstd_out);
  check_launch("rms_norm_kernel", d);
}

void rope(Device& d, float* x, int64_t n, int64_t n_head, int64_t head_dim, const int32_t* pos, const RopeParams& p,
          bool negate) {
  const int64_t half = p.n_rot / 2;
  if (n <= 0 || n_head <= 0 || half <= 0) return;
  if (p.n_rot > head_dim) fail("{}: rope: n_rot {} exceeds head_dim {}", d.label, p.n_rot, head_dim);
  const float* inv = rope_freqs_on_device(d, p);
  rope_kernel<<<grid_for(n * n_head * half, kThreads), kThreads, 0, d.stream>>>(x, n, n_head, head_dim, pos, inv,
                                                                                 half, p.neox, negate);
  check_launch("rope_kernel", d);
}

void softmax(Device& d, float* x, int64_t n, int64_t dim) {
  if (n <= 0 || dim <= 0) return;
  softmax_kernel<<<row_grid(n), kThreads, 0, d.stream>>>(x, n, dim);
  check_launch("softmax_kernel", d);
}

namespace {

// Quantized weights (not F32/F16/BF16) under ggml's activation rounding, with at least
// kSplitGemmMinTokens tokens, take the bf16x3 tensor-core GEMM unless SAMQ_CUDA_QUANT_GEMM=f32
// (read per call, as the scratch budgets); exact
// f32 activations (comparisons with HF transformers) keep the f32 SGEMM.
// Below this many tokens the GEMM is bound by the weight tile's bytes, which the bf16x3 form
// makes 1.5x larger than f32 (decode): the f32 SGEMM stays.
constexpr int64_t kSplitGemmMinTokens = 16;

bool split_quant_gemm(GgmlType t) {
  if (t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16) return false;
  const char* e = std::getenv("SAMQ_CUDA_QUANT_GEMM");
  return !(e && std::string_view(e) == "f32");
}

class CudaOps final : public Ops {
 public:
  explicit CudaOps(Device& d) : d_(d) {}
  const char* name() const override { return "cuda"; }

  // ---- memory
  bool host_memory() const override { return false; }

  // Stream-ordered allocations from the device's pool (kept cached after release), so the
  // buffers the model code makes and drops per chunk cost no cudaMalloc/cudaFree or sync.
  void* alloc(size_t bytes) const override {
    Scope s(d_);
    const size_t n = std::max<size_t>(bytes, 256);
    void* p = nullptr;
    cudaError_t e = cudaMallocFromPoolAsync(&p, n, d_.pool, d_.stream);
    if (e == cudaErrorMemoryAllocation) {
      // Cached blocks go back to the device, then one more try.
      (void)cudaGetLastError();
      check(cudaStreamSynchronize(d_.stream), "cudaStreamSynchronize", d_);
      check(cudaMemPoolTrimTo(d_.pool, 0), "cudaMemPoolTrimTo", d_);
      e = cudaMallocFromPoolAsync(&p, n, d_.pool, d_.stream);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      (void)cudaGetLastError();
      fail("{}: out of device memory: allocating {} bytes failed ({}; {} of {} bytes free)", d_.label, bytes,
           cudaGetErrorString(e), free_b, total_b);
    }
    return p;
  }
  MemoryInfo memory_info() const override {
    Scope s(d_);
    MemoryInfo mi;
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo", d_);
    mi.total = int64_t(total_b);
    mi.free = int64_t(free_b);
    unsigned long long high = 0;
    check(cudaMemPoolGetAttribute(d_.pool, cudaMemPoolAttrUsedMemHigh, &high), "cudaMemPoolGetAttribute", d_);
    mi.peak_used = int64_t(high);
    return mi;
  }
  // Never throws (Buffer calls it from its destructor): errors are printed. Stream-ordered: the
  // block is reused only by work queued after this point.
  void release(void* p) const override {
    if (!p) return;
    std::lock_guard<std::recursive_mutex> lock(d_.mu);
    report(cudaSetDevice(d_.index), "cudaSetDevice", d_);
    report(cudaFreeAsync(p, d_.stream), "cudaFreeAsync", d_);
  }
  void upload(void* dst, const void* src, size_t bytes) const override {
    if (!bytes) return;
    Scope s(d_);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, d_.stream), "cudaMemcpyAsync (upload)", d_);
    check(cudaStreamSynchronize(d_.stream), "cudaStreamSynchronize (upload)", d_);
  }
  void download(void* dst, const void* src, size_t bytes) const override {
    if (!bytes) return;
    Scope s(d_);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, d_.stream), "cudaMemcpyAsync (download)", d_);
    check(cudaStreamSynchronize(d_.stream), "cudaStreamSynchronize (download)", d_);
  }
  void copy(void* dst, const void* src, size_t bytes) const override {
    if (!bytes || dst == src) return;
    Scope s(d_);
    const auto* a = static_cast<const char*>(src);
    auto* b = static_cast<char*>(dst);
    if (b < a + bytes && a < b + bytes) {  // overlapping (memmove semantics): through a temporary
      Tmp t(d_, bytes);
      check(cudaMemcpyAsync(t.as<void>(), src, bytes, cudaMemcpyDeviceToDevice, d_.stream), "cudaMemcpyAsync (copy)",
            d_);
      check(cudaMemcpyAsync(dst, t.as<void>(), bytes, cudaMemcpyDeviceToDevice, d_.stream), "cudaMemcpyAsync (copy)",
            d_);
      return;
    }
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, d_.stream), "cudaMemcpyAsync (copy)", d_);
  }
  void zero(void* dst, size_t bytes) const override {
    if (!bytes) return;
    Scope s(d_);
    check(cudaMemsetAsync(dst, 0, bytes, d_.stream), "cudaMemsetAsync", d_);
  }
  void synchronize() const override {
    Scope s(d_);
    check(cudaStreamSynchronize(d_.stream), "cudaStreamSynchronize", d_);
  }
  std::string device() const override { return d_.label; }

  void round_f16(float* x, int64_t n) const override {
    Scope s(d_);
    cuda::round_f16(d_, x, n);
  }

  // ---- weights
  std::unique_ptr<PreparedWeight> prepare_weight(const WeightView& w) const override {
    Scope s(d_);
    if (!w.data && w.rows * w.cols > 0)
      fail("{}: prepare_weight: weight ({} x {}, {}) has no data", d_.label, w.rows, w.cols, ggml_type_name(w.type));
    auto cw = std::make_unique<CudaWeight>();
    cw->type = w.type;
    cw->rows = w.rows;
    cw->cols = w.cols;
    cw->row_bytes = ggml_row_size(w.type, w.cols);
    const int64_t src_stride = w.row_bytes ? w.row_bytes : cw->row_bytes;
    if (src_stride < cw->row_bytes)
      fail("{}: prepare_weight: row stride {} below the {} bytes of a ({} x {}, {}) row", d_.label, src_stride,
              cw->row_bytes, w.rows, w.cols, ggml_type_name(w.type));
    cw->data = alloc(size_t(std::max<int64_t>(1, w.rows * cw->row_bytes)));
    cw->dev = &d_;  // from here on the destructor frees data
    if (w.rows > 0 && cw->row_bytes > 0) {
      if (src_stride == cw->row_bytes)
        check(cudaMemcpyAsync(cw->data, w.data, size_t(w.rows * cw->row_bytes), cudaMemcpyHostToDevice, d_.stream),
              "cudaMemcpyAsync (weight upload)", d_);
      else  // strided rows: packed on the device
        check(cudaMemcpy2DAsync(cw->data, size_t(cw->row_bytes), w.data, size_t(src_stride), size_t(cw->row_bytes),
                                size_t(w.rows), cudaMemcpyHostToDevice, d_.stream),
              "cudaMemcpy2DAsync (weight upload)", d_);
      check(cudaStreamSynchronize(d_.stream), "cudaStreamSynchronize (weight upload)", d_);
    }
    return cw;
  }

  // ---- forward ops
  // (n, cols) x (rows, cols)^T -> (n, rows)
  void matmul(const float* x, int64_t n, const WeightView& w, const float* bias, float* y) const override {
    Scope s(d_);
    const CudaWeight& cw = uploaded(w, d_, "matmul");
    if (n <= 0 || w.rows <= 0) return;
    const int64_t rows = w.rows, cols = w.cols;
    if (cols == 0) {
      check(cudaMemsetAsync(y, 0, size_t(n * rows) * sizeof(float), d_.stream), "cudaMemsetAsync", d_);
    } else {
      const cpu::ActType at = w.ggml_act_rounding ? cpu::act_type_for(w.type) : cpu::ActType::F32;
      if ((w.type == GgmlType::BF16 && at == cpu::ActType::BF16) || (w.type == GgmlType::F16 && at == cpu::ActType::F16)) {
        // 16-bit activations x 16-bit weight, exact products, f32 accumulation.
        Tmp xh(d_, size_t(n * cols) * sizeof(uint16_t));
        const bool bf = w.type == GgmlType::BF16;
        if (bf) to_bf16(d_, x, n * cols, xh.as<uint16_t>());
        else to_f16(d_, x, n * cols, xh.as<uint16_t>());
        gemm_16(d_, bf ? CUDA_R_16BF : CUDA_R_16F, false, true, n, rows, cols, 1.0f, xh.as<void>(), cols, cw.data, cols,
                0.0f, y, rows);
      } else if (w.type == GgmlType::F32) {
        gemm_f32(d_, false, true, n, rows, cols, 1.0f, x, cols, static_cast<const float*>(cw.data), cols, 0.0f, y, rows);
      } else {
        if (!dequant_supported(w.type))
          fail("{} matmul: no device dequantizer for weight type {}", d_.label, ggml_type_name(w.type));
        std::optional<Tmp> xt;
        const float* xr = x;
        if (at != cpu::ActType::F32) {
          xt.emplace(d_, size_t(n * cols) * sizeof(float));
          round_activations(d_, at, x, n, cols, xt->as<float>());
          xr = xt->as<float>();
        }
        if (at != cpu::ActType::F32 && n >= kSplitGemmMinTokens && split_quant_gemm(w.type)) {
          // bf16x3: y = [hi|hi|lo](x) . [hi|lo|hi](W)^T over K = 3 cols on the tensor cores: the f32
          // product up to ~2^-17 relative per term (what f32 summation order changes anyway), about
          // 4x the speed of the f32 SGEMM (no TF32) it replaces. SAMQ_CUDA_QUANT_GEMM=f32: the SGEMM.
          Tmp xa(d_, size_t(n * 3 * cols) * sizeof(uint16_t));
          split3_bf16_rows(d_, xr, n, cols, 0, xa.as<uint16_t>());
          if (const uint16_t* w3 = split3_cached(d_, cw)) {
            gemm_16(d_, CUDA_R_16BF, false, true, n, rows, 3 * cols, 1.0f, xa.as<void>(), 3 * cols, w3, 3 * cols,
                    0.0f, y, rows);
            if (bias) {
              add_bias_kernel<<<grid_for(n * rows, kThreads), kThreads, 0, d_.stream>>>(y, n, rows, bias);
              check_launch("add_bias_kernel", d_);
            }
            return;
          }
          const int64_t per_row = cols * int64_t(3 * sizeof(uint16_t));
          const int64_t tile = std::max<int64_t>(1, std::min(rows, scratch_bytes() / std::max<int64_t>(per_row, 1)));
          Tmp wb(d_, size_t(tile * 3 * cols) * sizeof(uint16_t));
          for (int64_t r0 = 0; r0 < rows; r0 += tile) {
            const int64_t r1 = std::min(rows, r0 + tile);
            dequantize_rows_split3(d_, w.type, cw.data, cw.row_bytes, cols, r0, r1 - r0, wb.as<uint16_t>());
            gemm_16(d_, CUDA_R_16BF, false, true, n, r1 - r0, 3 * cols, 1.0f, xa.as<void>(), 3 * cols,
                    wb.as<void>(), 3 * cols, 0.0f, y + r0, rows);
          }
        } else {
          const int64_t tile = weight_tile_rows(rows, cols);
          Tmp wt(d_, size_t(tile * cols) * sizeof(float));
          for (int64_t r0 = 0; r0 < rows; r0 += tile) {
            const int64_t r1 = std::min(rows, r0 + tile);
            dequantize_rows(d_, w.type, cw.data, cw.row_bytes, cols, nullptr, r0, r1 - r0, wt.as<float>());
            gemm_f32(d_, false, true, n, r1 - r0, cols, 1.0f, xr, cols, wt.as<float>(), cols, 0.0f, y + r0, rows);
          }
        }
      }
    }
    if (bias) {
      add_bias_kernel<<<grid_for(n * rows, kThreads), kThreads, 0, d_.stream>>>(y, n, rows, bias);
      check_launch("add_bias_kernel", d_);
    }
  }

  void get_rows(const WeightView& w, const int32_t* ids, int64_t n, float* out) const override {
    Scope s(d_);
    const CudaWeight& cw = uploaded(w, d_, "get_rows");
    if (n <= 0) return;
    checked_ids(d_, ids, n, w.rows, "token id");
    if (!dequant_supported(w.type))
      fail("{} get_rows: no device dequantizer for weight type {}", d_.label, ggml_type_name(w.type));
    dequantize_rows(d_, w.type, cw.data, cw.row_bytes, w.cols, ids, 0, n, out);
  }

  void rms_norm(const float* x, int64_t n, int64_t d, const float* weight, float eps, float* y,
                float* rstd_out) const override {
    Scope s(d_);
    cuda::rms_norm(d_, x, n, d, weight, eps, y, rstd_out);
  }

  void rope(float* x, int64_t n, int64_t n_head, int64_t head_dim, const int32_t* pos,
            const RopeParams& p) const override {
    Scope s(d_);
    cuda::rope(d_, x, n, n_head, head_dim, pos, p, false);
  }

  void attention(const AttentionArgs& a) const override {
    Scope s(d_);
    cuda::attention(d_, a);
  }

  void swiglu(const float* gate, const float* up, int64_t n, float* y) const override {
    if (n <= 0) return;
    Scope s(d_);
    swiglu_kernel<<<grid_for(n, kThreads), kThreads, 0, d_.stream>>>(gate, up, n, y);
    check_launch("swiglu_kernel", d_);
  }

  void softmax(float* x, int64_t n, int64_t d) const override {
    Scope s(d_);
    cuda::softmax(d_, x, n, d);
  }

  void add(const float* a, const float* b, int64_t n, float* y) const override {
    if (n <= 0) return;
    Scope s(d_);
    add_kernel<<<grid_for(n, kThreads), kThreads, 0, d_.stream>>>(a, b, n, y);
    check_launch("add_kernel", d_);
  }

  void eval_token_stats(const float* logits, int64_t n, int64_t v, const int32_t* next, const EvalBase* base,
                        EvalTokenStats* out) const override {
    Scope s(d_);
    cuda::eval_token_stats(d_, logits, n, v, next, base, out);
  }

 private:
  Device& d_;
};

}  // namespace

}  // namespace samq::cuda

namespace samq {

const Ops& cuda_ops(int index) {
  static std::mutex mu;
  static std::vector<cuda::CudaOps*> tables;  // never freed, as the devices
  cuda::Device& d = cuda::device(index);      // throws for a bad index
  std::lock_guard<std::mutex> lock(mu);
  if (int(tables.size()) <= index) tables.resize(size_t(index) + 1, nullptr);
  if (!tables[index]) tables[index] = new cuda::CudaOps(d);
  return *tables[index];
}

}  // namespace samq
