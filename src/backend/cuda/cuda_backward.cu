// The backward and statistics ops on one GPU (backend/ops_backward.h BackwardOps), over the
// forward table cuda_ops(index). Semantics are those of src/backend/cpu/ops_backward.cpp; every
// gradient output accumulates (+=).
// - matmul_backward: BF16 weights by bf16 tensor-core GEMMs with the split trick (dy = hi + lo,
//   hi = bf16(dy), lo = bf16(dy - hi), likewise x): dx += hi W + lo W; dW += hi_dy^T hi_x +
//   hi_dy^T lo_x + lo_dy^T hi_x. The products are exact (bf16 x bf16 in f32) and what the split
//   drops is below 2^-17 relative, so the result is the f32 one to ~1e-5. Other types: weight
//   tiles dequantized to f32 and f32 GEMMs (no TF32).
// - column reductions (bias, rms_norm weight, embedding, col_sq): one thread per column looping
//   over tokens in order, as the CPU loops do, so those results equal the CPU's bit for bit.
// - sum_sq: a fixed two-level tree in double; xtx: x in double and cublasDsyrk.
// - softmax_cross_entropy: one block per row; the loss per row in double (log-sum-exp), summed
//   on the host in row order.
// - sample_labels: Gumbel-max over the logits (backend/gumbel.h), one block per row, the same
//   noise and scores in double as the CPU, so the same labels.
#include "backend/cuda/cuda_common.cuh"  // first: it includes fmt the way nvcc needs

#include <algorithm>
#include <optional>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_ops.cuh"
#include "backend/cuda/cuda_quant.cuh"
#include "backend/gumbel.h"

namespace samq::cuda {

namespace {

constexpr int kThreads = 256;

// db[i] += sum_t dy[t, i], in double, t in order (as bias_backward on the CPU).
__global__ void col_sum_kernel(const float* dy, int64_t n, int64_t d, float* db) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < d; i += stride) {
    double s = 0;
    for (int64_t t = 0; t < n; ++t) s += double(dy[t * d + i]);
    db[i] = __fadd_rn(db[i], float(s));
  }
}

// acc[j] += sum_t v[t, j]^2 in double, t in order.
__global__ void col_sq_kernel(const float* v, int64_t n, int64_t w, double* acc) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < w; j += stride) {
    double s = 0;
    for (int64_t t = 0; t < n; ++t) {
      const double x = double(v[t * w + j]);
      s += x * x;
    }
    acc[j] += s;
  }
}

// dweight[i] += sum_t dy[t, i] * xhat[t, i] in double, t in order.
__global__ void col_dot_kernel(const float* dy, const float* xhat, int64_t n, int64_t d, float* dweight) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < d; i += stride) {
    double s = 0;
    for (int64_t t = 0; t < n; ++t) s += double(dy[t * d + i]) * double(xhat[t * d + i]);
    dweight[i] = __fadd_rn(dweight[i], float(s));
  }
}

// dx[t] += rstd * (g * w - xhat * m), m = mean(g * w * xhat) (in double), g = dy[t].
__global__ void rms_dx_kernel(const float* xhat, const float* rstd, const float* dy, int64_t n, int64_t d,
                              const float* weight, float* dx) {
  __shared__ double sh[kThreads];
  for (int64_t t = blockIdx.x; t < n; t += gridDim.x) {
    const float* xh = xhat + t * d;
    const float* g = dy + t * d;
    double dot = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
      dot += double(g[i]) * double(weight ? weight[i] : 1.0f) * double(xh[i]);
    dot = block_reduce<double>(dot, sh, 0);
    const float m = float(dot / double(d));
    const float r = rstd[t];
    float* o = dx + t * d;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const float gw = __fmul_rn(g[i], weight ? weight[i] : 1.0f);
      o[i] = __fadd_rn(o[i], __fmul_rn(r, __fsub_rn(gw, __fmul_rn(xh[i], m))));
    }
  }
}

