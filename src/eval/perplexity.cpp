// Perplexity / KL divergence as llama-perplexity (see perplexity.h).
#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/log_softmax.h"
#include "core/progress.h"
#include "core/parallel.h"
#include "backend/buffer.h"
#include "model/forward.h"
#include "model/tokenizer.h"

namespace samq {

std::vector<int32_t> tokenize_eval_text(const Tokenizer& tok, const std::string& text) {
  return tok.encode(text, tok.add_bos_default() && tok.bos() >= 0, false);
}

std::vector<int32_t> eval_chunk_tokens(const std::vector<int32_t>& tokens, int64_t ctx, int64_t c, int32_t bos) {
  if ((c + 1) * ctx > int64_t(tokens.size())) fail("eval: chunk {} beyond the {} tokens", c, tokens.size());
  std::vector<int32_t> t(tokens.begin() + c * ctx, tokens.begin() + (c + 1) * ctx);
  if (bos >= 0) t[0] = bos;
  return t;
}

namespace {
struct TokenStats {
  float nll = 0, nll_base = 0, kld = 0, dp = 0;
  bool same_top = false;
};
// One scored position's statistics (a pure function of its inputs).
TokenStats token_stats(const float* logits, int64_t n_vocab, int32_t next, const TokenDist* base) {
  TokenStats st;
  const ArgmaxLse al = argmax_lse(logits, n_vocab);
  const int32_t imax = al.argmax;
  const float lse = al.lse;
  const float nll = lse - logits[next];
  st.nll = nll;
  if (!base) return st;
  const float nll_base = -base->log_prob(next);
  double kld = 0;
  for (size_t k = 0; k < base->ids.size(); ++k) {
    const float lp = base->scale * float(base->codes[k]) + base->min_log_prob;
    kld += std::exp(lp) * (lp - (logits[base->ids[k]] - lse));
  }
  st.nll_base = nll_base;
  st.kld = float(kld);
  st.dp = std::exp(-nll) - std::exp(-nll_base);
  st.same_top = imax == base->argmax();
  return st;
}
}  // namespace

void KldAccumulator::add(const float* logits, int64_t n_vocab, int32_t next, const TokenDist* base) {
  add_rows(logits, 1, n_vocab, &next, base);
}

void KldAccumulator::add_rows(const float* logits, int64_t rows, int64_t n_vocab, const int32_t* next,
                              const TokenDist* base) {
  std::vector<TokenStats> st(static_cast<size_t>(rows));
  parallel_for(rows, 1, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) st[size_t(j)] = token_stats(logits + j * n_vocab, n_vocab, next[j], base ? base + j : nullptr);
  });
  for (const TokenStats& t : st) {
    nll_.push_back(t.nll);
    if (!base) continue;
    nll_base_.push_back(t.nll_base);
    kld_.push_back(t.kld);
    dp_.push_back(t.dp);
    same_top_.push_back(t.same_top);
  }
}

void KldAccumulator::add_stats(const EvalTokenStats* st, int64_t rows, bool has_base) {
  for (int64_t j = 0; j < rows; ++j) {
    const EvalTokenStats& t = st[j];
    nll_.push_back(t.nll);
    if (!has_base) continue;
    nll_base_.push_back(t.nll_base);
    kld_.push_back(t.kld);
    dp_.push_back(t.dp);
    same_top_.push_back(t.same_top != 0);
  }
}

namespace {

double mean(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}
// σ of the mean, as llama-perplexity: sqrt((mean(x^2) - mean(x)^2) / (N - 1))
double mean_err(const std::vector<float>& v) {
  if (v.size() < 2) return 0;
  double s = 0, s2 = 0;
  for (float x : v) {
    s += x;
    s2 += double(x) * x;
  }
  const double n = double(v.size()), m = s / n;
  return std::sqrt(std::max(0.0, s2 / n - m * m) / (n - 1));
}
// Linear interpolation at f*(N-1) of the sorted values.
double percentile(const std::vector<float>& sorted, double f) {
  if (sorted.empty()) return 0;
  const double x = f * double(sorted.size() - 1);
  const size_t i = size_t(x);
  if (i + 1 >= sorted.size()) return sorted.back();
  return sorted[i] + (x - double(i)) * (sorted[i + 1] - sorted[i]);
}

}  // namespace

