// The backward and statistics ops on one GPU (backend/ops_backward.h BackwardOps), over the
// forward table cuda_ops(index). Semantics are those of src/backend/cpu/ops_backward.cpp; every
// gradient output accumulates (+=).
// - matmul_backward: BF16 weights by bf16 tensor-core GEMMs with the split trick (dy = hi + lo,
//   hi = bf16(dy), lo = bf16(dy - hi), likewise x): dx += hi W + lo W (one GEMM over [hi; lo]); dW += hi_dy^T hi_x +
//   hi_dy^T lo_x + lo_dy^T hi_x, the three dW products as one GEMM over the halves stacked along
//   the tokens (dW read and written once). The products are exact (bf16 x bf16 in f32) and what
//   the split drops is below 2^-17 relative, so the result is the f32 one to ~1e-5. Other types:
//   weight tiles dequantized to f32 and f32 GEMMs (no TF32).
// - column reductions (bias, rms_norm weight, col_sq): partial sums in double over a fixed split
//   of the tokens (depends on the shape only), added in order: equal to the CPU's in-order sums
//   to ~1e-16 relative before the final rounding. embedding: each id's rows added in token
//   order (bit for bit the CPU's).
// - sum_sq: a fixed two-level tree in double, fused with sq_accumulate in sq_accumulate_sum;
//   xtx: x in double; diagonal blocks by cublasDsyrk, the blocks above them by cublasDgemm.
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
constexpr int64_t kXtxBlock = 1024;  // xtx_accumulate: block columns above 2048 columns

// ---- column reductions over tokens: r[j] = sum_t f(t, j) in double, for bias (dy), the
// rms_norm weight (dy * xhat) and the statistics (v^2). Stage 1: block (bx, s) sums its 256
// columns over token segment s (a fixed split of the rows that depends only on n and w), loads
// four rows ahead; stage 2: one thread per column adds the segments' partials in order and
// applies the result. Coalesced (a warp reads 32 consecutive columns of one row) and parallel
// over segments, where one thread per column looping over all n tokens was latency-bound (16
// blocks for 4096 columns, 512 dependent loads each).
enum class ColOp { Sum, Dot, Sq };

template <ColOp op>
__device__ inline double col_term(const float* a, const float* b, int64_t idx) {
  if constexpr (op == ColOp::Sum) return double(a[idx]);
  else if constexpr (op == ColOp::Dot) return double(a[idx]) * double(b[idx]);
  else {
    const double x = double(a[idx]);
    return x * x;
  }
}

template <ColOp op>
__global__ void col_partial_kernel(const float* a, const float* b, int64_t n, int64_t w, int64_t seg, double* part) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= w) return;
  const int64_t t0 = int64_t(blockIdx.y) * seg, t1 = t0 + seg < n ? t0 + seg : n;
  double s = 0;
  int64_t t = t0;
  for (; t + 4 <= t1; t += 4) {
    const double x0 = col_term<op>(a, b, t * w + j), x1 = col_term<op>(a, b, (t + 1) * w + j);
    const double x2 = col_term<op>(a, b, (t + 2) * w + j), x3 = col_term<op>(a, b, (t + 3) * w + j);
    s += x0;
    s += x1;
    s += x2;
    s += x3;
  }
  for (; t < t1; ++t) s += col_term<op>(a, b, t * w + j);
  part[int64_t(blockIdx.y) * w + j] = s;
}

