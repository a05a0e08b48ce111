// Causal GQA attention on the device, forward and backward (backend/ops.h AttentionArgs,
// backend/ops_backward.h attention_backward), by cuBLAS strided-batched f32 GEMMs over chunks of
// (kv heads [g0, g1), query tokens [t0, t1)), so the n_tokens x n_kv score matrix is held for a
// chunk only (a bounded scratch; contexts of 8192 fit).
//
// Within a chunk, query head h = g*gs + r (gs = n_head / n_head_kv) reads kv head g. For each
// rank r one batched GEMM covers the chunk's kv heads: batch i works on kv head g0 + i and
// query head (g0 + i)*gs + r, so K/V advance by hd and Q/O by gs*hd per batch entry.
// Scratch layout: S[r][i][t][j] (t a token of the chunk, j a key).
//
// Forward:  S = scale Q_h K_g^T;  P = masked softmax (key j visible to query t iff j <= pos[t],
//           f32 exponentials, sum in double);  O_h = P V_g.
// Backward: P recomputed the same way, then dV_g += P^T dO_h;  dP = dO_h V_g^T;
//           dS = scale P (dP - rowsum(P dP));  dQ_h += dS K_g;  dK_g += dS^T Q_h.
// The query heads of a kv head add into dK_g/dV_g one GEMM after another in rank order, chunks in
// token order: a fixed order, no atomics.
#include "backend/cuda/cuda_common.cuh"  // first: it includes fmt the way nvcc needs

#include <algorithm>

#include "backend/cuda/cuda_ops.cuh"