// dg += dy * u * s * (1 + g * (1 - s)), du += dy * g * s, s = sigmoid(g).
__global__ void swiglu_backward_kernel(const float* gate, const float* up, const float* dy, int64_t n, float* dgate,
                                       float* dup) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = gate[i], s = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g)));
    if (dgate) {
      const float a = __fmul_rn(__fmul_rn(dy[i], up[i]), s);
      const float b = __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, s)));
      dgate[i] = __fadd_rn(dgate[i], __fmul_rn(a, b));
    }
    if (dup) dup[i] = __fadd_rn(dup[i], __fmul_rn(__fmul_rn(dy[i], g), s));
  }
}

// One block per row t: p = softmax(logits[t]) (f32 exponentials, sum in double, as the softmax
// op); probs_out[t] = p; dlogits[t] = scale * (p - onehot(label)) or zeros without a label;
// loss[t] = scale * (log(sum exp(l - max)) + max - l[label]) in double.
__global__ void softmax_xent_kernel(const float* logits, const int32_t* labels, int64_t n, int64_t v, float scale,
                                    float* dlogits, float* probs_out, double* loss) {
  __shared__ float shf[kThreads];
  __shared__ double shd[kThreads];
  __shared__ double shd2[kThreads];
  for (int64_t t = blockIdx.x; t < n; t += gridDim.x) {
    const float* l = logits + t * v;
    float* dl = dlogits + t * v;
    const int32_t label = labels[t];
    if (label < 0 && !probs_out) {
      for (int64_t i = threadIdx.x; i < v; i += blockDim.x) dl[i] = 0.0f;
      if (threadIdx.x == 0) loss[t] = 0.0;
      continue;
    }
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < v; i += blockDim.x) mx = fmaxf(mx, l[i]);
    mx = block_reduce<float>(mx, shf, 1);
    double sum = 0, se = 0;
    for (int64_t i = threadIdx.x; i < v; i += blockDim.x) {
      const float e = expf(__fsub_rn(l[i], mx));
      dl[i] = e;
      sum += double(e);
      se += exp(double(l[i]) - double(mx));
    }
    sum = block_reduce<double>(sum, shd, 0);
    se = block_reduce<double>(se, shd2, 0);
    for (int64_t i = threadIdx.x; i < v; i += blockDim.x) {
      const float p = float(double(dl[i]) / sum);
      if (probs_out) probs_out[t * v + i] = p;
      dl[i] = label < 0 ? 0.0f : __fmul_rn(p, scale);
    }
    __syncthreads();  // dl[label] written by its owner before thread 0 updates it
    if (threadIdx.x == 0) {
      if (label >= 0) {
        dl[label] = __fsub_rn(dl[label], scale);
        loss[t] = double(scale) * (log(se) + double(mx) - double(l[label]));
      } else {
        loss[t] = 0.0;
      }
    }
  }
}

// labels[t] = gumbel_label(row t, keys[t]) (ops_backward.h): one block per row, each thread the
// best of its strided indices, then a tree that keeps the larger score and, on ties, the lower
// index; -1 for keys < 0.
__global__ void sample_labels_kernel(const float* logits, int64_t n, int64_t v, const int64_t* keys, int32_t* labels) {
  __shared__ double best_s[kThreads];
  __shared__ int64_t best_i[kThreads];
  for (int64_t t = blockIdx.x; t < n; t += gridDim.x) {
    const int64_t key = keys[t];
    if (key < 0) {
      if (threadIdx.x == 0) labels[t] = -1;
      continue;
    }
    const float* l = logits + t * v;
    double bs = -INFINITY;
    int64_t bi = v;
    for (int64_t i = threadIdx.x; i < v; i += blockDim.x) {
      const double sc = double(l[i]) + gumbel_noise(uint64_t(key), uint64_t(i));
      if (sc > bs) {
        bs = sc;
        bi = i;
      }
    }
    best_s[threadIdx.x] = bs;
    best_i[threadIdx.x] = bi;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
      if (int(threadIdx.x) < w) {
        const double os = best_s[threadIdx.x + w];
        const int64_t oi = best_i[threadIdx.x + w];
        if (os > best_s[threadIdx.x] || (os == best_s[threadIdx.x] && oi < best_i[threadIdx.x])) {
          best_s[threadIdx.x] = os;
          best_i[threadIdx.x] = oi;
        }
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) labels[t] = int32_t(best_i[0] < v ? best_i[0] : 0);
    __syncthreads();
  }
}