EvalResult KldAccumulator::result() const {
  EvalResult r;
  r.n_scored = count();
  r.mean_nll = mean(nll_);
  r.ppl = std::exp(r.mean_nll);
  r.ppl_err = mean_err(nll_) * r.ppl;
  if (kld_.empty()) return r;
  r.has_base = true;
  const double mb = mean(nll_base_);
  r.base_ppl = std::exp(mb);
  r.ln_ppl_ratio = r.mean_nll - mb;
  r.ppl_ratio = std::exp(r.ln_ppl_ratio);
  std::vector<float> d(nll_.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = nll_[i] - nll_base_[i];
  r.ln_ppl_ratio_err = mean_err(d);
  r.kld_mean = mean(kld_);
  r.kld_err = mean_err(kld_);
  std::vector<float> s = kld_;
  std::sort(s.begin(), s.end());
  const size_t n = s.size();
  r.kld_median = n % 2 ? s[n / 2] : 0.5 * (double(s[n / 2 - 1]) + s[n / 2]);
  r.kld_p90 = percentile(s, 0.90);
  r.kld_p95 = percentile(s, 0.95);
  r.kld_p99 = percentile(s, 0.99);
  r.kld_p999 = percentile(s, 0.999);
  r.kld_min = s.front();
  r.kld_max = s.back();
  double same = 0, dp2 = 0;
  for (uint8_t t : same_top_) same += t;
  for (float x : dp_) dp2 += double(x) * x;
  const double p = same / double(n);
  r.same_top_pct = 100.0 * p;
  r.same_top_err = n > 1 ? 100.0 * std::sqrt(p * (1 - p) / double(n - 1)) : 0;
  r.rms_dp_pct = 100.0 * std::sqrt(dp2 / double(n));
  r.mean_dp_pct = 100.0 * mean(dp_);
  return r;
}

std::vector<TokenDist> base_chunk_dists(const std::vector<float>& logits, int64_t ctx, int64_t n_vocab) {
  // logits rows: positions first .. ctx-1 (as forward() returns with logits_from = first)
  std::vector<TokenDist> out(static_cast<size_t>(eval_n_scored(ctx)));
  parallel_for(int64_t(out.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) out[size_t(j)] = encode_dist(&logits[j * n_vocab], n_vocab);
  });
  return out;
}

namespace {

// Logits rows for positions first .. ctx-1 of one chunk.
std::vector<float> chunk_logits(const Model& m, const Ops& ops, const std::vector<int32_t>& ct) {
  KvCache cache(m, int64_t(ct.size()));
  Batch b;
  BatchSeq& s = b.add(&cache, ct, true);
  s.logits_from = eval_first_scored(int64_t(ct.size()));
  forward(m, ops, b);
  return std::move(b.seqs[0].logits);
}

// The device path of evaluate() (EvalOptions::device_stats): logits stay in the backend's memory;
// Ops::eval_token_stats computes the per-token figures there and only those come back.
class DeviceChunkStats {
 public:
  DeviceChunkStats(const Model& m, const Ops& ops, int64_t ctx, int64_t n_chunk, const BaseLogits* base)
      : m_(m), ops_(ops), ctx_(ctx), n_chunk_(n_chunk), base_(base) {
    const int64_t V = m.hparams.n_vocab, rows = ctx - eval_first_scored(ctx);
    logits_.reserve(ops, rows * V);
    next_.reserve(ops, eval_n_scored(ctx));
    out_.reserve(ops, eval_n_scored(ctx));
    if (base && !base->file() && base->model() && base->model_ops() == &ops) base_logits_.reserve(ops, rows * V);
  }

