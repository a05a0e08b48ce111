// Eval statistics against brute-force definitions: the base-distribution codec (llama-perplexity's
// 16-bit log-prob codes), KLD / same-top / Δp per token, percentiles, the file round trip, and
// evaluate() against a hand-rolled perplexity loop over forward_logits with the reference ops.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "backend/ops.h"
#include "common/random.h"
#include "common/test_env.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "eval/logits_codec.h"
#include "eval/perplexity.h"
#include "model/forward.h"
#include "model/model.h"

using namespace samq;

namespace {

std::vector<float> rand_logits(int64_t n, uint32_t seed, float sd) { return samq::test::randn(size_t(n), seed, sd); }

std::vector<double> log_softmax(const std::vector<float>& l) {
  double mx = -1e30, s = 0;
  for (float x : l) mx = std::max(mx, double(x));
  for (float x : l) s += std::exp(x - mx);
  std::vector<double> o(l.size());
  for (size_t i = 0; i < l.size(); ++i) o[i] = l[i] - mx - std::log(s);
  return o;
}

}  // namespace

TEST(LogitsCodec, DecodedLogProbsMatchLogSoftmax) {
  for (float sd : {0.5f, 3.0f, 8.0f}) {
    const auto l = rand_logits(1001, 7, sd);
    const auto lp = log_softmax(l);
    const TokenDist d = encode_dist(l.data(), 1001);
    const double mx = *std::max_element(lp.begin(), lp.end());
    for (int32_t i = 0; i < 1001; ++i) {
      if (lp[i] > mx - 15.99) EXPECT_NEAR(d.log_prob(i), lp[i], 3e-4) << "sd " << sd << " id " << i;
      else EXPECT_GE(d.log_prob(i), lp[i] - 3e-4);  // collapsed to min_log_prob (a floor)
    }
    EXPECT_EQ(d.argmax(), int32_t(std::max_element(l.begin(), l.end()) - l.begin()));
  }
}

TEST(LogitsCodec, FileRoundTripAndCorruption) {
  BaseLogitsFile f;
  f.n_ctx = 8;
  f.n_vocab = 300;
  f.n_chunk = 2;
  f.tokens.assign(16, 3);
  f.text_sha256 = "abc";
  std::vector<std::vector<TokenDist>> chunks;
  for (int c = 0; c < 2; ++c) {
    std::vector<TokenDist> ds;
    for (int j = 0; j < eval_n_scored(8); ++j) ds.push_back(encode_dist(rand_logits(300, 10 * c + j, 4).data(), 300));
    f.add_chunk(ds);
    chunks.push_back(ds);
  }
  const std::string path = test::temp_dir() + "/b.lgt";
  f.save(path);
  const BaseLogitsFile g = BaseLogitsFile::load(path);
  EXPECT_EQ(g.n_ctx, 8);
  EXPECT_EQ(g.tokens, f.tokens);
  for (int c = 0; c < 2; ++c) {
    const auto ds = g.chunk(c);
    ASSERT_EQ(ds.size(), chunks[c].size());
    for (size_t j = 0; j < ds.size(); ++j) {
      EXPECT_EQ(ds[j].ids, chunks[c][j].ids);
      EXPECT_EQ(ds[j].codes, chunks[c][j].codes);
      EXPECT_EQ(ds[j].scale, chunks[c][j].scale);
    }
  }
  std::string bytes = read_file(path);
  bytes[0] = 'X';
  write_file_atomic(path, bytes);
  EXPECT_THROW(BaseLogitsFile::load(path), Error);
  write_file_atomic(path, read_file(path).substr(0, 20));
  EXPECT_THROW(BaseLogitsFile::load(path), Error);
}

