// Every *_backward op against central finite differences of a double-precision forward
// written here, independently of the engine (the oracle). Loss = sum(r * op(inputs)) with a
// random r, so the op's output gradient is r.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "backend/ops.h"
#include "backend/ops_backward.h"
#include "common/random.h"

namespace samq {
namespace {

using Vec = std::vector<double>;

using test::randn;
Vec to_d(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// Central differences of f (double) w.r.t. every element of x (double copy of the float
// inputs), step h.
Vec numeric_grad(Vec x, const std::function<double(const Vec&)>& f, double h = 1e-5) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

void expect_close(const std::vector<float>& got, const Vec& want, const char* what,
                  double rtol = 2e-3) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double mx = 0;
  for (double w : want) mx = std::max(mx, std::abs(w));
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], rtol * mx + 1e-6) << what << " element " << i;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

TEST(GradOps, Matmul) {
  const int64_t n = 5, rows = 7, cols = 6;
  auto x = randn(n * cols, 1), w = randn(rows * cols, 2), b = randn(rows, 3), r = randn(n * rows, 4);
  auto fwd = [&](const Vec& X, const Vec& Wt, const Vec& B) {
    Vec y(n * rows);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t o = 0; o < rows; ++o) {
        double s = B[o];
        for (int64_t c = 0; c < cols; ++c) s += X[t * cols + c] * Wt[o * cols + c];
        y[t * rows + o] = s;
      }
    return dot(y, to_d(r));
  };
  std::vector<float> dx(n * cols, 0), dw(rows * cols, 0), db(rows, 0);
  matmul_backward(x.data(), r.data(), n, w.data(), rows, cols, dx.data(), dw.data(), db.data());
  expect_close(dx, numeric_grad(to_d(x), [&](const Vec& X) { return fwd(X, to_d(w), to_d(b)); }), "dx");
  expect_close(dw, numeric_grad(to_d(w), [&](const Vec& Wt) { return fwd(to_d(x), Wt, to_d(b)); }), "dw");
  expect_close(db, numeric_grad(to_d(b), [&](const Vec& B) { return fwd(to_d(x), to_d(w), B); }), "db");
  // accumulation: a second call doubles
  auto dx1 = dx;
  matmul_backward(x.data(), r.data(), n, w.data(), rows, cols, dx.data(), nullptr, nullptr);
  for (size_t i = 0; i < dx.size(); ++i) EXPECT_FLOAT_EQ(dx[i], 2 * dx1[i]);
}

double rms_fwd(const Vec& X, const Vec& Wt, const Vec& R, int64_t n, int64_t d, double eps) {
  double L = 0;
  for (int64_t t = 0; t < n; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += X[t * d + i] * X[t * d + i];
    const double rs = 1 / std::sqrt(ss / d + eps);
    for (int64_t i = 0; i < d; ++i) L += R[t * d + i] * X[t * d + i] * rs * Wt[i];
  }
  return L;
}

TEST(GradOps, RmsNormAndQkNorm) {
  for (const Ops* ops : {&reference_ops(), &cpu_ops()}) {
    const int64_t n = 6, d = 8;  // also the qwen3 q/k norm: rows = tokens*heads, d = head_dim
    const float eps = 1e-5f;
    auto x = randn(n * d, 5), w = randn(d, 6), r = randn(n * d, 7);
    for (auto& v : w) v += 1.0f;
    std::vector<float> dx(n * d, 0), dw(d, 0);
    rms_norm_backward(*ops, x.data(), r.data(), n, d, w.data(), eps, dx.data(), dw.data());
    expect_close(dx, numeric_grad(to_d(x), [&](const Vec& X) { return rms_fwd(X, to_d(w), to_d(r), n, d, eps); }),
                 "dx");
    expect_close(dw, numeric_grad(to_d(w), [&](const Vec& Wt) { return rms_fwd(to_d(x), Wt, to_d(r), n, d, eps); }),
                 "dw");
  }
}

Vec rope_fwd(Vec X, int64_t n, int64_t nh, int64_t hd, const std::vector<int32_t>& pos,
             const RopeParams& p) {
  const int64_t half = p.n_rot / 2;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t i = 0; i < half; ++i) {
        double th = pos[t] * double(p.freq_scale) * std::pow(double(p.theta), -2.0 * i / p.n_rot);
        if (p.freq_factors) th /= p.freq_factors[i];
        const int64_t a = (t * nh + h) * hd + (p.neox ? i : 2 * i);
        const int64_t b = (t * nh + h) * hd + (p.neox ? i + half : 2 * i + 1);
        const double x0 = X[a], x1 = X[b];
        X[a] = x0 * std::cos(th) - x1 * std::sin(th);
        X[b] = x0 * std::sin(th) + x1 * std::cos(th);
      }
  return X;
}