// mode 0: float out[j] = f32(out[j] + f32(sum)) (bias, rms weight); 1: double acc[j] += sum.
__global__ void col_finish_kernel(const double* part, int64_t nseg, int64_t w, float* out_f, double* out_d) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < w; j += stride) {
    double s = part[j];
    for (int64_t k = 1; k < nseg; ++k) s += part[k * w + j];
    if (out_f) out_f[j] = __fadd_rn(out_f[j], float(s));
    else out_d[j] += s;
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

// dE[ids[t]] += dy[t] for t in order. Block (t, c) handles token t only when t is the first
// occurrence of its id, for 256 columns from c * 256 (one thread each): it adds the rows of t
// and every later token with that id in token order (the CPU's order, so the same floats). No
// two blocks touch one value, and n x (d / 256) blocks run at once where one thread per column
// used to walk all n tokens.
__global__ void embedding_backward_kernel(const int32_t* ids, const float* dy, int64_t n, int64_t d, float* dE) {
  __shared__ int match[kThreads];
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  if (id < 0) return;  // the whole block
  int dup = 0;
  for (int64_t u = threadIdx.x; u < t; u += blockDim.x) dup |= ids[u] == id;
  if (__syncthreads_or(dup)) return;
  const int64_t i = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  float* e = dE + int64_t(id) * d;
  float acc = i < d ? e[i] : 0.0f;
  for (int64_t u0 = t; u0 < n; u0 += blockDim.x) {
    const int64_t u = u0 + threadIdx.x;
    const int m = u < n && ids[u] == id;
    __syncthreads();  // the previous tile's flags are read
    match[threadIdx.x] = m;
    if (__syncthreads_count(m) == 0) continue;
    for (int k = 0; k < int(blockDim.x) && u0 + k < n; ++k)
      if (match[k] && i < d) acc = __fadd_rn(acc, dy[(u0 + k) * d + i]);
  }
  if (i < d) e[i] = acc;
}

// y[i] += c[i] + c[n + i] (the hi and lo products of matmul_backward's dx).
__global__ void add_halves_kernel(const float* c, int64_t n, float* y) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = __fadd_rn(y[i], __fadd_rn(c[i], c[n + i]));
}

__global__ void sq_accumulate_kernel(const float* g, int64_t n, float* acc) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    acc[i] = __fadd_rn(acc[i], __fmul_rn(g[i], g[i]));
}

// The same, 16 bytes per access (g and acc 16-byte aligned; the tail by sq_accumulate_kernel).
__global__ void sq_accumulate4_kernel(const float4* g, int64_t n4, float4* acc) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const float4 x = g[i];
    float4 a = acc[i];
    a.x = __fadd_rn(a.x, __fmul_rn(x.x, x.x));
    a.y = __fadd_rn(a.y, __fmul_rn(x.y, x.y));
    a.z = __fadd_rn(a.z, __fmul_rn(x.z, x.z));
    a.w = __fadd_rn(a.w, __fmul_rn(x.w, x.w));
    acc[i] = a;
  }
}

// Level 1 of sum_sq, fused with sq_accumulate when acc is set: block b sums the squares of
// elements b*256 + tid + k*(nb*256) for k = 0, 1, ... in that order (four loads in flight, the
// order unchanged), then a tree; acc[i] += g[i]^2 on the way.
__global__ void sum_sq_partial_kernel(const float* g, int64_t n, double* part, float* acc) {
  __shared__ double sh[kThreads];
  double s = 0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const float x0 = g[i], x1 = g[i + stride], x2 = g[i + 2 * stride], x3 = g[i + 3 * stride];
    if (acc) {
      const float a0 = acc[i], a1 = acc[i + stride], a2 = acc[i + 2 * stride], a3 = acc[i + 3 * stride];
      acc[i] = __fadd_rn(a0, __fmul_rn(x0, x0));
      acc[i + stride] = __fadd_rn(a1, __fmul_rn(x1, x1));
      acc[i + 2 * stride] = __fadd_rn(a2, __fmul_rn(x2, x2));
      acc[i + 3 * stride] = __fadd_rn(a3, __fmul_rn(x3, x3));
    }
    s += double(x0) * double(x0);
    s += double(x1) * double(x1);
    s += double(x2) * double(x2);
    s += double(x3) * double(x3);
  }
  for (; i < n; i += stride) {
    const float x = g[i];
    if (acc) acc[i] = __fadd_rn(acc[i], __fmul_rn(x, x));
    s += double(x) * double(x);
  }
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