TEST(KldAccumulator, MatchesBruteForceDefinitions) {
  KldAccumulator acc;
  std::vector<double> klds;
  double same = 0, dp2 = 0, nll = 0, nllb = 0;
  const int N = 41, V = 500;
  for (int t = 0; t < N; ++t) {
    const auto base = rand_logits(V, 100 + t, 2.0f);
    auto q = base;
    const auto noise = rand_logits(V, 1000 + t, 0.3f);
    for (int i = 0; i < V; ++i) q[i] += noise[i];
    const int32_t next = (t * 37) % V;
    const TokenDist d = encode_dist(base.data(), V);
    acc.add(q.data(), V, next, &d);
    const auto lp = log_softmax(base), lq = log_softmax(q);
    double k = 0;
    for (int i = 0; i < V; ++i) k += std::exp(lp[i]) * (lp[i] - lq[i]);  // all within 16 nats here
    klds.push_back(k);
    same += (std::max_element(base.begin(), base.end()) - base.begin()) == (std::max_element(q.begin(), q.end()) - q.begin());
    const double dp = std::exp(lq[next]) - std::exp(lp[next]);
    dp2 += dp * dp;
    nll -= lq[next];
    nllb -= lp[next];
  }
  const EvalResult r = acc.result();
  double km = 0;
  for (double k : klds) km += k;
  km /= N;
  EXPECT_NEAR(r.kld_mean, km, 2e-4 * km + 1e-6);
  std::sort(klds.begin(), klds.end());
  EXPECT_NEAR(r.kld_median, klds[N / 2], 1e-3 * klds[N / 2]);
  EXPECT_NEAR(r.kld_p99, klds[39] + 0.6 * (klds[40] - klds[39]), 1e-3 * klds[40]);  // 0.99*(N-1) = 39.6
  EXPECT_NEAR(r.same_top_pct, 100.0 * same / N, 1e-9);
  EXPECT_NEAR(r.rms_dp_pct, 100.0 * std::sqrt(dp2 / N), 1e-3);
  EXPECT_NEAR(r.ppl, std::exp(nll / N), 1e-4 * r.ppl);
  EXPECT_NEAR(r.base_ppl, std::exp(nllb / N), 1e-3 * r.base_ppl);
  EXPECT_NEAR(r.ppl_ratio, std::exp((nll - nllb) / N), 1e-3);
}

TEST(Evaluate, PerplexityEqualsHandRolledLoopAndSelfKldIsZero) {
  auto m = Model::load(test::shared_path("golden/archs/qwen3-qknorm"));
  std::vector<int32_t> toks;
  std::mt19937 g(5);
  for (int i = 0; i < 50; ++i) toks.push_back(int32_t(g() % 8000) + 2);
  const int64_t ctx = 16;
  EvalOptions o;
  o.ctx = ctx;
  o.progress = false;
  BaseLogitsFile saved;
  const EvalResult r = evaluate(*m, cpu_ops(), toks, 0, o, nullptr, &saved);
  EXPECT_EQ(r.n_chunk, 3);
  EXPECT_EQ(r.n_scored, 3 * (ctx - 1 - ctx / 2));
  // independent loop: reference ops, all logits, positions ctx/2 .. ctx-2 scored
  double nll = 0;
  int n = 0;
  for (int c = 0; c < 3; ++c) {
    std::vector<int32_t> ch(toks.begin() + c * ctx, toks.begin() + (c + 1) * ctx);
    ch[0] = 0;
    const auto l = forward_logits(*m, reference_ops(), ch);
    const int64_t V = m->hparams.n_vocab;
    for (int64_t p = ctx / 2; p <= ctx - 2; ++p) {
      std::vector<float> row(l.begin() + p * V, l.begin() + (p + 1) * V);
      nll -= log_softmax(row)[toks[c * ctx + p + 1]];
      ++n;
    }
  }
  EXPECT_EQ(n, r.n_scored);
  EXPECT_NEAR(r.ppl, std::exp(nll / n), 1e-4 * r.ppl);
  // the model against its own saved logits: KLD ~ 0 (code rounding only), same top 100 %
  const std::string path = test::temp_dir() + "/self.lgt";
  saved.save(path);
  const BaseLogits base = BaseLogits::from_file(path);
  const EvalResult s = evaluate(*m, cpu_ops(), {}, 0, o, &base);
  EXPECT_LT(std::fabs(s.kld_mean), 1e-6);
  EXPECT_EQ(s.same_top_pct, 100.0);
  EXPECT_NEAR(s.ppl_ratio, 1.0, 1e-4);
  // and against a perturbed copy of itself: KLD > 0
  auto q = Model::load(test::shared_path("golden/archs/qwen3-qknorm"));
  q->replace_with_round_trip("blk.1.ffn_up.weight", GgmlType::Q4_0, nullptr);
  const EvalResult k = evaluate(*q, cpu_ops(), {}, 0, o, &base);
  EXPECT_GT(k.kld_mean, 1e-6);
  // from a base model directly gives the same figures as from the file
  const BaseLogits bm = BaseLogits::from_model(m, cpu_ops());
  const EvalResult k2 = evaluate(*q, cpu_ops(), toks, 0, o, &bm);
  EXPECT_NEAR(k2.kld_mean, k.kld_mean, 1e-9);
}