// dE[ids[t]] += dy[t] for t in order: one thread per column, so no two threads touch one value.
__global__ void embedding_backward_kernel(const int32_t* ids, const float* dy, int64_t n, int64_t d, float* dE) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < d; i += stride)
    for (int64_t t = 0; t < n; ++t) {
      const int64_t id = ids[t];
      if (id < 0) continue;
      float* e = dE + id * d + i;
      *e = __fadd_rn(*e, dy[t * d + i]);
    }
}

__global__ void sq_accumulate_kernel(const float* g, int64_t n, float* acc) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    acc[i] = __fadd_rn(acc[i], __fmul_rn(g[i], g[i]));
}

// Level 1 of sum_sq: block b sums elements b*256 + tid + k*(nb*256) per thread, then a tree.
__global__ void sum_sq_partial_kernel(const float* g, int64_t n, double* part) {
  __shared__ double sh[kThreads];
  double s = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    s += double(g[i]) * double(g[i]);
  s = block_reduce<double>(s, sh, 0);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void sum_partials_kernel(const double* part, int64_t n, double* out) {
  __shared__ double sh[1024];
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
  s = block_reduce<double>(s, sh, 0);
  if (threadIdx.x == 0) *out = s;
}

__global__ void to_double_kernel(const float* x, int64_t n, double* y) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = double(x[i]);
}

unsigned rows_grid(int64_t n) { return unsigned(std::clamp<int64_t>(n, 1, 1 << 20)); }

class CudaBackwardOps final : public BackwardOps {
 public:
  CudaBackwardOps(Device& d, const Ops& fwd) : d_(d), fwd_(fwd) {}
  const char* name() const override { return "cuda"; }
  const Ops& ops() const override { return fwd_; }

