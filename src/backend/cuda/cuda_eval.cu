// Ops::eval_token_stats on the GPU (backend/ops.h): the per-token figures of `samq eval` (NLL,
// KL(base || model) over the base's 16-bit codes, Δp, same top-1) next to the logits, so that
// only 20 bytes per scored token leave the device. The arithmetic is the host reference's
// (backend/cpu/ops_eval.cpp): the same float operations (no FMA contraction: __fmul_rn and
// friends), exponentials as float(exp(double)) (the correctly rounded float in all but rare
// double-rounding cases, where glibc's expf may differ by an ulp), sums in double over a fixed
// tree instead of in index order. So results match the CPU to ~1e-6 relative and do not vary
// from run to run.
#include "backend/cuda/cuda_common.cuh"  // first: it includes fmt the way nvcc needs

#include <algorithm>
#include <climits>

#include "backend/cuda/cuda_ops.cuh"

namespace samq::cuda {

namespace {

constexpr int kEvalThreads = 512;

__device__ inline float exp_f(float x) { return float(exp(double(x))); }

// (value, index) of the larger value, the lower index on ties; INT_MAX marks "no element".
__device__ inline void argmax_merge(float& v, int32_t& i, float ov, int32_t oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

// Same for (code, id) pairs packed as code << 32 | (INT_MAX - id): the largest key is the largest
// code, then the lowest id.
__device__ inline uint64_t code_key(uint32_t code, int32_t id) {
  return (uint64_t(code) << 32) | uint64_t(uint32_t(INT_MAX - id));
}

// encode_dist's code of base logit l, given lo (the floor), inv = 1/scale (scale != 0).
__device__ inline uint32_t dense_code(float l, float lo, float inv) {
  if (!(l > lo)) return 0;
  const float c = rintf(__fmul_rn(inv, __fsub_rn(l, lo)));
  return c > 0.0f ? uint32_t(fminf(c, 65535.0f)) : 0u;
}

// One block per row r; blockDim.x == kEvalThreads.
__global__ void eval_stats_kernel(const float* logits, int64_t n, int64_t v, const int32_t* next_ids,
                                  const float* base_logits, const float* bscale, const float* bmlp,
                                  const int64_t* offsets, const int32_t* ids, const uint16_t* codes, bool has_base,
                                  EvalTokenStats* out) {
  __shared__ float shf[kEvalThreads];
  __shared__ int32_t shi[kEvalThreads];
  __shared__ double shd[kEvalThreads];
  __shared__ uint64_t shk[kEvalThreads];
  __shared__ uint32_t next_code_sh;
  const int tid = threadIdx.x;
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const float* q = logits + r * v;
    const float* b = base_logits ? base_logits + r * v : nullptr;
    const int32_t next = next_ids[r];
    const bool next_ok = next >= 0 && next < v;

    // Pass 1: argmax of q (first index on ties); max and min of the base logits.
    float qm = -INFINITY, bmx = -INFINITY, bmn = INFINITY;
    int32_t qi = INT_MAX;
    for (int64_t i = tid; i < v; i += blockDim.x) {
      const float x = q[i];
      if (qi == INT_MAX || x > qm) {
        qm = x;
        qi = int32_t(i);
      }
      if (b) {
        bmx = fmaxf(bmx, b[i]);
        bmn = fminf(bmn, b[i]);
      }
    }
    __syncthreads();
    shf[tid] = qm;
    shi[tid] = qi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (tid < s) {
        float a = shf[tid];
        int32_t ai = shi[tid];
        argmax_merge(a, ai, shf[tid + s], shi[tid + s]);
        shf[tid] = a;
        shi[tid] = ai;
      }
      __syncthreads();
    }
    qm = shf[0];
    qi = shi[0];
    float lo = 0, inv = 0, bscale_r = 0, bmlp_r = 0;
    if (b) {
      bmx = block_reduce<float>(bmx, shf, 1);
      bmn = block_reduce<float>(bmn, shf, 2);
      lo = fmaxf(bmn, __fsub_rn(bmx, 16.0f));
    }

    // Pass 2: sums of exponentials (double).
    double qs = 0, bs = 0;
    for (int64_t i = tid; i < v; i += blockDim.x) {
      qs += double(exp_f(__fsub_rn(q[i], qm)));
      if (b) bs += double(exp_f(__fsub_rn(b[i], bmx)));
    }
    qs = block_reduce<double>(qs, shd, 0);
    const float lse = __fadd_rn(qm, float(log(qs)));
    if (b) {
      bs = block_reduce<double>(bs, shd, 0);
      const float blse = float(log(bs));
      bmlp_r = __fsub_rn(__fsub_rn(lo, bmx), blse);
      bscale_r = __fdiv_rn(__fsub_rn(bmx, lo), 65535.0f);
      if (bscale_r != 0.0f) inv = __fdiv_rn(1.0f, bscale_r);
    } else if (has_base) {
      bscale_r = bscale[r];
      bmlp_r = bmlp[r];
    }

    EvalTokenStats st;
    st.nll = next_ok ? __fsub_rn(lse, q[next]) : NAN;
    if (has_base) {
      // Pass 3: KL over the codes > 0, the base argmax, the code of the next token.
      if (tid == 0) next_code_sh = 0;
      __syncthreads();
      double kl = 0;
      uint64_t best = 0;
      auto term = [&](int32_t id, uint32_t code) {
        const float lp = __fadd_rn(__fmul_rn(bscale_r, float(code)), bmlp_r);
        kl += double(__fmul_rn(exp_f(lp), __fsub_rn(lp, __fsub_rn(q[id], lse))));
        const uint64_t k = code_key(code, id);
        if (k > best) best = k;
        if (id == next) next_code_sh = code;  // one entry per id: one writer
      };
      if (b) {
        if (bscale_r != 0.0f)
          for (int64_t i = tid; i < v; i += blockDim.x) {
            const uint32_t c = dense_code(b[i], lo, inv);
            if (c > 0) term(int32_t(i), c);
          }
      } else {
        const int64_t e0 = offsets[r], e1 = offsets[r + 1];
        for (int64_t e = e0 + tid; e < e1; e += blockDim.x) {
          const int32_t id = ids[e];
          if (id >= 0 && id < v && codes[e] > 0) term(id, codes[e]);
        }
      }
      kl = block_reduce<double>(kl, shd, 0);
      __syncthreads();
      shk[tid] = best;
      __syncthreads();
      for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (tid < s && shk[tid + s] > shk[tid]) shk[tid] = shk[tid + s];
        __syncthreads();
      }
      const uint64_t bk = shk[0];
      const int32_t base_top = bk ? int32_t(INT_MAX - int32_t(uint32_t(bk & 0xffffffffu))) : 0;
      const float nll_base = -__fadd_rn(__fmul_rn(bscale_r, float(next_code_sh)), bmlp_r);
      st.nll_base = nll_base;
      st.kld = float(kl);
      st.dp = __fsub_rn(exp_f(-st.nll), exp_f(-nll_base));
      st.same_top = qi == base_top ? 1 : 0;
    }
    if (tid == 0) out[r] = st;
    __syncthreads();  // shared state is reused by the next row
  }
}

}  // namespace

void eval_token_stats(Device& d, const float* logits, int64_t n, int64_t v, const int32_t* next,
                      const EvalBase* base, EvalTokenStats* out) {
  if (n <= 0) return;
  if (v <= 0) fail("{}: eval_token_stats over an empty vocabulary", d.label);
  if (v > INT_MAX) fail("{}: eval_token_stats: vocabulary {} too large", d.label, v);
  const bool has_base = base != nullptr;
  if (base && !base->logits && (!base->scale || !base->min_log_prob || !base->offsets || !base->ids || !base->codes))
    fail("{}: eval_token_stats: the base has neither logits nor all of its sparse arrays", d.label);
  const unsigned blocks = unsigned(std::min<int64_t>(n, 65535));
  eval_stats_kernel<<<blocks, kEvalThreads, 0, d.stream>>>(
      logits, n, v, next, has_base ? base->logits : nullptr, has_base ? base->scale : nullptr,
      has_base ? base->min_log_prob : nullptr, has_base ? base->offsets : nullptr, has_base ? base->ids : nullptr,
      has_base ? base->codes : nullptr, has_base, out);
  check_launch("eval_stats_kernel", d);
}

}  // namespace samq::cuda
