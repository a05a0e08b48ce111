// Fast CPU implementation of the op table (backend/ops.h).
// - matmul, quantized weights repacked at load (prepare_weight, packed_gemm.h; AVX-512 VNNI CPUs)
//   and 2+ tokens (prefill, batched decode): 16-row int8 tiles x 8 tokens (matmul_packed).
// - matmul, types with a fused integer dot (quant_dot.h) and few tokens (decode): activations
//   quantized once to the weight type's ggml activation type, then weight rows in parallel
//   (chunks of kDecodeRows) against every token by dot_rows; no f32 weight row exists.
// - matmul, many tokens without a repacked form (round-trip views of the analysis, non-VNNI CPUs,
//   SAMQ_REPACK=0): per weight type, either the same fused integer
//   dot over blocks of kTokBlock tokens (quantized activations stay in L1/L2), or weight rows
//   dequantized tile by tile into f32 (sgemm_tile_rows, parallel over tiles) and multiplied with
//   OpenBLAS sgemm (single-threaded inside our own parallel loop). prefill_path() picks.
// - matmul, float weights (F32/F16/BF16) and fewer than kSgemmMinTokensFloat tokens: register
//   tiles of rows x tokens (simd.h dot_tile_f32 / dot_tile_f32_bf16w; BF16 rows are read from
//   the mapped file and widened in registers), bit-identical to one dot_f32 per output.
// - matmul without a fused kernel (or with exact f32 activations on a quantized weight): rows
//   dequantized to f32 and dotted by the AVX-512/AVX2 kernel of simd.h.
// - rope: cos/sin per (position, frequency) from a per-thread table, computed once per RoPE
//   configuration and position (same float values as computing them per call).
// - attention, few queries (decode): parallel over (token, head); scores by SIMD dot products,
//   values by axpy. Many queries (prefill): per (head, block of queries) by two sgemm calls.
// Tile and chunk boundaries never depend on the thread count, so results do not either.
// Every op is tested against reference_ops() in tests/backend/.
#include <cblas.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/packed_gemm.h"
#include "backend/cpu/quant_dot.h"
#include "backend/cpu/simd.h"
#include "backend/ops.h"
#include "core/error.h"
#include "core/parallel.h"