  // y(n, rows) = x(n, cols) W^T + b:  dx += dy W;  dW += dy^T x;  db += sum_t dy.
  void matmul_backward(const float* x, const float* dy, int64_t n, const WeightView& w, float* dx, float* dw,
                       float* db) const override {
    Scope s(d_);
    if (n <= 0) return;
    const int64_t rows = w.rows, cols = w.cols;
    const CudaWeight* cw = dx ? &uploaded(w, d_, "matmul_backward") : nullptr;
    if (w.type == GgmlType::BF16) {
      // Token blocks keep the 16-bit halves of dy and x within the scratch budget.
      const int64_t per_token = (rows + cols) * 2 * int64_t(sizeof(uint16_t));
      const int64_t tb = std::clamp<int64_t>(scratch_bytes() / std::max<int64_t>(per_token, 1), 1, n);
      Tmp dyh(d_, size_t(tb * rows) * 2), dyl(d_, size_t(tb * rows) * 2);
      std::optional<Tmp> xh, xl;
      if (dw) {
        xh.emplace(d_, size_t(tb * cols) * 2);
        xl.emplace(d_, size_t(tb * cols) * 2);
      }
      for (int64_t t0 = 0; t0 < n; t0 += tb) {
        const int64_t m = std::min(tb, n - t0);
        split_bf16(d_, dy + t0 * rows, m * rows, dyh.as<uint16_t>(), dyl.as<uint16_t>());
        if (dx) {
          // (m, rows) x (rows, cols) -> (m, cols), hi then lo
          gemm_16(d_, CUDA_R_16BF, false, false, m, cols, rows, 1.0f, dyh.as<void>(), rows, cw->data, cols, 1.0f,
                  dx + t0 * cols, cols);
          gemm_16(d_, CUDA_R_16BF, false, false, m, cols, rows, 1.0f, dyl.as<void>(), rows, cw->data, cols, 1.0f,
                  dx + t0 * cols, cols);
        }
        if (dw) {
          split_bf16(d_, x + t0 * cols, m * cols, xh->as<uint16_t>(), xl->as<uint16_t>());
          // (rows, m) x (m, cols) -> (rows, cols): hi.hi + hi.lo + lo.hi
          gemm_16(d_, CUDA_R_16BF, true, false, rows, cols, m, 1.0f, dyh.as<void>(), rows, xh->as<void>(), cols, 1.0f,
                  dw, cols);
          gemm_16(d_, CUDA_R_16BF, true, false, rows, cols, m, 1.0f, dyh.as<void>(), rows, xl->as<void>(), cols, 1.0f,
                  dw, cols);
          gemm_16(d_, CUDA_R_16BF, true, false, rows, cols, m, 1.0f, dyl.as<void>(), rows, xh->as<void>(), cols, 1.0f,
                  dw, cols);
        }
      }
    } else {
      if (dx) {
        if (w.type == GgmlType::F32) {
          // (n, rows) x (rows, cols) -> (n, cols)
          gemm_f32(d_, false, false, n, cols, rows, 1.0f, dy, rows, static_cast<const float*>(cw->data), cols, 1.0f,
                   dx, cols);
        } else {
          if (!dequant_supported(w.type))
            fail("{} matmul_backward: no device dequantizer for weight type {}", d_.label, ggml_type_name(w.type));
          const int64_t tile = weight_tile_rows(rows, cols);
          Tmp wt(d_, size_t(tile * cols) * sizeof(float));
          for (int64_t r0 = 0; r0 < rows; r0 += tile) {
            const int64_t r1 = std::min(rows, r0 + tile);
            dequantize_rows(d_, w.type, cw->data, cw->row_bytes, cols, nullptr, r0, r1 - r0, wt.as<float>());
            // dx(n, cols) += dy(n, r0:r1) x W(r0:r1, cols)
            gemm_f32(d_, false, false, n, cols, r1 - r0, 1.0f, dy + r0, rows, wt.as<float>(), cols, 1.0f, dx, cols);
          }
        }
      }
      // dW(rows, cols) += dy^T (rows, n) x x(n, cols)
      if (dw) gemm_f32(d_, true, false, rows, cols, n, 1.0f, dy, rows, x, cols, 1.0f, dw, cols);
    }
    if (db) col_sum(dy, n, rows, db);
  }

  void rms_norm_backward(const float* x, const float* dy, int64_t n, int64_t d, const float* weight, float eps,
                         float* dx, float* dweight) const override {
    Scope s(d_);
    if (n <= 0 || d <= 0 || (!dx && !dweight)) return;
    Tmp xhat(d_, size_t(n * d) * sizeof(float)), rstd(d_, size_t(n) * sizeof(float));
    cuda::rms_norm(d_, x, n, d, nullptr, eps, xhat.as<float>(), rstd.as<float>());
    if (dx) {
      rms_dx_kernel<<<rows_grid(n), kThreads, 0, d_.stream>>>(xhat.as<float>(), rstd.as<float>(), dy, n, d, weight,
                                                              dx);
      check_launch("rms_dx_kernel", d_);
    }
    if (dweight) {
      col_dot_kernel<<<grid_for(d, kThreads), kThreads, 0, d_.stream>>>(dy, xhat.as<float>(), n, d, dweight);
      check_launch("col_dot_kernel", d_);
    }
  }