TEST(GradOps, RopeNormalNeoxAndFreqFactors) {
  const int64_t n = 5, nh = 3, hd = 8;
  std::vector<int32_t> pos = {0, 1, 2, 7, 30};
  std::vector<float> ff = {1.0f, 2.0f, 4.0f, 8.0f};
  for (const Ops* ops : {&reference_ops(), &cpu_ops()})
    for (int variant = 0; variant < 3; ++variant) {
      RopeParams p;
      p.n_rot = hd;
      p.theta = 10000.0f;
      p.neox = variant == 1;
      if (variant == 2) p.freq_factors = ff.data();
      auto x = randn(n * nh * hd, 8), r = randn(n * nh * hd, 9);
      std::vector<float> dx = r;
      rope_backward(*ops, dx.data(), n, nh, hd, pos.data(), p);
      expect_close(dx, numeric_grad(to_d(x), [&](const Vec& X) { return dot(rope_fwd(X, n, nh, hd, pos, p), to_d(r)); }),
                   "rope dx");
    }
}

void check_attention(int64_t window) {
  const int64_t n = 6, nh = 4, nkvh = 2, hd = 4;
  const int64_t qw = nh * hd, kw = nkvh * hd;
  auto q = randn(n * qw, 10), k = randn(n * kw, 11), v = randn(n * kw, 12), r = randn(n * qw, 13);
  std::vector<int32_t> pos(n);
  for (int64_t t = 0; t < n; ++t) pos[t] = int32_t(t);
  const double scale = 1.0 / std::sqrt(double(hd));
  // Independent double-precision forward: query t sees keys lo..t, lo = max(0, t - window + 1)
  // with a window, else 0.
  auto fwd = [&](const Vec& Q, const Vec& K, const Vec& V) {
    double L = 0;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t g = h / (nh / nkvh), lo = window > 0 ? std::max<int64_t>(0, t - window + 1) : 0;
        Vec s(t + 1, 0.0);
        double mx = -1e300;
        for (int64_t j = lo; j <= t; ++j) {
          double a = 0;
          for (int64_t i = 0; i < hd; ++i) a += Q[t * qw + h * hd + i] * K[j * kw + g * hd + i];
          s[j] = a * scale;
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (int64_t j = lo; j <= t; ++j) z += (s[j] = std::exp(s[j] - mx));
        for (int64_t i = 0; i < hd; ++i) {
          double o = 0;
          for (int64_t j = lo; j <= t; ++j) o += s[j] / z * V[j * kw + g * hd + i];
          L += o * r[t * qw + h * hd + i];
        }
      }
    return L;
  };
  for (const Ops* ops : {&reference_ops(), &cpu_ops()}) {
    AttentionArgs a;
    a.n_tokens = n;
    a.n_kv = n;
    a.n_head = nh;
    a.n_head_kv = nkvh;
    a.head_dim = hd;
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.pos = pos.data();
    a.scale = float(scale);
    a.window = window;
    std::vector<float> out(n * qw), probs(nh * n * n);
    a.out = out.data();
    a.probs = probs.data();
    ops->attention(a);
    std::vector<float> dq(n * qw, 0), dk(n * kw, 0), dv(n * kw, 0);
    attention_backward(a, probs.data(), r.data(), dq.data(), dk.data(), dv.data());
    expect_close(dq, numeric_grad(to_d(q), [&](const Vec& Q) { return fwd(Q, to_d(k), to_d(v)); }), "dq");
    expect_close(dk, numeric_grad(to_d(k), [&](const Vec& K) { return fwd(to_d(q), K, to_d(v)); }), "dk");
    expect_close(dv, numeric_grad(to_d(v), [&](const Vec& V) { return fwd(to_d(q), to_d(k), V); }), "dv");
  }
}

TEST(GradOps, AttentionCausalGqa) { check_attention(0); }

// Sliding window of 3 over 6 tokens (Mistral's mask): the masked keys get no gradient.
TEST(GradOps, AttentionSlidingWindow) { check_attention(3); }