namespace {

// Rows for Ops::eval_token_stats tests: Gaussian logits plus rows that exercise the codec's edge
// cases (a span wider than 16 nats, a tie for the max, a constant row: scale 0).
std::vector<float> stats_rows(int64_t n, int64_t v, uint32_t seed) {
  auto l = samq::test::randn(size_t(n * v), seed, 3.0f);
  if (n > 3) {
    l[size_t(1 * v + 7)] = 40.0f;    // row 1: most ids more than 16 nats below the max
    l[size_t(2 * v + 3)] = 30.0f;    // row 2: tie for the max at ids 3 and 11
    l[size_t(2 * v + 11)] = 30.0f;
    for (int64_t i = 0; i < v; ++i) l[size_t(3 * v + i)] = 0.5f;  // row 3: constant
  }
  return l;
}

}  // namespace

TEST(EvalTokenStats, ReferenceEqualsKldAccumulatorBitForBit) {
  const int64_t n = 23, v = 777;
  const auto base = stats_rows(n, v, 200);
  auto q = base;
  const auto noise = samq::test::randn(size_t(n * v), 201, 0.4f);
  for (size_t i = 0; i < q.size(); ++i) q[i] += noise[i];
  q[size_t(3 * v + 5)] = 0.5f;  // keep some structure in the constant row
  std::vector<int32_t> next(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) next[size_t(r)] = int32_t((r * 131 + 7) % v);
  std::vector<TokenDist> dists;
  DistRows rows;
  for (int64_t r = 0; r < n; ++r) {
    dists.push_back(encode_dist(&base[size_t(r * v)], v));
    rows.append(dists.back());
  }
  KldAccumulator acc, plain;
  acc.add_rows(q.data(), n, v, next.data(), dists.data());
  plain.add_rows(q.data(), n, v, next.data(), nullptr);
  auto bits = [](float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    return u;
  };
  EvalBase dense;
  dense.logits = base.data();
  EvalBase sparse;
  sparse.scale = rows.scale.data();
  sparse.min_log_prob = rows.min_log_prob.data();
  sparse.offsets = rows.offsets.data();
  sparse.ids = rows.ids.data();
  sparse.codes = rows.codes.data();
  for (const Ops* ops : {&reference_ops(), &cpu_ops()}) {
    for (const EvalBase* b : {static_cast<const EvalBase*>(&dense), static_cast<const EvalBase*>(&sparse),
                              static_cast<const EvalBase*>(nullptr)}) {
      std::vector<EvalTokenStats> st(static_cast<size_t>(n));
      ops->eval_token_stats(q.data(), n, v, next.data(), b, st.data());
      const std::string what = std::string(ops->name()) + (b == &dense ? " dense" : b ? " sparse" : " no base");
      const KldAccumulator& want = b ? acc : plain;
      for (int64_t r = 0; r < n; ++r) {
        const size_t i = size_t(r);
        EXPECT_EQ(bits(st[i].nll), bits(want.nll_[i])) << what << " row " << r;
        if (!b) continue;
        EXPECT_EQ(bits(st[i].nll_base), bits(want.nll_base_[i])) << what << " row " << r;
        EXPECT_EQ(bits(st[i].kld), bits(want.kld_[i])) << what << " row " << r;
        EXPECT_EQ(bits(st[i].dp), bits(want.dp_[i])) << what << " row " << r;
        EXPECT_EQ(st[i].same_top, int32_t(want.same_top_[i])) << what << " row " << r;
      }
    }
  }
  // the edge rows did what they are meant to
  EXPECT_LT(dists[1].ids.size(), size_t(v) / 2);
  EXPECT_EQ(dists[2].argmax(), 3);
  EXPECT_TRUE(dists[3].ids.empty());
  EXPECT_GT(acc.result().kld_mean, 1e-4);
  std::vector<int32_t> bad = next;
  bad[5] = int32_t(v);
  std::vector<EvalTokenStats> st(static_cast<size_t>(n));
  EXPECT_THROW(reference_ops().eval_token_stats(q.data(), n, v, bad.data(), &dense, st.data()), Error);
}