namespace samq::cuda {

namespace {

constexpr int kThreads = 256;

struct Chunking {
  int64_t gs = 1;  // query heads per kv head
  int64_t ng = 1;  // kv heads per chunk
  int64_t tb = 1;  // query tokens per chunk
};

Chunking plan(const AttentionArgs& a, int64_t budget) {
  Chunking c;
  c.gs = a.n_head / a.n_head_kv;
  const int64_t unit = c.gs * a.n_kv * int64_t(sizeof(float));  // one token of one kv head's group
  if (unit * a.n_tokens <= budget) {
    c.tb = a.n_tokens;
    c.ng = std::clamp<int64_t>(budget / (unit * a.n_tokens), 1, a.n_head_kv);
  } else {
    c.ng = 1;
    c.tb = std::clamp<int64_t>(budget / unit, 1, a.n_tokens);
  }
  return c;
}

void validate(const Device& d, const AttentionArgs& a, const char* op) {
  if (a.n_head <= 0 || a.n_head_kv <= 0 || a.n_head % a.n_head_kv != 0)
    fail("{} {}: n_head {} is not a positive multiple of n_head_kv {}", d.label, op, a.n_head, a.n_head_kv);
  if (a.head_dim <= 0) fail("{} {}: head_dim {}", d.label, op, a.head_dim);
  // The masked softmax below knows the causal mask only; a sliding window would be silently
  // ignored, so it is refused (model/forward.cpp refuses such models before the first layer).
  if (a.window > 0)
    fail("{} {}: sliding-window attention (window {}) is not implemented by the CUDA backend (use --device cpu)",
         d.label, op, a.window);
}

// One block per row of the chunk's scores S[r][i][t][:] (rows = gs * ng * tb): masked softmax in
// place; with probs, also written to probs[h][t0 + t][:] (zeros past pos).
__global__ void attn_softmax_kernel(float* S, int64_t n_rows, int64_t n_kv, int64_t tb, int64_t ng, int64_t gs,
                                    int64_t t0, int64_t g0, const int32_t* pos, float* probs, int64_t n_tokens) {
  __shared__ float shf[kThreads];
  __shared__ double shd[kThreads];
  for (int64_t row = blockIdx.x; row < n_rows; row += gridDim.x) {
    const int64_t r = row / (ng * tb), rem = row % (ng * tb), gi = rem / tb, ti = rem % tb;
    const int64_t t = t0 + ti, h = (g0 + gi) * gs + r;
    const int64_t pt = pos[t], last = pt < n_kv - 1 ? pt : n_kv - 1;
    float* s = S + row * n_kv;
    float* pr = probs ? probs + (h * n_tokens + t) * n_kv : nullptr;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j <= last; j += blockDim.x) mx = fmaxf(mx, s[j]);
    mx = block_reduce<float>(mx, shf, 1);
    double sum = 0;
    for (int64_t j = threadIdx.x; j <= last; j += blockDim.x) {
      const float e = expf(__fsub_rn(s[j], mx));
      s[j] = e;
      sum += double(e);
    }
    sum = block_reduce<double>(sum, shd, 0);
    for (int64_t j = threadIdx.x; j < n_kv; j += blockDim.x) {
      const float p = j <= last ? float(double(s[j]) / sum) : 0.0f;
      s[j] = p;
      if (pr) pr[j] = p;
    }
  }
}

// dS = scale * P * (dP - rowsum(P * dP)), in place over dP (rows as attn_softmax_kernel).
__global__ void attn_dscore_kernel(const float* P, float* dP, int64_t n_rows, int64_t n_kv, float scale) {
  __shared__ double shd[kThreads];
  for (int64_t row = blockIdx.x; row < n_rows; row += gridDim.x) {
    const float* p = P + row * n_kv;
    float* g = dP + row * n_kv;
    double s = 0;
    for (int64_t j = threadIdx.x; j < n_kv; j += blockDim.x) s += double(p[j]) * double(g[j]);
    s = block_reduce<double>(s, shd, 0);
    const float sf = float(s);
    for (int64_t j = threadIdx.x; j < n_kv; j += blockDim.x) g[j] = __fmul_rn(__fmul_rn(scale, p[j]), __fsub_rn(g[j], sf));
  }
}

unsigned rows_grid(int64_t n) { return unsigned(std::clamp<int64_t>(n, 1, 1 << 20)); }

// S[r] = scale * Q K^T for every rank r of the chunk, then the masked softmax (and probs).
void chunk_probs(Device& d, const AttentionArgs& a, const Chunking& c, int64_t g0, int64_t ngc, int64_t t0,
                 int64_t tbc, float* S, float* probs) {
  const int64_t hd = a.head_dim, qw = a.n_head * hd, kw = a.n_head_kv * hd, nkv = a.n_kv;
  for (int64_t r = 0; r < c.gs; ++r)
    // (tb, hd) x (n_kv, hd)^T -> (tb, n_kv), per kv head of the chunk
    gemm_f32_batched(d, false, true, tbc, nkv, hd, a.scale, a.q + t0 * qw + (g0 * c.gs + r) * hd, qw, c.gs * hd,
                     a.k + g0 * hd, kw, hd, 0.0f, S + r * ngc * tbc * nkv, nkv, tbc * nkv, ngc);
  const int64_t rows = c.gs * ngc * tbc;
  attn_softmax_kernel<<<rows_grid(rows), kThreads, 0, d.stream>>>(S, rows, nkv, tbc, ngc, c.gs, t0, g0, a.pos, probs,
                                                                   a.n_tokens);
  check_launch("attn_softmax_kernel", d);
}

}  // namespace

void attention(Device& d, const AttentionArgs& a) {
  validate(d, a, "attention");
  if (a.n_tokens <= 0) return;
  const int64_t hd = a.head_dim, qw = a.n_head * hd, kw = a.n_head_kv * hd, nkv = a.n_kv;
  if (nkv <= 0) {  // nothing visible: zero output (as the reference's empty sums)
    check(cudaMemsetAsync(a.out, 0, size_t(a.n_tokens * qw) * sizeof(float), d.stream), "cudaMemsetAsync", d);
    return;
  }
  const Chunking c = plan(a, attention_bytes());
  Tmp S(d, size_t(c.gs * c.ng * c.tb * nkv) * sizeof(float));
  for (int64_t g0 = 0; g0 < a.n_head_kv; g0 += c.ng) {
    const int64_t ngc = std::min(c.ng, a.n_head_kv - g0);
    for (int64_t t0 = 0; t0 < a.n_tokens; t0 += c.tb) {
      const int64_t tbc = std::min(c.tb, a.n_tokens - t0);
      chunk_probs(d, a, c, g0, ngc, t0, tbc, S.as<float>(), a.probs);
      for (int64_t r = 0; r < c.gs; ++r)
        // (tb, n_kv) x (n_kv, hd) -> (tb, hd) into head (g0+i)*gs + r of out
        gemm_f32_batched(d, false, false, tbc, hd, nkv, 1.0f, S.as<float>() + r * ngc * tbc * nkv, nkv, tbc * nkv,
                         a.v + g0 * hd, kw, hd, 0.0f, a.out + t0 * qw + (g0 * c.gs + r) * hd, qw, c.gs * hd, ngc);
    }
  }
}