TEST(GradOps, Swiglu) {
  const int64_t n = 40;
  auto g = randn(n, 14, 3.0f), u = randn(n, 15), r = randn(n, 16);
  auto fwd = [&](const Vec& G, const Vec& U) {
    double L = 0;
    for (int64_t i = 0; i < n; ++i) L += r[i] * G[i] / (1 + std::exp(-G[i])) * U[i];
    return L;
  };
  std::vector<float> dg(n, 0), du(n, 0);
  swiglu_backward(g.data(), u.data(), r.data(), n, dg.data(), du.data());
  expect_close(dg, numeric_grad(to_d(g), [&](const Vec& G) { return fwd(G, to_d(u)); }), "dgate");
  expect_close(du, numeric_grad(to_d(u), [&](const Vec& U) { return fwd(to_d(g), U); }), "dup");
}

TEST(GradOps, SoftmaxCrossEntropy) {
  const int64_t n = 4, v = 9;
  auto logits = randn(n * v, 17, 2.0f);
  std::vector<int32_t> labels = {3, -1, 0, 8};
  const float scale = 0.5f;
  auto fwd = [&](const Vec& Lg) {
    double L = 0;
    for (int64_t t = 0; t < n; ++t) {
      if (labels[t] < 0) continue;
      double mx = -1e300, z = 0;
      for (int64_t i = 0; i < v; ++i) mx = std::max(mx, Lg[t * v + i]);
      for (int64_t i = 0; i < v; ++i) z += std::exp(Lg[t * v + i] - mx);
      L += scale * (std::log(z) + mx - Lg[t * v + labels[t]]);
    }
    return L;
  };
  for (const Ops* ops : {&reference_ops(), &cpu_ops()}) {
    std::vector<float> dl(n * v);
    const double loss = softmax_cross_entropy_backward(*ops, logits.data(), labels.data(), n, v, scale, dl.data());
    EXPECT_NEAR(loss, fwd(to_d(logits)), 1e-5);
    expect_close(dl, numeric_grad(to_d(logits), fwd), "dlogits");
  }
}

TEST(GradOps, EmbeddingAndBias) {
  const int64_t vocab = 5, d = 3, n = 6;
  std::vector<int32_t> ids = {1, 4, 1, 0, 4, 4};
  auto E = randn(vocab * d, 18), r = randn(n * d, 19);
  auto fwd = [&](const Vec& Em) {
    double L = 0;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < d; ++i) L += r[t * d + i] * Em[ids[t] * d + i];
    return L;
  };
  std::vector<float> dE(vocab * d, 0);
  embedding_backward(ids.data(), r.data(), n, d, dE.data());
  expect_close(dE, numeric_grad(to_d(E), fwd), "dE");
  auto b = randn(d, 20);
  std::vector<float> db(d, 0);
  bias_backward(r.data(), n, d, db.data());
  expect_close(db, numeric_grad(to_d(b), [&](const Vec& B) {
    double L = 0;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < d; ++i) L += r[t * d + i] * B[i];
    return L;
  }), "db");
}

// Gumbel-max draws follow softmax(logits): label frequencies over many keys against the
// probabilities, within 5 binomial standard deviations (oracle: the softmax computed here in
// double). Also a logit 40 nats above the rest always wins, and -1 keys give -1.
TEST(GradOps, GumbelLabelsFollowTheSoftmax) {
  const std::vector<float> l = {0.3f, -1.0f, 2.0f, 1.2f, -30.0f, 0.0f};
  const int64_t v = int64_t(l.size()), draws = 200000;
  double z = 0;
  for (float x : l) z += std::exp(double(x));
  std::vector<int64_t> count(static_cast<size_t>(v), 0);
  for (int64_t k = 0; k < draws; ++k) ++count[size_t(gumbel_label(l.data(), v, uint64_t(k) * 7919u + 13u))];
  for (int64_t i = 0; i < v; ++i) {
    const double p = std::exp(double(l[size_t(i)])) / z;
    const double sd = std::sqrt(double(draws) * p * (1 - p));
    EXPECT_NEAR(double(count[size_t(i)]), double(draws) * p, 5 * sd + 1) << "label " << i;
  }
  std::vector<float> dominant(1000, 0.0f);
  dominant[321] = 40.0f;
  for (uint64_t k = 0; k < 100; ++k) EXPECT_EQ(gumbel_label(dominant.data(), 1000, k), 321);
  const std::vector<int64_t> keys = {5, -1, 7};
  std::vector<float> rows(3 * size_t(v));
  for (int r = 0; r < 3; ++r) std::copy(l.begin(), l.end(), rows.begin() + r * v);
  std::vector<int32_t> labels(3, -7);
  cpu_backward_ops().sample_labels(rows.data(), 3, v, keys.data(), labels.data());
  EXPECT_EQ(labels[0], gumbel_label(l.data(), v, 5));
  EXPECT_EQ(labels[1], -1);
  EXPECT_EQ(labels[2], gumbel_label(l.data(), v, 7));
}

