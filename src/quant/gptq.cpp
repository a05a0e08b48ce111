// GPTQ into ggml blocks (quant/gptq.h).
#include "quant/gptq.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"
#include "quant/gptq_grid.h"
#include "quant/quantize.h"

namespace samq {

bool gptq_supported(GgmlType t) { return grid_supported(t); }

namespace {

// w[k] -= e * u[k] for k in [0, n): the product and the difference each rounded to float. The
// AVX2 version (no FMA in its target, and the build never contracts) gives the plain loop's bits.
__attribute__((target("avx2"))) void sub_scaled_avx2(float* w, const float* u, float e, int64_t n) {
  const __m256 ve = _mm256_set1_ps(e);
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    _mm256_storeu_ps(w + k, _mm256_sub_ps(_mm256_loadu_ps(w + k), _mm256_mul_ps(ve, _mm256_loadu_ps(u + k))));
  for (; k < n; ++k) w[k] -= e * u[k];
}

void sub_scaled_plain(float* w, const float* u, float e, int64_t n) {
  for (int64_t k = 0; k < n; ++k) w[k] -= e * u[k];
}

const bool kHaveAvx2 = __builtin_cpu_supports("avx2");

inline void sub_scaled(float* w, const float* u, float e, int64_t n) {
  if (n <= 0) return;
  if (kHaveAvx2) sub_scaled_avx2(w, u, e, n);
  else sub_scaled_plain(w, u, e, n);
}

// Damped, symmetrized H in double; zero diagonals (dead inputs) get 1 before damping.
std::vector<double> damped(const float* H, int64_t n, double damp) {
  std::vector<double> A(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) A[size_t(i * n + j)] = 0.5 * (double(H[i * n + j]) + double(H[j * n + i]));
  const double lambda = gptq_damping_lambda(H, n, damp);
  for (int64_t i = 0; i < n; ++i) {
    double& d = A[size_t(i * n + i)];
    if (!(d > 0)) d = 1.0;
    d += lambda;
  }
  return A;
}

// In-place lower Cholesky factor (upper triangle left as garbage-free zeros).
void cholesky_lower(std::vector<double>& A, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double* rj = &A[size_t(j * n)];
    double s = rj[j];
    for (int64_t k = 0; k < j; ++k) s -= rj[k] * rj[k];
    if (!(s > 0)) fail("gptq: the damped Hessian is not positive definite (pivot {} = {})", j, s);
    const double djj = std::sqrt(s);
    rj[j] = djj;
    const int64_t rest = n - j - 1;
    auto rows = [&](int64_t b, int64_t e) {
      for (int64_t ii = b; ii < e; ++ii) {
        double* ri = &A[size_t((j + 1 + ii) * n)];
        double t = ri[j];
        for (int64_t k = 0; k < j; ++k) t -= ri[k] * rj[k];
        ri[j] = t / djj;
      }
    };
    if (rest * j < (int64_t(1) << 18)) rows(0, rest);  // too little work to wake threads
    else parallel_for(rest, 64, rows);
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) A[size_t(i * n + j)] = 0;
}

}  // namespace

double gptq_damping_lambda(const float* H, int64_t n, double damp) {
  // The symmetrized diagonal 0.5 * (h + h) is h exactly.
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = double(H[i * n + i]);
    if (!(d > 0)) d = 1.0;
    mean += d;
  }
  mean /= double(n);
  return damp * mean;
}

std::vector<float> gptq_importance(const float* H, int64_t n, double damp) {
  const double lambda = gptq_damping_lambda(H, n, damp);
  std::vector<float> imp(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double d = double(H[i * n + i]);
    if (!(d > 0)) d = 1.0;
    imp[size_t(i)] = float(d + lambda);
  }
  return imp;
}

std::vector<double> gptq_inverse_cholesky_upper(const float* H, int64_t n, double damp) {
  if (n <= 0) fail("gptq: empty Hessian");
  // A = J H J (index reversal), A = L L^T; then H^-1 = U^T U with U = J L^-1 J (upper).
  std::vector<double> Hd = damped(H, n, damp);
  std::vector<double> A(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) A[size_t(i * n + j)] = Hd[size_t((n - 1 - i) * n + (n - 1 - j))];
  Hd.clear();
  Hd.shrink_to_fit();
  cholesky_lower(A, n);
  // Columns of L^-1 by forward substitution, independent per column.
  std::vector<double> U(size_t(n * n), 0.0);
  parallel_for(n, 16, [&](int64_t b, int64_t e) {
    std::vector<double> x(static_cast<size_t>(n));
    for (int64_t j = b; j < e; ++j) {
      for (int64_t i = j; i < n; ++i) {
        const double* ri = &A[size_t(i * n)];
        double s = i == j ? 1.0 : 0.0;
        for (int64_t k = j; k < i; ++k) s -= ri[k] * x[size_t(k)];
        x[size_t(i)] = s / ri[i];
      }
      // Linv[i][j] -> U[n-1-i][n-1-j]
      for (int64_t i = j; i < n; ++i) U[size_t((n - 1 - i) * n + (n - 1 - j))] = x[size_t(i)];
    }
  });
  return U;
}

int64_t gptq_batch_columns(GgmlType t) { return grid_block_size(t) >= 256 ? 256 : 128; }

