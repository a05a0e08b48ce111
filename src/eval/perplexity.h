// Perplexity and KL divergence exactly as llama-perplexity computes them
// (../shared/docs/ggml-formats.md §6): the text's tokens (BOS first when the vocab adds it)
// cut into n_chunk = n_tokens / ctx chunks, each chunk's first token replaced by BOS, run from
// an empty KV cache, and positions ctx/2 .. ctx-2 scored against the next token
// (ctx - 1 - ctx/2 tokens per chunk). Against a base: per-token KLD over the base's stored
// codes (logits_codec.h), same top-1, Δp, and the PPL ratio.
//
// Library use (helper H measures per-tensor KLDs, `samq run` calls evaluate()):
//   auto toks = tokenize_eval_text(tokenizer, text);
//   EvalResult r = evaluate(model, cpu_ops(), toks, bos, opts, &base);   // base: BaseLogits
// Building blocks for custom loops: eval_chunk_tokens(), KldAccumulator, base_chunk_dists().
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "eval/logits_codec.h"
#include "model/model.h"

namespace samq {

class Tokenizer;

struct EvalOptions {
  int64_t ctx = 512;
  int64_t max_chunks = -1;  // -1: all
  bool progress = true;
  bool keep_per_token = false;  // fill EvalResult::nll / kld per scored token
  // Per-token statistics by Ops::eval_token_stats in the backend's memory (the logits never
  // leave it; a base model runs there too, a base file's rows are uploaded per chunk): -1 auto
  // (on when the ops do not use host memory, i.e. on a GPU), 0 off (logits downloaded,
  // KldAccumulator on the host), 1 on. Same figures either way (tests/eval). Off when saving.
  int device_stats = -1;
};

struct EvalResult {
  int64_t n_ctx = 0, n_chunk = 0, n_scored = 0, n_vocab = 0;
  double mean_nll = 0, ppl = 0, ppl_err = 0;  // ppl_err: σ of PPL from the NLL variance
  // Against a base (has_base):
  bool has_base = false;
  double base_ppl = 0, ppl_ratio = 0, ln_ppl_ratio = 0, ln_ppl_ratio_err = 0;
  double kld_mean = 0, kld_err = 0, kld_median = 0, kld_p90 = 0, kld_p95 = 0, kld_p99 = 0,
         kld_p999 = 0, kld_max = 0, kld_min = 0;
  double same_top_pct = 0, same_top_err = 0;   // percent
  double rms_dp_pct = 0, mean_dp_pct = 0;      // percent
  double seconds = 0, tokens_per_second = 0;   // forward throughput (all ctx tokens)
  std::vector<float> nll, kld;                 // per scored token, if keep_per_token
};

// Tokens of the text as llama-perplexity tokenizes it (special tokens not parsed; BOS first
// when the vocab adds BOS).
std::vector<int32_t> tokenize_eval_text(const Tokenizer& tok, const std::string& text);

// Chunk c: tokens[c*ctx, (c+1)*ctx) with its first token replaced by bos (when bos >= 0).
std::vector<int32_t> eval_chunk_tokens(const std::vector<int32_t>& tokens, int64_t ctx, int64_t c, int32_t bos);
inline int64_t eval_first_scored(int64_t ctx) { return ctx / 2; }
inline int64_t eval_n_scored(int64_t ctx) { return ctx - 1 - ctx / 2; }

// Per-token statistics, accumulated in scored order.
class KldAccumulator {
 public:
  // One scored position: the model's logits row (n_vocab), the true next token, and the base
  // distribution (or nullptr for plain perplexity).
  void add(const float* logits, int64_t n_vocab, int32_t next_token, const TokenDist* base);
  // `rows` consecutive positions at once (logits (rows, n_vocab), next (rows), base (rows) or
  // null), computed in parallel and appended in order: the same results as add() row by row.
  void add_rows(const float* logits, int64_t rows, int64_t n_vocab, const int32_t* next, const TokenDist* base);
  // Rows already computed (Ops::eval_token_stats), appended in order as add_rows would.
  void add_stats(const EvalTokenStats* st, int64_t rows, bool has_base);
  EvalResult result() const;  // aggregates (ppl, kld stats...) as llama-perplexity prints them
  int64_t count() const { return int64_t(nll_.size()); }
  std::vector<float> nll_, nll_base_, kld_, dp_;
  std::vector<uint8_t> same_top_;
};

// A base to compare against: a stored file, or a base model run chunk by chunk.
class BaseLogits {
 public:
  static BaseLogits from_file(const std::string& path);
  static BaseLogits from_model(std::shared_ptr<const Model> m, const Ops& ops);
  // Distributions of chunk c's scored positions (eval_n_scored(ctx) of them).
  std::vector<TokenDist> chunk(int64_t c, const std::vector<int32_t>& chunk_tokens) const;
  const BaseLogitsFile* file() const { return file_.get(); }
  const Model* model() const { return model_.get(); }  // the base model (null for a file)
  const Ops* model_ops() const { return ops_; }        // the table it runs on

 private:
  std::shared_ptr<BaseLogitsFile> file_;
  std::shared_ptr<const Model> model_;
  const Ops* ops_ = nullptr;
};

// Base distributions of a chunk's scored positions from full logits (ctx, n_vocab).
std::vector<TokenDist> base_chunk_dists(const std::vector<float>& logits, int64_t ctx, int64_t n_vocab);

// Runs the evaluation. tokens: from tokenize_eval_text (ignored when base is a file: the
// file's tokens are used, as llama-perplexity does). save: if not null, receives the model's
// own distributions (to be saved as a base file for later runs).
EvalResult evaluate(const Model& m, const Ops& ops, const std::vector<int32_t>& tokens, int32_t bos,
                    const EvalOptions& opt, const BaseLogits* base = nullptr, BaseLogitsFile* save = nullptr);

// eval.json (docs/artifacts.md): every figure plus the options and identities given.
std::string eval_result_json(const EvalResult& r, const std::string& extra_json_object = "{}");

}  // namespace samq