  // Chunk c (tokens ct; next: its eval_n_scored(ctx) true next tokens, host) into acc.
  void run(int64_t c, const std::vector<int32_t>& ct, const int32_t* next, KldAccumulator& acc) {
    const int64_t ns = eval_n_scored(ctx_), V = m_.hparams.n_vocab;
    next_.upload(next, ns);
    EvalBase eb;
    const EvalBase* pb = nullptr;
    if (base_) {
      pb = &eb;
      if (!base_logits_.empty()) {
        forward_into(*base_->model(), ct, base_logits_.data());
        eb.logits = base_logits_.data();
      } else {
        DistRows rows;
        if (base_->file()) {
          rows = prefetched_ == c ? std::move(prefetch_) : base_->file()->chunk_rows(int32_t(c));
          prefetched_ = -1;
        } else {
          for (const TokenDist& d : base_->chunk(c, ct)) rows.append(d);
        }
        if (rows.rows() != ns) fail("eval: base chunk {} has {} positions, expected {}", c, rows.rows(), ns);
        for (int32_t id : rows.ids)
          if (id < 0 || id >= V) fail("eval: base chunk {}: token id {} outside the vocabulary ({})", c, id, V);
        scale_.reserve(ops_, ns);
        mlp_.reserve(ops_, ns);
        offsets_.reserve(ops_, ns + 1);
        const int64_t ne = std::max<int64_t>(1, int64_t(rows.ids.size()));
        ids_.reserve(ops_, ne);
        codes_.reserve(ops_, ne);
        scale_.upload(rows.scale.data(), ns);
        mlp_.upload(rows.min_log_prob.data(), ns);
        offsets_.upload(rows.offsets.data(), ns + 1);
        ids_.upload(rows.ids.data(), int64_t(rows.ids.size()));
        codes_.upload(rows.codes.data(), int64_t(rows.codes.size()));
        eb.scale = scale_.data();
        eb.min_log_prob = mlp_.data();
        eb.offsets = offsets_.data();
        eb.ids = ids_.data();
        eb.codes = codes_.data();
      }
    }
    forward_into(m_, ct, logits_.data());
    ops_.eval_token_stats(logits_.data(), ns, V, next_.data(), pb, out_.data());
    // While the device works: the next chunk's base rows from the file (host decompression).
    if (base_ && base_->file() && base_logits_.empty() && c + 1 < n_chunk_) {
      prefetch_ = base_->file()->chunk_rows(int32_t(c + 1));
      prefetched_ = c + 1;
    }
    host_.resize(static_cast<size_t>(ns));
    out_.download(host_.data(), ns);
    acc.add_stats(host_.data(), ns, base_ != nullptr);
  }

 private:
  // Logits rows first .. ctx-1 of one fresh sequence into dst (backend memory).
  void forward_into(const Model& m, const std::vector<int32_t>& ct, float* dst) {
    KvCache cache(m, int64_t(ct.size()), ops_);
    Batch b;
    BatchSeq& s = b.add(&cache, ct, true);
    s.logits_from = eval_first_scored(int64_t(ct.size()));
    ForwardOptions fo;
    fo.logits_out = dst;
    forward(m, ops_, b, fo);
  }

  const Model& m_;
  const Ops& ops_;
  int64_t ctx_, n_chunk_;
  const BaseLogits* base_;
  Buffer<float> logits_, base_logits_, scale_, mlp_;
  Buffer<int32_t> next_, ids_;
  Buffer<int64_t> offsets_;
  Buffer<uint16_t> codes_;
  Buffer<EvalTokenStats> out_;
  std::vector<EvalTokenStats> host_;
  DistRows prefetch_;
  int64_t prefetched_ = -1;
};

}  // namespace

BaseLogits BaseLogits::from_file(const std::string& path) {
  BaseLogits b;
  b.file_ = std::make_shared<BaseLogitsFile>(BaseLogitsFile::load(path));
  return b;
}

BaseLogits BaseLogits::from_model(std::shared_ptr<const Model> m, const Ops& ops) {
  BaseLogits b;
  b.model_ = std::move(m);
  b.ops_ = &ops;
  return b;
}

std::vector<TokenDist> BaseLogits::chunk(int64_t c, const std::vector<int32_t>& ct) const {
  if (file_) return file_->chunk(int32_t(c));
  return base_chunk_dists(chunk_logits(*model_, *ops_, ct), int64_t(ct.size()), model_->hparams.n_vocab);
}