// MoE router: weights w(logits) with the choice held fixed; the oracle is a double-precision
// softmax + renormalisation written here. Loss = sum r * w.
TEST(GradOps, MoeRouteSoftmaxTopkRenorm) {
  const int64_t n = 5, NE = 6, K = 2;
  auto logits = randn(n * NE, 11), r = randn(n * K, 12);
  for (bool norm : {true, false}) {
    std::vector<int32_t> ids(n * K);
    std::vector<float> w(n * K);
    cpu_ops().moe_route(logits.data(), n, NE, K, norm, ids.data(), w.data());
    auto fwd = [&](const Vec& L) {
      double loss = 0;
      for (int64_t t = 0; t < n; ++t) {
        double mx = L[t * NE], z = 0, s = 0;
        for (int64_t e = 0; e < NE; ++e) mx = std::max(mx, L[t * NE + e]);
        for (int64_t e = 0; e < NE; ++e) z += std::exp(L[t * NE + e] - mx);
        for (int64_t j = 0; j < K; ++j) s += std::exp(L[t * NE + ids[t * K + j]] - mx) / z;
        for (int64_t j = 0; j < K; ++j) {
          const double p = std::exp(L[t * NE + ids[t * K + j]] - mx) / z;
          loss += r[t * K + j] * (norm ? p / s : p);
        }
      }
      return loss;
    };
    // forward: the chosen experts are the K most probable, weights as the oracle computes them
    for (int64_t t = 0; t < n; ++t) {
      int64_t above = 0;
      for (int64_t e = 0; e < NE; ++e) above += logits[t * NE + e] > logits[t * NE + ids[t * K + K - 1]];
      EXPECT_EQ(above, K - 1) << "row " << t;
      EXPECT_GE(logits[t * NE + ids[t * K]], logits[t * NE + ids[t * K + 1]]);
    }
    double loss_w = 0;
    for (size_t i = 0; i < w.size(); ++i) loss_w += double(r[i]) * w[i];
    EXPECT_NEAR(loss_w, fwd(to_d(logits)), 1e-5);
    for (const BackwardOps* b : {&reference_backward_ops(), &cpu_backward_ops()}) {
      std::vector<float> dl(n * NE, 0.0f);
      b->moe_route_backward(logits.data(), ids.data(), r.data(), n, NE, K, norm, dl.data());
      expect_close(dl, numeric_grad(to_d(logits), fwd), norm ? "dlogits (renormalised)" : "dlogits");
    }
  }
}

// out[rows[i]] += scale[i] * src[i] with a row hit twice; gather's gradient is the same op.
TEST(GradOps, MoeScatterAddRows) {
  const int64_t n = 4, d = 3, n_out = 3;
  auto src = randn(n * d, 21), scale = randn(n, 22), r = randn(n_out * d, 23);
  const std::vector<int32_t> rows = {2, 0, 2, 1};
  auto fwd = [&](const Vec& S, const Vec& C) {
    Vec out(n_out * d, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < d; ++j) out[rows[i] * d + j] += C[i] * S[i * d + j];
    return dot(out, to_d(r));
  };
  std::vector<float> out(n_out * d, 0.0f);
  cpu_ops().scatter_add_rows(src.data(), d, rows.data(), scale.data(), n, out.data());
  double l = 0;
  for (size_t i = 0; i < out.size(); ++i) l += double(out[i]) * r[i];
  EXPECT_NEAR(l, fwd(to_d(src), to_d(scale)), 1e-5);
  std::vector<float> g(n * d);
  cpu_ops().gather_rows(r.data(), d, rows.data(), n, g.data());
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(g[i * d + 1], r[rows[i] * d + 1]);
  std::vector<float> dsrc(n * d, 0.0f), dscale(n, 0.0f);
  cpu_backward_ops().scatter_add_rows_backward(src.data(), r.data(), d, rows.data(), scale.data(), n, dsrc.data(),
                                               dscale.data());
  expect_close(dsrc, numeric_grad(to_d(src), [&](const Vec& S) { return fwd(S, to_d(scale)); }), "dsrc");
  expect_close(dscale, numeric_grad(to_d(scale), [&](const Vec& C) { return fwd(to_d(src), C); }), "dscale");
}

}  // namespace
}  // namespace samq