TEST(LogitsCodec, ChunkRowsEqualChunk) {
  BaseLogitsFile f;
  f.n_ctx = 10;
  f.n_vocab = 400;
  f.n_chunk = 1;
  f.tokens.assign(10, 1);
  std::vector<TokenDist> ds;
  for (int j = 0; j < eval_n_scored(10); ++j) ds.push_back(encode_dist(rand_logits(400, 300 + j, 5).data(), 400));
  f.add_chunk(ds);
  const std::vector<TokenDist> a = f.chunk(0);
  const DistRows b = f.chunk_rows(0);
  ASSERT_EQ(b.rows(), int64_t(a.size()));
  ASSERT_EQ(b.offsets.size(), a.size() + 1);
  for (size_t r = 0; r < a.size(); ++r) {
    EXPECT_EQ(b.scale[r], a[r].scale);
    EXPECT_EQ(b.min_log_prob[r], a[r].min_log_prob);
    const std::vector<int32_t> ids(b.ids.begin() + b.offsets[r], b.ids.begin() + b.offsets[r + 1]);
    const std::vector<uint16_t> codes(b.codes.begin() + b.offsets[r], b.codes.begin() + b.offsets[r + 1]);
    EXPECT_EQ(ids, a[r].ids);
    EXPECT_EQ(codes, a[r].codes);
  }
}

// evaluate() with the statistics through Ops::eval_token_stats (the GPU's path, here on the CPU
// tables) gives exactly the figures of the host path, for plain perplexity, a base file and a
// base model.
TEST(Evaluate, DeviceStatsPathEqualsHostPath) {
  auto m = Model::load(test::shared_path("golden/archs/qwen3-qknorm"));
  auto q = Model::load(test::shared_path("golden/archs/qwen3-qknorm"));
  q->replace_with_round_trip("blk.1.ffn_up.weight", GgmlType::Q4_0, nullptr);
  std::vector<int32_t> toks;
  std::mt19937 g(6);
  for (int i = 0; i < 60; ++i) toks.push_back(int32_t(g() % 8000) + 2);
  EvalOptions o;
  o.ctx = 16;
  o.progress = false;
  o.keep_per_token = true;
  BaseLogitsFile saved;
  (void)evaluate(*m, cpu_ops(), toks, 0, o, nullptr, &saved);
  const std::string path = test::temp_dir() + "/dev_stats.lgt";
  saved.save(path);
  const BaseLogits bf = BaseLogits::from_file(path);
  const BaseLogits bm = BaseLogits::from_model(m, cpu_ops());
  for (const BaseLogits* b : {static_cast<const BaseLogits*>(nullptr), &bf, &bm}) {
    const std::string what = !b ? "no base" : b == &bf ? "base file" : "base model";
    EvalOptions host = o, dev = o;
    host.device_stats = 0;
    dev.device_stats = 1;
    const EvalResult a = evaluate(*q, cpu_ops(), toks, 0, host, b);
    const EvalResult d = evaluate(*q, cpu_ops(), toks, 0, dev, b);
    EXPECT_EQ(a.n_scored, d.n_scored) << what;
    EXPECT_EQ(a.nll, d.nll) << what;
    EXPECT_EQ(a.kld, d.kld) << what;
    EXPECT_EQ(a.ppl, d.ppl) << what;
    EXPECT_EQ(a.has_base, d.has_base) << what;
    EXPECT_EQ(a.kld_mean, d.kld_mean) << what;
    EXPECT_EQ(a.kld_p99, d.kld_p99) << what;
    EXPECT_EQ(a.same_top_pct, d.same_top_pct) << what;
    EXPECT_EQ(a.rms_dp_pct, d.rms_dp_pct) << what;
    EXPECT_EQ(a.base_ppl, d.base_ppl) << what;
    if (b) {
      EXPECT_GT(d.kld_mean, 1e-6) << what;
    }
  }
}