namespace samq {
namespace {

constexpr int64_t kSgemmMinTokens = 8;  // below this, row-wise dot products win
// Float weights: the register tile kernels beat dequantize + sgemm below this, whose packing of
// each weight tile dominated 8-sequence decode of the BF16 model (serve load test).
constexpr int64_t kSgemmMinTokensFloat = 32;
constexpr int64_t kDecodeRows = 16;     // fused path: rows per parallel chunk
// Repacked weights (packed_gemm.h) are used from this many tokens. One token (decode) stays on
// the fused kernels although the packed tile is faster there too (bench_engine --only tg, 1
// thread, interleaved x3: Q4_K_M 915-968 vs 773-783 tokens/s, Q8_0 611-649 vs 536-564): their
// float accumulation order (8 lanes over k, as ggml's AVX2 vec_dot) keeps the greedy llama.cpp
// fixture at 47/48 positions (tests/model/slow_llamacpp_fixture.cpp); the packed
// tile for n = 1 flips one more near-tie (46/48). So the GGUF pages stay resident next to the
// packed copy. SAMQ_PACKED_MIN=N overrides (1: packed for decode too).
int64_t packed_min_tokens() {
  static const int64_t v = [] {
    const char* env = std::getenv("SAMQ_PACKED_MIN");
    return env ? std::max<int64_t>(1, std::atoll(env)) : int64_t(2);
  }();
  return v;
}
constexpr int64_t kTokBlock = 64;       // fused path, many tokens: tokens per dot_rows call
// Attention by sgemm blocks from this many queries (below, per-(token, head) dot products; the
// greedy llama.cpp fixture's prompts of 7..23 tokens stay on that path, whose rounding its
// near-tie positions were recorded with).
constexpr int64_t kAttnBlockMinTokens = 32;
constexpr int64_t kAttnBlock = 32;           // queries per attention block

// sgemm path: rows of W dequantized per tile. A quarter of the rows (multiple of 16, 64..256),
// from the shape only: OpenBLAS repacks the activations for every tile, so tiles are large,
// but a matrix still splits into a few tiles for the threads.
int64_t sgemm_tile_rows(int64_t rows) {
  return std::clamp<int64_t>((rows / 4 + 15) / 16 * 16, 64, 256);
}

// dequantize_weight_row with SIMD widening for the float types (the reference loops are scalar).
void dequant_row(const WeightView& w, int64_t r, float* out) {
  const auto* p = reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(w.data) + r * w.row_bytes);
  if (w.type == GgmlType::BF16) return cpu::bf16_to_f32_row(p, out, w.cols);
  if (w.type == GgmlType::F16) return cpu::f16_to_f32_row(p, out, w.cols);
  dequantize_weight_row(w, r, out);
}

// Thread-local scratch that only grows.
template <class T>
T* scratch(std::vector<T>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(n);
  return v.data();
}

// Many-token matmul: fused integer dot or dequantize + sgemm. Measured on refcode-32m, 512-token
// prefill, 1 thread (bench_engine --no-llama --only pp, SAMQ_PREFILL_PATH=fused|sgemm):
// Q4_K_M file 511 vs 572 tokens/s, Q8_0 file 386 vs 579: sgemm for every type for now (the
// fused kernels take 1 weight row x 4 tokens per pass; a register-blocked int8 tile would be
// needed to win). SAMQ_PREFILL_PATH=sgemm|fused overrides.
enum class PrefillPath { Sgemm, Fused };
PrefillPath prefill_path(GgmlType) {
  const char* env = std::getenv("SAMQ_PREFILL_PATH");  // read per call (tests switch it)
  if (env && !std::strcmp(env, "fused")) return PrefillPath::Fused;
  return PrefillPath::Sgemm;
}

// RoPE cos/sin for positions 0..n_pos-1 of one configuration, per thread.
struct RopeTable {
  int64_t n_rot = -1;
  float theta = 0, freq_scale = 0;
  GgmlType inv_type = GgmlType::F32;
  std::vector<float> factors;  // copy of p.freq_factors (empty: none)
  std::vector<float> inv;
  int64_t n_pos = 0;
  std::vector<float> cs, sn;  // (n_pos, n_rot/2)

  bool same(const RopeParams& p) const {
    if (p.n_rot != n_rot || p.theta != theta || p.freq_scale != freq_scale || p.inv_freq_type != inv_type)
      return false;
    if (!p.freq_factors) return factors.empty();
    return !factors.empty() && std::memcmp(factors.data(), p.freq_factors, sizeof(float) * factors.size()) == 0;
  }
  void reset(const RopeParams& p) {
    n_rot = p.n_rot;
    theta = p.theta;
    freq_scale = p.freq_scale;
    inv_type = p.inv_freq_type;
    factors.assign(p.freq_factors ? p.freq_factors : nullptr, p.freq_factors ? p.freq_factors + p.n_rot / 2 : nullptr);
    inv = rope_inv_freq(p);
    n_pos = 0;
    cs.clear();
    sn.clear();
  }
  void grow(int64_t need) {
    if (need <= n_pos) return;
    const int64_t half = n_rot / 2;
    const int64_t np = std::max<int64_t>(need, std::max<int64_t>(2 * n_pos, 256));
    cs.resize(np * half);
    sn.resize(np * half);
    for (int64_t t = n_pos; t < np; ++t)
      for (int64_t i = 0; i < half; ++i) {
        const double th = double(t) * double(inv[i]);  // as the reference computes it
        cs[t * half + i] = float(std::cos(th));
        sn[t * half + i] = float(std::sin(th));
      }
    n_pos = np;
  }
};

class CpuOps final : public Ops {
 public:
  const char* name() const override { return "cpu"; }