void gptq_lazy_batch(GgmlType t, float* w, int64_t ldw, float* err, int64_t lde, int64_t R, int64_t i1, int64_t i2,
                     const float* Ub, int64_t ldu, const float* importance, uint8_t* out, size_t row_bytes) {
  const int bs = grid_block_size(t);
  const size_t blk_bytes = size_t(ggml_type_info(t).type_size);
  std::vector<ElemGrid> grid(static_cast<size_t>(R * bs));
  std::vector<int> lev(static_cast<size_t>(R * bs));
  for (int64_t j = i1; j < i2; ++j) {
    const int64_t jb = j % bs;
    const int64_t jl = j - i1;  // column within the batch
    if (jb == 0) {
      for (int64_t r = 0; r < R; ++r) {
        uint8_t* blk = out + size_t(r) * row_bytes + size_t(j / bs) * blk_bytes;
        quantize_row(t, &w[size_t(r * ldw + jl)], blk, bs, importance + j);
        block_grid(t, blk, &grid[size_t(r * bs)]);
      }
    }
    const float* uj = &Ub[size_t(jl * ldu)];  // uj[kl] = U[j][i1 + kl]
    const float ujj = uj[jl];
    const int64_t nb = i2 - i1;
    for (int64_t r = 0; r < R; ++r) {
      float* wr = &w[size_t(r * ldw)];  // wr[kl]: column i1 + kl of the row
      const ElemGrid& g = grid[size_t(r * bs + jb)];
      const int q = g.nearest(wr[jl]);
      lev[size_t(r * bs + jb)] = q;
      const float e = (wr[jl] - g.value(q)) / ujj;
      err[size_t(r * lde + jl)] = e;
      sub_scaled(wr + jl + 1, uj + jl + 1, e, nb - jl - 1);  // wr[kl] -= e * uj[kl], kl in (jl, nb)
    }
    if (jb == bs - 1) {
      for (int64_t r = 0; r < R; ++r) {
        uint8_t* blk = out + size_t(r) * row_bytes + size_t(j / bs) * blk_bytes;
        set_block_levels(t, blk, &lev[size_t(r * bs)]);
      }
    }
  }
}

void gptq_check_shapes(GgmlType t, int64_t rows, int64_t cols) {
  if (!gptq_supported(t)) fail("gptq: type {} is not supported", ggml_type_name(t));
  const int bs = grid_block_size(t);
  if (rows < 0 || cols <= 0) fail("gptq: bad shape {}x{}", rows, cols);
  if (cols % bs != 0) fail("gptq: {} columns are not a multiple of the {} block size {}", cols, ggml_type_name(t), bs);
}

size_t gptq_quantize_tensor_u(GgmlType t, const float* W, void* dst, int64_t rows, int64_t cols,
                              const std::vector<double>& Ud, const std::vector<float>& importance,
                              const GptqOptions& opt) {
  (void)opt;
  gptq_check_shapes(t, rows, cols);
  if (int64_t(Ud.size()) != cols * cols) fail("gptq: U has {} entries, expected {}", Ud.size(), cols * cols);
  if (int64_t(importance.size()) != cols) fail("gptq: importance has {} entries, expected {}", importance.size(), cols);
  const int64_t n = cols;
  const int64_t B = gptq_batch_columns(t);
  const size_t row_bytes = size_t(ggml_row_size(t, cols));
  std::vector<float> U(Ud.begin(), Ud.end());
  uint8_t* out = static_cast<uint8_t*>(dst);

  constexpr int64_t kRowChunk = 8;
  parallel_for(rows, kRowChunk, [&](int64_t r0, int64_t r1) {
    const int64_t R = r1 - r0;
    std::vector<float> w(static_cast<size_t>(R * n));
    std::memcpy(w.data(), W + r0 * n, size_t(R * n) * sizeof(float));
    std::vector<float> err(static_cast<size_t>(R * B));
    for (int64_t i1 = 0; i1 < n; i1 += B) {
      const int64_t i2 = std::min(n, i1 + B);
      gptq_lazy_batch(t, &w[size_t(i1)], n, err.data(), B, R, i1, i2, &U[size_t(i1 * n + i1)], n, importance.data(),
                      out + size_t(r0) * row_bytes, row_bytes);
      if (i2 < n) {
        for (int64_t r = 0; r < R; ++r) {
          float* wr = &w[size_t(r * n)];
          for (int64_t jj = 0; jj < i2 - i1; ++jj) {
            const float e = err[size_t(r * B + jj)];
            const float* uj = &U[size_t((i1 + jj) * n)];
            sub_scaled(wr + i2, uj + i2, e, n - i2);  // wr[k] -= e * uj[k], k in [i2, n)
          }
        }
      }
    }
  });
  return size_t(rows) * row_bytes;
}

size_t gptq_quantize_tensor(GgmlType t, const float* W, void* dst, int64_t rows, int64_t cols, const float* H,
                            const GptqOptions& opt) {
  gptq_check_shapes(t, rows, cols);
  const std::vector<double> U = gptq_inverse_cholesky_upper(H, cols, opt.damp);
  return gptq_quantize_tensor_u(t, W, dst, rows, cols, U, gptq_importance(H, cols, opt.damp), opt);
}

double hessian_weighted_error(const float* W, const float* Q, int64_t rows, int64_t cols, const float* H) {
  std::vector<double> tot(size_t(rows), 0.0);
  parallel_for(rows, 4, [&](int64_t b, int64_t e) {
    std::vector<double> d(static_cast<size_t>(cols));
    for (int64_t r = b; r < e; ++r) {
      for (int64_t i = 0; i < cols; ++i) d[size_t(i)] = double(W[r * cols + i]) - double(Q[r * cols + i]);
      double s = 0;
      for (int64_t i = 0; i < cols; ++i) {
        double hi = 0;
        const float* h = H + i * cols;
        for (int64_t k = 0; k < cols; ++k) hi += double(h[k]) * d[size_t(k)];
        s += d[size_t(i)] * hi;
      }
      tot[size_t(r)] = s;
    }
  });
  double s = 0;
  for (double v : tot) s += v;
  return s;
}

}  // namespace samq