void attention_backward(Device& d, const AttentionArgs& a, const float* dout, float* dq, float* dk, float* dv) {
  validate(d, a, "attention_backward");
  if (a.n_tokens <= 0 || a.n_kv <= 0 || (!dq && !dk && !dv)) return;
  const int64_t hd = a.head_dim, qw = a.n_head * hd, kw = a.n_head_kv * hd, nkv = a.n_kv;
  const Chunking c = plan(a, attention_bytes() / 2);  // two score-sized buffers: P and dP
  const size_t chunk_bytes = size_t(c.gs * c.ng * c.tb * nkv) * sizeof(float);
  Tmp Pbuf(d, chunk_bytes), dPbuf(d, chunk_bytes);
  float* P = Pbuf.as<float>();
  float* dP = dPbuf.as<float>();
  for (int64_t g0 = 0; g0 < a.n_head_kv; g0 += c.ng) {
    const int64_t ngc = std::min(c.ng, a.n_head_kv - g0);
    for (int64_t t0 = 0; t0 < a.n_tokens; t0 += c.tb) {
      const int64_t tbc = std::min(c.tb, a.n_tokens - t0);
      const int64_t per_rank = ngc * tbc * nkv;  // S[r] stride
      chunk_probs(d, a, c, g0, ngc, t0, tbc, P, nullptr);
      if (dv)
        for (int64_t r = 0; r < c.gs; ++r)
          // dV_g(n_kv, hd) += P^T (n_kv, tb) x dO_h (tb, hd)
          gemm_f32_batched(d, true, false, nkv, hd, tbc, 1.0f, P + r * per_rank, nkv, tbc * nkv,
                           dout + t0 * qw + (g0 * c.gs + r) * hd, qw, c.gs * hd, 1.0f, dv + g0 * hd, kw, hd, ngc);
      if (!dq && !dk) continue;
      for (int64_t r = 0; r < c.gs; ++r)
        // dP(tb, n_kv) = dO_h (tb, hd) x V_g^T (hd, n_kv)
        gemm_f32_batched(d, false, true, tbc, nkv, hd, 1.0f, dout + t0 * qw + (g0 * c.gs + r) * hd, qw, c.gs * hd,
                         a.v + g0 * hd, kw, hd, 0.0f, dP + r * per_rank, nkv, tbc * nkv, ngc);
      const int64_t rows = c.gs * ngc * tbc;
      attn_dscore_kernel<<<rows_grid(rows), kThreads, 0, d.stream>>>(P, dP, rows, nkv, a.scale);
      check_launch("attn_dscore_kernel", d);
      if (dq)
        for (int64_t r = 0; r < c.gs; ++r)
          // dQ_h(tb, hd) += dS (tb, n_kv) x K_g (n_kv, hd)
          gemm_f32_batched(d, false, false, tbc, hd, nkv, 1.0f, dP + r * per_rank, nkv, tbc * nkv, a.k + g0 * hd, kw,
                           hd, 1.0f, dq + t0 * qw + (g0 * c.gs + r) * hd, qw, c.gs * hd, ngc);
      if (dk)
        for (int64_t r = 0; r < c.gs; ++r)
          // dK_g(n_kv, hd) += dS^T (n_kv, tb) x Q_h (tb, hd)
          gemm_f32_batched(d, true, false, nkv, hd, tbc, 1.0f, dP + r * per_rank, nkv, tbc * nkv,
                           a.q + t0 * qw + (g0 * c.gs + r) * hd, qw, c.gs * hd, 1.0f, dk + g0 * hd, kw, hd, ngc);
    }
  }
}

}  // namespace samq::cuda
