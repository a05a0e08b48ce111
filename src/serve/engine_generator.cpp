#include "serve/engine_generator.h"

#include <algorithm>
#include <filesystem>

#include "backend/ops.h"
#include "core/error.h"
#include "format/gguf.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "serve/chat_template.h"

namespace samq::serve {

EngineGenerator::EngineGenerator(const EngineGeneratorOptions& o) {
  if (o.max_sequences < 1) fail("model '{}': need at least one sequence slot", o.path);
  model_ = Model::load(o.path);
  const auto& h = model_->hparams;
  tok_ = std::make_unique<Tokenizer>(model_->gguf ? Tokenizer::from_gguf(*model_->gguf)
                                                  : Tokenizer::from_hf_dir(o.path, h.n_vocab));
  int64_t ctx = o.n_ctx > 0 ? o.n_ctx : std::min<int64_t>(h.n_ctx_train > 0 ? h.n_ctx_train : 2048, 4096);
  if (h.n_ctx_train > 0 && ctx > h.n_ctx_train)
    fail("--ctx-size {} exceeds the training context of '{}' ({} tokens)", ctx, o.path, h.n_ctx_train);
  n_ctx_ = int(ctx);
  caches_.reserve(o.max_sequences);
  for (int i = 0; i < o.max_sequences; ++i) caches_.push_back(std::make_unique<KvCache>(*model_, ctx));
  in_use_.assign(o.max_sequences, 0);
  kv_bytes_per_token_ = size_t(2 * h.n_layer * h.n_embd_kv()) * sizeof(float);

  const auto& v = tok_->vocab();
  add_bos_ = v.add_bos.value_or(tok_->add_bos_default());
  if (o.chat_template == "auto")
    template_ = detect_chat_template(v.chat_template.value_or(""), tok_->token_id("<|begin_of_text|>") >= 0);
  else
    template_ = o.chat_template;
  std::filesystem::path p(o.path);
  if (!p.has_filename()) p = p.parent_path();
  id_ = !o.model_id.empty() ? o.model_id : p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
}

EngineGenerator::~EngineGenerator() = default;

int EngineGenerator::n_vocab() const { return int(model_->hparams.n_vocab); }
int32_t EngineGenerator::bos() const { return tok_->bos(); }

std::vector<int32_t> EngineGenerator::tokenize(std::string_view text, bool add_bos) const {
  return tokenize(text, add_bos, /*parse_special=*/true);
}

std::vector<int32_t> EngineGenerator::tokenize(std::string_view text, bool add_bos, bool parse_special) const {
  return tok_->encode(text, add_bos && tok_->bos() >= 0, parse_special);
}

std::string EngineGenerator::token_to_piece(int32_t id) const {
  if (id < 0 || id >= tok_->n_vocab()) return "";  // padded embedding rows have no text
  return tok_->token_to_piece(id, false);
}

bool EngineGenerator::is_eog(int32_t id) const { return id >= 0 && id < tok_->n_vocab() && tok_->is_eog(id); }

int EngineGenerator::create_sequence() {
  std::lock_guard lk(mu_);
  for (size_t i = 0; i < in_use_.size(); ++i)
    if (!in_use_[i]) {
      in_use_[i] = 1;
      caches_[i]->clear();
      return int(i);
    }
  fail("model '{}': all {} KV cache slots are in use", id_, in_use_.size());
}

void EngineGenerator::free_sequence(int seq) {
  std::lock_guard lk(mu_);
  if (seq >= 0 && size_t(seq) < in_use_.size()) {
    in_use_[seq] = 0;
    caches_[seq]->clear();
  }
}

void EngineGenerator::step(std::span<const StepInput> batch, std::vector<std::vector<float>>& logits) {
  Batch b;
  for (auto& in : batch) {
    if (in.seq < 0 || size_t(in.seq) >= caches_.size() || !in_use_[in.seq])
      fail("model '{}': step on sequence {} that is not allocated", id_, in.seq);
    KvCache* c = caches_[in.seq].get();
    if (c->n_past() + int64_t(in.tokens.size()) > c->n_ctx())
      fail("model '{}': sequence {} would exceed its context of {} tokens", id_, in.seq, c->n_ctx());
    b.add(c, in.tokens, false);
  }
  forward(*model_, cpu_ops(), b);
  logits.resize(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) logits[i] = std::move(b.seqs[i].logits);
}

size_t EngineGenerator::kv_bytes_used() const {
  std::lock_guard lk(mu_);
  size_t n = 0;
  for (size_t i = 0; i < caches_.size(); ++i)
    if (in_use_[i]) n += size_t(caches_[i]->n_past());
  return n * kv_bytes_per_token_;
}

size_t EngineGenerator::kv_bytes_capacity() const { return caches_.size() * size_t(n_ctx_) * kv_bytes_per_token_; }

}  // namespace samq::serve