  void rope_backward(float* dx, int64_t n, int64_t n_head, int64_t head_dim, const int32_t* pos,
                     const RopeParams& p) const override {
    Scope s(d_);
    cuda::rope(d_, dx, n, n_head, head_dim, pos, p, true);
  }

  void attention_backward(const AttentionArgs& a, const float* dout, float* dq, float* dk, float* dv) const override {
    Scope s(d_);
    cuda::attention_backward(d_, a, dout, dq, dk, dv);
  }

  void swiglu_backward(const float* gate, const float* up, const float* dy, int64_t n, float* dgate,
                       float* dup) const override {
    if (n <= 0 || (!dgate && !dup)) return;
    Scope s(d_);
    swiglu_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, d_.stream>>>(gate, up, dy, n, dgate, dup);
    check_launch("swiglu_backward_kernel", d_);
  }

  double softmax_cross_entropy_backward(const float* logits, const int32_t* labels, int64_t n, int64_t v, float scale,
                                        float* dlogits, float* probs_out) const override {
    Scope s(d_);
    if (n <= 0) return 0.0;
    // Labels checked on the host (label >= v is an error, < 0 means no loss), as the CPU does.
    std::vector<int32_t> h(static_cast<size_t>(n));
    check(cudaMemcpyAsync(h.data(), labels, size_t(n) * sizeof(int32_t), cudaMemcpyDeviceToHost, d_.stream),
          "cudaMemcpyAsync (labels)", d_);
    check(cudaStreamSynchronize(d_.stream), "cudaStreamSynchronize", d_);
    for (int64_t t = 0; t < n; ++t)
      if (h[t] >= v) fail("{}: label {} at row {} out of range (vocabulary {})", d_.label, h[t], t, v);
    Tmp loss(d_, size_t(n) * sizeof(double));
    softmax_xent_kernel<<<rows_grid(n), kThreads, 0, d_.stream>>>(logits, labels, n, v, scale, dlogits, probs_out,
                                                                  loss.as<double>());
    check_launch("softmax_xent_kernel", d_);
    std::vector<double> l(static_cast<size_t>(n));
    check(cudaMemcpyAsync(l.data(), loss.as<double>(), size_t(n) * sizeof(double), cudaMemcpyDeviceToHost, d_.stream),
          "cudaMemcpyAsync (loss)", d_);
    check(cudaStreamSynchronize(d_.stream), "cudaStreamSynchronize", d_);
    double total = 0;
    for (double x : l) total += x;  // row order, as the CPU
    return total;
  }

  void sample_labels(const float* logits, int64_t n, int64_t v, const int64_t* keys, int32_t* labels) const override {
    if (n <= 0) return;
    Scope s(d_);
    if (v <= 0) fail("{}: sample_labels over an empty vocabulary", d_.label);
    const unsigned blocks = unsigned(std::min<int64_t>(n, 65535));
    sample_labels_kernel<<<blocks, kThreads, 0, d_.stream>>>(logits, n, v, keys, labels);
    check_launch("sample_labels_kernel", d_);
  }

  // Ids are not range-checked (the caller's vocabulary size is not known here; the CPU does not
  // check either); negative ids are skipped.
  void embedding_backward(const int32_t* ids, const float* dy, int64_t n, int64_t d, float* dE) const override {
    if (n <= 0 || d <= 0) return;
    Scope s(d_);
    embedding_backward_kernel<<<grid_for(d, kThreads), kThreads, 0, d_.stream>>>(ids, dy, n, d, dE);
    check_launch("embedding_backward_kernel", d_);
  }

  void bias_backward(const float* dy, int64_t n, int64_t d, float* db) const override {
    Scope s(d_);
    col_sum(dy, n, d, db);
  }

  void col_sq_accumulate(const float* v, int64_t n, int64_t w, double* acc) const override {
    if (n <= 0 || w <= 0) return;
    Scope s(d_);
    col_sq_kernel<<<grid_for(w, kThreads), kThreads, 0, d_.stream>>>(v, n, w, acc);
    check_launch("col_sq_kernel", d_);
  }