// out (rows r0 .. r0+nr of the mean, nr x n) = float(H[min(i,j) n + max(i,j)]) / count: the mirrored
// upper triangle of an xtx_accumulate sum, rounded to float and divided as the CPU does.
__global__ void xtx_mean_kernel(const double* H, int64_t n, int64_t r0, int64_t nr, float count, float* out) {
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < nr * n; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = r0 + k / n, j = k % n;
    out[k] = __fdiv_rn(float(H[(i < j ? i : j) * n + (i < j ? j : i)]), count);
  }
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
      // Token blocks of m tokens, 16-bit halves stacked along the token axis (the GEMMs' K):
      //   A = [hi(dy); hi(dy); lo(dy)] (3m, rows),  B = [hi(x); lo(x); hi(x)] (3m, cols),
      // so dW += A^T B is the three products hi.hi + hi.lo + lo.hi in ONE GEMM (K = 3m): dW, the
      // largest operand (f32, rows x cols), is read and written once per block instead of three
      // times. dx += hi(dy) W + lo(dy) W: one GEMM over A's last two thirds [hi; lo] (M = 2m).
      // The halves may use twice the scratch budget, so that the output head's 512-token chunk is
      // one block (plus the (2m, cols) f32 products of dx).
      const int64_t per_token = (dw ? 3 * (rows + cols) : 2 * rows) * int64_t(sizeof(uint16_t));
      const int64_t tb = std::clamp<int64_t>(2 * scratch_bytes() / std::max<int64_t>(per_token, 1), 1, n);
      Tmp a(d_, size_t((dw ? 3 : 2) * tb * rows) * 2);
      std::optional<Tmp> b;
      if (dw) b.emplace(d_, size_t(3 * tb * cols) * 2);
      for (int64_t t0 = 0; t0 < n; t0 += tb) {
        const int64_t m = std::min(tb, n - t0);
        uint16_t* a0 = a.as<uint16_t>();
        uint16_t* alo = a0 + (dw ? 2 : 1) * m * rows;
        split_bf16(d_, dy + t0 * rows, m * rows, a0, alo);
        if (dw)  // A's middle third: hi(dy) again
          check(cudaMemcpyAsync(a0 + m * rows, a0, size_t(m * rows) * 2, cudaMemcpyDeviceToDevice, d_.stream),
                "cudaMemcpyAsync (hi dy)", d_);
        if (dx) {
          // [hi; lo] (2m, rows) x W (rows, cols) -> (2m, cols) in one GEMM (W read once), then
          // dx += hi W + lo W. [hi; lo] is contiguous: a0 (no dW) or a0 + m rows (A's last two thirds).
          const uint16_t* hl = dw ? a0 + m * rows : a0;
          Tmp c(d_, size_t(2 * m * cols) * sizeof(float));
          gemm_16(d_, CUDA_R_16BF, false, false, 2 * m, cols, rows, 1.0f, hl, rows, cw->data, cols, 0.0f,
                  c.as<float>(), cols);
          add_halves_kernel<<<grid_for(m * cols, kThreads), kThreads, 0, d_.stream>>>(c.as<float>(), m * cols,
                                                                                   dx + t0 * cols);
          check_launch("add_halves_kernel", d_);
        }
        if (dw) {
          uint16_t* b0 = b->as<uint16_t>();
          split_bf16(d_, x + t0 * cols, m * cols, b0, b0 + m * cols);
          check(cudaMemcpyAsync(b0 + 2 * m * cols, b0, size_t(m * cols) * 2, cudaMemcpyDeviceToDevice, d_.stream),
                "cudaMemcpyAsync (hi x)", d_);
          // (rows, 3m) x (3m, cols) -> (rows, cols)
          gemm_16(d_, CUDA_R_16BF, true, false, rows, cols, 3 * m, 1.0f, a0, rows, b0, cols, 1.0f, dw, cols);
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
      col_reduce<ColOp::Dot>(dy, xhat.as<float>(), n, d, dweight, nullptr);
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
    if (n > INT32_MAX || (d + kThreads - 1) / kThreads > 65535)
      fail("{}: embedding_backward: {} tokens x {} columns too many", d_.label, n, d);
    const dim3 grid(unsigned(n), unsigned((d + kThreads - 1) / kThreads));
    embedding_backward_kernel<<<grid, kThreads, 0, d_.stream>>>(ids, dy, n, d, dE);
    check_launch("embedding_backward_kernel", d_);
  }

  void bias_backward(const float* dy, int64_t n, int64_t d, float* db) const override {
    Scope s(d_);
    col_sum(dy, n, d, db);
  }

  void col_sq_accumulate(const float* v, int64_t n, int64_t w, double* acc) const override {
    if (n <= 0 || w <= 0) return;
    Scope s(d_);
    col_reduce<ColOp::Sq>(v, nullptr, n, w, nullptr, acc);
  }

  void sq_accumulate(const float* g, int64_t n, float* acc) const override {
    if (n <= 0) return;
    Scope s(d_);
    int64_t done = 0;
    if ((reinterpret_cast<uintptr_t>(g) | reinterpret_cast<uintptr_t>(acc)) % 16 == 0 && n >= 4) {
      const int64_t n4 = n / 4;
      sq_accumulate4_kernel<<<unsigned(std::min<int64_t>(grid_for(n4, kThreads), 8 * 1024)), kThreads, 0,
                              d_.stream>>>(reinterpret_cast<const float4*>(g), n4, reinterpret_cast<float4*>(acc));
      check_launch("sq_accumulate4_kernel", d_);
      done = n4 * 4;
    }
    if (done < n) {
      sq_accumulate_kernel<<<grid_for(n - done, kThreads), kThreads, 0, d_.stream>>>(g + done, n - done, acc + done);
      check_launch("sq_accumulate_kernel", d_);
    }
  }

  double sum_sq(const float* g, int64_t n) const override {
    if (n <= 0) return 0.0;
    Scope s(d_);
    Tmp out(d_, sizeof(double));
    sum_sq_into(g, n, nullptr, out.as<double>());
    double h = 0;
    check(cudaMemcpyAsync(&h, out.as<double>(), sizeof(double), cudaMemcpyDeviceToHost, d_.stream),
          "cudaMemcpyAsync (sum_sq)", d_);
    check(cudaStreamSynchronize(d_.stream), "cudaStreamSynchronize", d_);
    return h;
  }

  // One pass over g: acc += g^2 and the sum of squares (sum_sq's partition, so its value).
  void sq_accumulate_sum(const float* g, int64_t n, float* acc, double* sum_out) const override {
    if (n <= 0) {
      if (sum_out) {
        Scope s(d_);
        check(cudaMemsetAsync(sum_out, 0, sizeof(double), d_.stream), "cudaMemsetAsync", d_);
      }
      return;
    }
    if (!sum_out) return sq_accumulate(g, n, acc);
    Scope s(d_);
    sum_sq_into(g, n, acc, sum_out);
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
      const double* X = xd.as<double>();
      if (cols <= 2 * kXtxBlock) {
        check_blas(cublasDsyrk(d_.blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, int(cols), int(m), &one, X, int(cols),
                               &one, H, int(cols)),
                   "cublasDsyrk", d_);
        continue;
      }
      // Block columns of kXtxBlock: the diagonal block by Dsyrk, everything below it (column-major
      // view) by one tall Dgemm. Same triangle, but most of it at DGEMM speed (cuBLAS's Dsyrk
      // on the whole 14336-column matrix ran at about half of it).
      for (int64_t j0 = 0; j0 < cols; j0 += kXtxBlock) {
        const int64_t nj = std::min(kXtxBlock, cols - j0), j1 = j0 + nj;
        check_blas(cublasDsyrk(d_.blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, int(nj), int(m), &one, X + j0, int(cols),
                               &one, H + j0 + j0 * cols, int(cols)),
                   "cublasDsyrk", d_);
        if (j1 < cols)
          check_blas(cublasDgemm(d_.blas, CUBLAS_OP_N, CUBLAS_OP_T, int(cols - j1), int(nj), int(m), &one, X + j1,
                                 int(cols), X + j0, int(cols), &one, H + j1 + j0 * cols, int(cols)),
                     "cublasDgemm", d_);
      }
    }
  }

  void xtx_mean(const double* H, int64_t cols, float count, float* out) const override {
    if (cols <= 0) return;
    Scope s(d_);
    const int64_t rb = std::clamp<int64_t>(scratch_bytes() / (cols * int64_t(sizeof(float))), 1, cols);
    Tmp tmp(d_, size_t(rb * cols) * sizeof(float));
    for (int64_t r0 = 0; r0 < cols; r0 += rb) {
      const int64_t nr = std::min(rb, cols - r0);
      xtx_mean_kernel<<<grid_for(nr * cols, kThreads), kThreads, 0, d_.stream>>>(H, cols, r0, nr, count,
                                                                                 tmp.as<float>());
      check_launch("xtx_mean_kernel", d_);
      check(cudaMemcpyAsync(out + r0 * cols, tmp.as<float>(), size_t(nr * cols) * sizeof(float),
                            cudaMemcpyDeviceToHost, d_.stream),
            "cudaMemcpyAsync (xtx_mean)", d_);
      check(cudaStreamSynchronize(d_.stream), "cudaStreamSynchronize (xtx_mean)", d_);
    }
  }

 private:
  // *out (device) = sum_i g[i]^2; acc[i] += g[i]^2 on the way when acc is set. The partition
  // depends on n only (never on the device), so the sum is reproducible.
  void sum_sq_into(const float* g, int64_t n, float* acc, double* out) const {
    const int64_t nb = std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, 1024);
    Tmp part(d_, size_t(nb) * sizeof(double));
    sum_sq_partial_kernel<<<unsigned(nb), kThreads, 0, d_.stream>>>(g, n, part.as<double>(), acc);
    check_launch("sum_sq_partial_kernel", d_);
    sum_partials_kernel<<<1, 1024, 0, d_.stream>>>(part.as<double>(), nb, out);
    check_launch("sum_partials_kernel", d_);
  }

  void col_sum(const float* dy, int64_t n, int64_t d, float* db) const {
    if (n <= 0 || d <= 0) return;
    col_reduce<ColOp::Sum>(dy, nullptr, n, d, db, nullptr);
  }

  // Column reduction over the n rows of a (and b) into out_f (float, +=) or out_d (double, +=).
  // The token split depends only on (n, w): about 1024 stage-1 blocks, at least 16 tokens each.
  template <ColOp op>
  void col_reduce(const float* a, const float* b, int64_t n, int64_t w, float* out_f, double* out_d) const {
    if (n <= 0 || w <= 0) return;
    const int64_t col_blocks = (w + kThreads - 1) / kThreads;
    if (col_blocks > INT32_MAX) fail("{}: column reduction over {} columns", d_.label, w);
    const int64_t max_seg = std::max<int64_t>(1, n / 16);
    const int64_t want = std::clamp<int64_t>((1024 + col_blocks - 1) / col_blocks, 1, std::min<int64_t>(max_seg, 65535));
    const int64_t seg = (n + want - 1) / want, nseg = (n + seg - 1) / seg;
    Tmp part(d_, size_t(nseg * w) * sizeof(double));
    col_partial_kernel<op><<<dim3(unsigned(col_blocks), unsigned(nseg)), kThreads, 0, d_.stream>>>(
        a, b, n, w, seg, part.as<double>());
    check_launch("col_partial_kernel", d_);
    col_finish_kernel<<<grid_for(w, kThreads), kThreads, 0, d_.stream>>>(part.as<double>(), nseg, w, out_f, out_d);
    check_launch("col_finish_kernel", d_);
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