  // (n, cols) x (rows, cols)^T -> (n, rows)
  void matmul(const float* x_in, int64_t n, const WeightView& w, const float* bias,
              float* y) const override {
    const cpu::ActType at = (w.ggml_act_rounding ? cpu::act_type_for(w.type) : cpu::ActType::F32);
    // The fused kernels round activations to act_type_for(w.type): usable when that is the
    // rounding asked for.
    // Float weights keep the dequantize + dot_f32 path (16-lane AVX-512 sums): with the fused
    // 8-lane float kernels one near-tie of the BF16 greedy llama.cpp fixture
    // (tests/model/slow_llamacpp_fixture.cpp, 48/48 required) flips; the speed goals concern
    // the quantized files.
    const bool float_w = w.type == GgmlType::F32 || w.type == GgmlType::F16 || w.type == GgmlType::BF16;
    const bool fused = !float_w && at == cpu::act_type_for(w.type) && cpu::has_fused_dot(w.type) &&
                       w.cols % ggml_type_info(w.type).block_size == 0;
    if (w.prepared && at == cpu::act_type_for(w.type) && n >= packed_min_tokens())
      if (const auto* p = dynamic_cast<const cpu::PackedWeight*>(w.prepared);
          p && p->type == w.type && p->rows == w.rows && p->cols == w.cols)
        return matmul_packed(x_in, n, *p, bias, y);
    if (fused && (n < kSgemmMinTokens || prefill_path(w.type) == PrefillPath::Fused))
      matmul_fused(x_in, n, w, bias, y);
    else if (n >= (float_w ? kSgemmMinTokensFloat : kSgemmMinTokens))
      matmul_sgemm(x_in, n, w, at, bias, y);
    else
      matmul_rows(x_in, n, w, at, bias, y);
  }

  std::unique_ptr<PreparedWeight> prepare_weight(const WeightView& w) const override {
    if (!cpu::repack_enabled() || !cpu::packable(w.type)) return nullptr;
    return cpu::pack_weight(w);
  }

  // Repacked int8 tiles (packed_gemm.h): activations quantized once, groups of 16 rows in
  // parallel, tokens in tiles of 8 from token 0 (each output is one tile's result whatever the
  // chunking, so chunks may follow the thread count).
  static void matmul_packed(const float* x, int64_t n, const cpu::PackedWeight& p, const float* bias, float* y) {
    static thread_local cpu::PackedActs acts;
    cpu::pack_activations(p, x, n, acts);
    const int64_t parts = 4 * int64_t(num_threads());
    const int64_t chunk = std::max<int64_t>(1, (p.groups + parts - 1) / parts);
    const cpu::PackedActs& a = acts;
    parallel_for(p.groups, chunk, [&](int64_t g0, int64_t g1) {
      for (int64_t t0 = 0; t0 < n; t0 += kTokBlock)
        cpu::packed_gemm(p, a, g0, g1, t0, std::min(n, t0 + kTokBlock), y, p.rows);
      if (bias)
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = g0 * cpu::kPackRows; r < std::min(p.rows, g1 * cpu::kPackRows); ++r) y[t * p.rows + r] += bias[r];
    });
  }