  void sq_accumulate(const float* g, int64_t n, float* acc) const override {
    if (n <= 0) return;
    Scope s(d_);
    sq_accumulate_kernel<<<grid_for(n, kThreads), kThreads, 0, d_.stream>>>(g, n, acc);
    check_launch("sq_accumulate_kernel", d_);
  }

  double sum_sq(const float* g, int64_t n) const override {
    if (n <= 0) return 0.0;
    Scope s(d_);
    // The partition depends on n only (never on the device), so the sum is reproducible.
    const int64_t nb = std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, 1024);
    Tmp part(d_, size_t(nb + 1) * sizeof(double));
    sum_sq_partial_kernel<<<unsigned(nb), kThreads, 0, d_.stream>>>(g, n, part.as<double>());
    check_launch("sum_sq_partial_kernel", d_);
    sum_partials_kernel<<<1, 1024, 0, d_.stream>>>(part.as<double>(), nb, part.as<double>() + nb);
    check_launch("sum_partials_kernel", d_);
    double out = 0;
    check(cudaMemcpyAsync(&out, part.as<double>() + nb, sizeof(double), cudaMemcpyDeviceToHost, d_.stream),
          "cudaMemcpyAsync (sum_sq)", d_);
    check(cudaStreamSynchronize(d_.stream), "cudaStreamSynchronize", d_);
    return out;
  }

  // H (cols, cols) row-major, upper triangle (j >= i) += x^T x in double. Seen by cuBLAS
  // (column-major) that triangle is the lower one of the same matrix, and x (n, cols) row-major
  // is x^T (cols, n): dsyrk(LOWER, N) computes x^T x there.
  void xtx_accumulate(const float* x, int64_t n, int64_t cols, double* H) const override {
    if (n <= 0 || cols <= 0) return;
    Scope s(d_);
    const int64_t tb = std::clamp<int64_t>(scratch_bytes() / (cols * int64_t(sizeof(double))), 1, n);
    Tmp xd(d_, size_t(tb * cols) * sizeof(double));
    if (cols > INT32_MAX || tb > INT32_MAX) fail("{}: xtx_accumulate: {} columns too many", d_.label, cols);
    const double one = 1.0;
    for (int64_t t0 = 0; t0 < n; t0 += tb) {
      const int64_t m = std::min(tb, n - t0);
      to_double_kernel<<<grid_for(m * cols, kThreads), kThreads, 0, d_.stream>>>(x + t0 * cols, m * cols,
                                                                                 xd.as<double>());
      check_launch("to_double_kernel", d_);
      check_blas(cublasDsyrk(d_.blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, int(cols), int(m), &one, xd.as<double>(),
                             int(cols), &one, H, int(cols)),
                 "cublasDsyrk", d_);
    }
  }

 private:
  void col_sum(const float* dy, int64_t n, int64_t d, float* db) const {
    if (n <= 0 || d <= 0) return;
    col_sum_kernel<<<grid_for(d, kThreads), kThreads, 0, d_.stream>>>(dy, n, d, db);
    check_launch("col_sum_kernel", d_);
  }

  Device& d_;
  const Ops& fwd_;
};

}  // namespace

}  // namespace samq::cuda

namespace samq {

const BackwardOps& cuda_backward_ops(int index) {
  static std::mutex mu;
  static std::vector<cuda::CudaBackwardOps*> tables;  // never freed, as the devices
  const Ops& fwd = cuda_ops(index);                   // throws for a bad index
  cuda::Device& d = cuda::device(index);
  std::lock_guard<std::mutex> lock(mu);
  if (int(tables.size()) <= index) tables.resize(size_t(index) + 1, nullptr);
  if (!tables[index]) tables[index] = new cuda::CudaBackwardOps(d, fwd);
  return *tables[index];
}

}  // namespace samq