EvalResult evaluate(const Model& m, const Ops& ops, const std::vector<int32_t>& text_tokens, int32_t bos,
                    const EvalOptions& opt, const BaseLogits* base, BaseLogitsFile* save) {
  const int64_t ctx = opt.ctx;
  if (ctx < 4) fail("eval: --ctx {} is too small", ctx);
  const std::vector<int32_t>* tokens = &text_tokens;
  if (base && base->file()) {
    const BaseLogitsFile& f = *base->file();
    if (f.n_ctx != ctx) fail("eval: the base logits file was made with ctx {}, not {}", f.n_ctx, ctx);
    if (f.n_vocab != m.hparams.n_vocab)
      fail("eval: base logits have n_vocab {}, the model {}", f.n_vocab, m.hparams.n_vocab);
    tokens = &f.tokens;
  }
  if (int64_t(tokens->size()) < 2 * ctx)
    fail("eval: need at least {} tokens (2 x ctx), the text has {}", 2 * ctx, tokens->size());
  int64_t n_chunk = int64_t(tokens->size()) / ctx;
  if (opt.max_chunks > 0) n_chunk = std::min(n_chunk, opt.max_chunks);
  if (save) {
    save->n_ctx = int32_t(ctx);
    save->n_vocab = int32_t(m.hparams.n_vocab);
    save->n_chunk = int32_t(n_chunk);
    save->tokens.assign(tokens->begin(), tokens->begin() + n_chunk * ctx);
  }
  const int64_t V = m.hparams.n_vocab, first = eval_first_scored(ctx);
  KldAccumulator acc;
  std::optional<Progress> bar;
  if (opt.progress) bar.emplace("eval", n_chunk, "chunks");
  const auto t0 = std::chrono::steady_clock::now();
  const bool on_device = !save && (opt.device_stats > 0 || (opt.device_stats < 0 && !ops.host_memory()));
  std::optional<DeviceChunkStats> dev;
  if (on_device) dev.emplace(m, ops, ctx, n_chunk, base);
  for (int64_t c = 0; c < n_chunk; ++c) {
    const auto ct = eval_chunk_tokens(*tokens, ctx, c, bos);
    if (dev) {
      dev->run(c, ct, tokens->data() + c * ctx + first + 1, acc);
      if (bar) bar->add(1);
      continue;
    }
    const std::vector<float> logits = chunk_logits(m, ops, ct);
    std::vector<TokenDist> dists;
    if (base) dists = base->chunk(c, ct);
    acc.add_rows(logits.data(), eval_n_scored(ctx), V, tokens->data() + c * ctx + first + 1,
                 base ? dists.data() : nullptr);
    if (save) save->add_chunk(base_chunk_dists(logits, ctx, V));
    if (bar) bar->add(1);
  }
  if (bar) bar->finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EvalResult r = acc.result();
  r.n_ctx = ctx;
  r.n_chunk = n_chunk;
  r.n_vocab = V;
  r.seconds = secs;
  r.tokens_per_second = secs > 0 ? double(n_chunk * ctx) / secs : 0;
  if (opt.keep_per_token) {
    r.nll = acc.nll_;
    r.kld = acc.kld_;
  }
  return r;
}

std::string eval_result_json(const EvalResult& r, const std::string& extra) {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(extra);
  j["schema"] = "samq.eval/1";
  j["ctx"] = r.n_ctx;
  j["chunks"] = r.n_chunk;
  j["scored_tokens"] = r.n_scored;
  j["perplexity"] = {{"ppl", r.ppl}, {"ppl_err", r.ppl_err}, {"mean_nll", r.mean_nll}};
  if (r.has_base) {
    j["base"] = {{"ppl", r.base_ppl},
                 {"ppl_ratio", r.ppl_ratio},
                 {"ln_ppl_ratio", r.ln_ppl_ratio},
                 {"ln_ppl_ratio_err", r.ln_ppl_ratio_err}};
    j["kld"] = {{"mean", r.kld_mean}, {"mean_err", r.kld_err}, {"median", r.kld_median},
                {"p90", r.kld_p90},   {"p95", r.kld_p95},      {"p99", r.kld_p99},
                {"p99_9", r.kld_p999}, {"max", r.kld_max},     {"min", r.kld_min}};
    j["same_top1_pct"] = r.same_top_pct;
    j["same_top1_pct_err"] = r.same_top_err;
    j["rms_dp_pct"] = r.rms_dp_pct;
    j["mean_dp_pct"] = r.mean_dp_pct;
  }
  j["seconds"] = r.seconds;
  j["tokens_per_second"] = r.tokens_per_second;
  return j.dump(2) + "\n";
}

}  // namespace samq