  // Quantized activations x fused integer dots, rows in parallel.
  static void matmul_fused(const float* x, int64_t n, const WeightView& w, const float* bias, float* y) {
    static thread_local std::vector<uint8_t> xq_buf;
    const int64_t cols = w.cols, rb = cpu::act_row_bytes(w.type, cols);
    uint8_t* xq = scratch(xq_buf, n * rb);
    if (n >= 32)
      parallel_for(n, 16, [&](int64_t t0, int64_t t1) {
        cpu::quantize_activations(w.type, x + t0 * cols, t1 - t0, cols, xq + t0 * rb);
      });
    else
      cpu::quantize_activations(w.type, x, n, cols, xq);
    // Each output is one dot_rows result whatever the chunking, so the chunk size may follow
    // the thread count: about 4 chunks per thread (multiples of kDecodeRows rows), few enough
    // that claiming chunks (one shared atomic each) costs nothing next to the work.
    const int64_t parts = 4 * int64_t(num_threads());
    const int64_t per = (w.rows + parts - 1) / parts;
    const int64_t chunk = std::max(kDecodeRows, (per + kDecodeRows - 1) / kDecodeRows * kDecodeRows);
    parallel_for(w.rows, chunk, [&](int64_t r0, int64_t r1) {
      for (int64_t t0 = 0; t0 < n; t0 += kTokBlock)
        cpu::dot_rows(w.type, w.data, w.row_bytes, r0, r1, xq + t0 * rb, std::min(kTokBlock, n - t0), cols,
                      y + t0 * w.rows, w.rows);
      if (bias)
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = r0; r < r1; ++r) y[t * w.rows + r] += bias[r];
    });
  }

  // Activations rounded as ggml does (into a per-thread buffer); nullptr-free pointer to use.
  static const float* rounded(const float* x_in, int64_t n, int64_t cols, cpu::ActType at) {
    if (at == cpu::ActType::F32) return x_in;
    static thread_local std::vector<float> xbuf;
    float* xr = scratch(xbuf, n * cols);
    parallel_for(n, 8, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) cpu::round_activations(at, x_in + t * cols, xr + t * cols, cols);
    });
    return xr;
  }

  // Tiles of sgemm_tile_rows(rows) weight rows dequantized to f32, OpenBLAS sgemm per tile.
  static void matmul_sgemm(const float* x_in, int64_t n, const WeightView& w, cpu::ActType at, const float* bias,
                           float* y) {
    const int64_t cols = w.cols;
    const float* x = rounded(x_in, n, cols, at);
    // Tiles fixed by the shape whatever the thread count, so results do not depend on it.
    const int64_t tile_rows = sgemm_tile_rows(w.rows);
    parallel_for(w.rows, tile_rows, [&](int64_t b0, int64_t b1) {
      static thread_local std::vector<float> buf;
      for (int64_t r0 = b0; r0 < b1; r0 += tile_rows) {
        const int64_t r1 = std::min(b1, r0 + tile_rows);
        const float* tile;
        if (w.type == GgmlType::F32) {
          tile = reinterpret_cast<const float*>(static_cast<const uint8_t*>(w.data) + r0 * w.row_bytes);
        } else {
          float* t = scratch(buf, (r1 - r0) * cols);
          for (int64_t r = r0; r < r1; ++r) dequant_row(w, r, t + (r - r0) * cols);
          tile = t;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(r1 - r0), int(cols), 1.0f, x, int(cols),
                    tile, int(cols), 0.0f, y + r0, int(w.rows));
        if (bias)
          for (int64_t t = 0; t < n; ++t)
            for (int64_t r = r0; r < r1; ++r) y[t * w.rows + r] += bias[r];
      }
    });
  }

  // BF16 weights, several tokens: rows stream from the mapped weights straight into the tile
  // kernel (widened in registers), no widened copy; same results as matmul_rows bit for bit.
  static void matmul_bf16(const float* x, int64_t n, const WeightView& w, const float* bias, float* y) {
    const int64_t cols = w.cols;
    const auto* wd = static_cast<const uint16_t*>(w.data);
    const int64_t ws = w.row_bytes / 2;
    parallel_for(w.rows, kDecodeRows, [&](int64_t r0, int64_t r1) {
      constexpr int64_t kSub = 4;
      for (int64_t s0 = r0; s0 < r1; s0 += kSub) {
        const int64_t s1 = std::min(r1, s0 + kSub);
        // Next rows into L2 (measured ~5 % faster than into L1 here: the tile kernel's loads keep
        // L1's fill buffers busy).
        for (int64_t b = s1 * w.row_bytes, e = std::min(w.rows, s1 + kSub) * w.row_bytes; b < e; b += 64)
          _mm_prefetch(reinterpret_cast<const char*>(wd) + b, _MM_HINT_T1);
        cpu::dot_tile_f32_bf16w(wd + s0 * ws, ws, s1 - s0, x, cols, n, cols, y + s0, w.rows);
        if (bias)
          for (int64_t t = 0; t < n; ++t)
            for (int64_t r = s0; r < s1; ++r) y[t * w.rows + r] += bias[r];
      }
    });
  }

  // Few tokens, no fused kernel: weight rows dequantized a few at a time into L1, each dotted with
  // every token by dot_tile_f32 (bit-identical to one dot_f32 per output whatever n is).
  static void matmul_rows(const float* x_in, int64_t n, const WeightView& w, cpu::ActType at, const float* bias,
                          float* y) {
    const int64_t cols = w.cols;
    const float* x = rounded(x_in, n, cols, at);
    if (n > 1 && w.type == GgmlType::BF16) return matmul_bf16(x, n, w, bias, y);
    constexpr int64_t kSub = 4;  // rows dequantized per dot_tile_f32 call
    const auto* base = static_cast<const char*>(w.data);
    parallel_for(w.rows, kDecodeRows, [&](int64_t r0, int64_t r1) {
      static thread_local std::vector<float> buf;
      float* rows = scratch(buf, kSub * cols);
      for (int64_t s0 = r0; s0 < r1; s0 += kSub) {
        const int64_t s1 = std::min(r1, s0 + kSub);
        // Ask for the next rows now: with several tokens the dot products take long enough that
        // the hardware prefetcher alone left the weight stream waiting on memory (n = 8: the
        // bf16 widening took 53 % of a decode step).
        if (n > 1)
          for (int64_t b = s1 * w.row_bytes, e = std::min(w.rows, s1 + kSub) * w.row_bytes; b < e; b += 64)
            _mm_prefetch(base + b, _MM_HINT_T0);
        const float* wr;
        int64_t stride = cols;
        if (w.type == GgmlType::F32) {
          wr = reinterpret_cast<const float*>(static_cast<const uint8_t*>(w.data) + s0 * w.row_bytes);
          stride = w.row_bytes / int64_t(sizeof(float));
        } else {
          for (int64_t r = s0; r < s1; ++r) dequant_row(w, r, rows + (r - s0) * cols);
          wr = rows;
        }
        cpu::dot_tile_f32(wr, stride, s1 - s0, x, cols, n, cols, y + s0, w.rows);
        if (bias)
          for (int64_t t = 0; t < n; ++t)
            for (int64_t r = s0; r < s1; ++r) y[t * w.rows + r] += bias[r];
      }
    });
  }

  void get_rows(const WeightView& w, const int32_t* ids, int64_t n, float* out) const override {
    for (int64_t t = 0; t < n; ++t)
      if (ids[t] < 0 || ids[t] >= w.rows)
        fail("token id {} out of range (vocabulary of {} rows)", ids[t], w.rows);
    parallel_for(n, 8, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) dequant_row(w, ids[t], out + t * w.cols);
    });
  }

  void rms_norm(const float* x, int64_t n, int64_t d, const float* weight, float eps, float* y,
                float* rstd_out) const override {
    auto rows = [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const float* xt = x + t * d;
        const float ss = cpu::dot_f32(xt, xt, d);
        const float rstd = 1.0f / std::sqrt(ss / float(d) + eps);
        if (rstd_out) rstd_out[t] = rstd;
        cpu::scale_mul(xt, rstd, weight, y + t * d, d);
      }
    };
    if (n * d >= (1 << 15))
      parallel_for(n, 16, rows);
    else
      rows(0, n);
  }

  void rope(float* x, int64_t n, int64_t n_head, int64_t head_dim, const int32_t* pos,
            const RopeParams& p) const override {
    const int64_t half = p.n_rot / 2;
    static thread_local RopeTable tab;
    if (!tab.same(p)) tab.reset(p);
    int64_t maxpos = 0;
    bool negative = false;  // the backward pass rotates by -pos: computed per call
    for (int64_t t = 0; t < n; ++t) {
      negative |= pos[t] < 0;
      maxpos = std::max<int64_t>(maxpos, pos[t]);
    }
    if (!negative) tab.grow(maxpos + 1);
    // tab is this thread's table: the loop below runs on pool threads too, so it must use
    // pointers taken here, never `tab` (another thread's, possibly empty, table).
    const float* cs_all = tab.cs.data();
    const float* sn_all = tab.sn.data();
    const float* inv = tab.inv.data();
    auto rows = [&](int64_t t0, int64_t t1) {
      std::vector<float> own;
      if (negative) own.resize(2 * half);
      for (int64_t t = t0; t < t1; ++t) {
        const float* cs;
        const float* sn;
        if (negative) {
          for (int64_t i = 0; i < half; ++i) {
            const double th = double(pos[t]) * double(inv[i]);
            own[i] = float(std::cos(th));
            own[half + i] = float(std::sin(th));
          }
          cs = own.data();
          sn = own.data() + half;
        } else {
          cs = cs_all + pos[t] * half;
          sn = sn_all + pos[t] * half;
        }
        for (int64_t h = 0; h < n_head; ++h) {
          float* v = x + (t * n_head + h) * head_dim;
          if (p.neox) {
            for (int64_t i = 0; i < half; ++i) {
              const float x0 = v[i], x1 = v[i + half];
              v[i] = x0 * cs[i] - x1 * sn[i];
              v[i + half] = x0 * sn[i] + x1 * cs[i];
            }
          } else {
            for (int64_t i = 0; i < half; ++i) {
              const float x0 = v[2 * i], x1 = v[2 * i + 1];
              v[2 * i] = x0 * cs[i] - x1 * sn[i];
              v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
            }
          }
        }
      }
    };
    if (n >= 32)
      parallel_for(n, 16, rows);
    else
      rows(0, n);
  }

  void attention(const AttentionArgs& a) const override {
    if (a.n_tokens >= kAttnBlockMinTokens && !a.probs) return attention_blocked(a);
    const int64_t hd = a.head_dim, group = a.n_head / a.n_head_kv;
    const int64_t qw = a.n_head * hd, kw = a.n_head_kv * hd;
    parallel_for(a.n_tokens * a.n_head, 4, [&](int64_t i0, int64_t i1) {
      static thread_local std::vector<float> buf;
      float* sc = scratch(buf, a.n_kv);
      for (int64_t it = i0; it < i1; ++it) {
        const int64_t t = it / a.n_head, h = it % a.n_head, hk = h / group;
        const int64_t last = std::min<int64_t>(a.pos[t], a.n_kv - 1);
        const int64_t lo = std::min(attention_first_key(a.pos[t], a.window), last + 1);
        const float* q = a.q + t * qw + h * hd;
        float mx = -INFINITY;
        for (int64_t j = lo; j <= last; ++j) {
          sc[j] = cpu::dot_f32(q, a.k + j * kw + hk * hd, hd) * a.scale;
          mx = std::max(mx, sc[j]);
        }
        const float inv = 1.0f / cpu::exp_sub_sum(sc + lo, last + 1 - lo, mx);
        float* o = a.out + t * qw + h * hd;
        std::fill(o, o + hd, 0.0f);
        for (int64_t j = lo; j <= last; ++j) cpu::axpy_f32(sc[j] * inv, a.v + j * kw + hk * hd, o, hd);
        if (a.probs) {
          float* pr = a.probs + (h * a.n_tokens + t) * a.n_kv;
          for (int64_t j = 0; j < a.n_kv; ++j) pr[j] = j >= lo && j <= last ? sc[j] * inv : 0.0f;
        }
      }
    });
  }

  // Many queries (prefill): per (head, block of kAttnBlock queries), scores S = scale * Q K^T
  // over the keys the block can see and O = softmax(S) V, both by sgemm; rows past a query's
  // position are masked. Blocks are fixed by the token count, not the thread count.
  static void attention_blocked(const AttentionArgs& a) {
    const int64_t hd = a.head_dim, group = a.n_head / a.n_head_kv;
    const int64_t qw = a.n_head * hd, kw = a.n_head_kv * hd;
    const int64_t nqb = (a.n_tokens + kAttnBlock - 1) / kAttnBlock;
    parallel_for(a.n_head * nqb, 1, [&](int64_t i0, int64_t i1) {
      static thread_local std::vector<float> buf;
      for (int64_t it = i0; it < i1; ++it) {
        const int64_t h = it / nqb, hk = h / group;
        const int64_t t0 = (it % nqb) * kAttnBlock, t1 = std::min(a.n_tokens, t0 + kAttnBlock), bq = t1 - t0;
        int64_t n_keys = 0;
        for (int64_t t = t0; t < t1; ++t) n_keys = std::max<int64_t>(n_keys, std::min<int64_t>(a.pos[t], a.n_kv - 1) + 1);
        float* S = scratch(buf, bq * n_keys);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(bq), int(n_keys), int(hd), a.scale,
                    a.q + t0 * qw + h * hd, int(qw), a.k + hk * hd, int(kw), 0.0f, S, int(n_keys));
        for (int64_t i = 0; i < bq; ++i) {
          float* sc = S + i * n_keys;
          const int64_t last = std::min<int64_t>(a.pos[t0 + i], a.n_kv - 1);
          const int64_t lo = std::min(attention_first_key(a.pos[t0 + i], a.window), last + 1);
          const float mx = cpu::max_f32(sc + lo, last + 1 - lo);
          const float inv = 1.0f / cpu::exp_sub_sum(sc + lo, last + 1 - lo, mx);
          cpu::scale_mul(sc + lo, inv, nullptr, sc + lo, last + 1 - lo);
          std::fill(sc, sc + lo, 0.0f);
          std::fill(sc + last + 1, sc + n_keys, 0.0f);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(bq), int(hd), int(n_keys), 1.0f, S, int(n_keys),
                    a.v + hk * hd, int(kw), 0.0f, a.out + t0 * qw + h * hd, int(qw));
      }
    });
  }

  void swiglu(const float* gate, const float* up, int64_t n, float* y) const override {
    if (n >= (1 << 15))
      parallel_for(n, 1 << 14, [&](int64_t i0, int64_t i1) { cpu::silu_mul(gate + i0, up + i0, y + i0, i1 - i0); });
    else
      cpu::silu_mul(gate, up, y, n);
  }

  void softmax(float* x, int64_t n, int64_t d) const override {
    parallel_for(n, 4, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        float* r = x + t * d;
        const float inv = 1.0f / cpu::exp_sub_sum(r, d, cpu::max_f32(r, d));
        cpu::scale_mul(r, inv, nullptr, r, d);
      }
    });
  }

  void add(const float* a, const float* b, int64_t n, float* y) const override {
    if (n >= (1 << 16))
      parallel_for(n, 1 << 14, [&](int64_t i0, int64_t i1) { cpu::add_f32(a + i0, b + i0, y + i0, i1 - i0); });
    else
      cpu::add_f32(a, b, y, n);
  }
};

}  // namespace

const Ops& cpu_ops() {
  static const CpuOps ops;
  return ops;
}

}  // namespace samq
