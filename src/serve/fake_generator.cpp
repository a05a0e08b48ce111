#include "serve/fake_generator.h"

#include <chrono>
#include <thread>

#include "core/error.h"

namespace samq::serve {

FakeGenerator::FakeGenerator(FakeGeneratorOptions o) : o_(std::move(o)), len_(o_.max_sequences, -1) {}

std::vector<int32_t> FakeGenerator::tokenize(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> t;
  t.reserve(text.size() + 1);
  if (add_bos) t.push_back(kBos);
  for (size_t i = 0; i < text.size();) {
    bool matched = false;
    for (int32_t k = 0; parse_special && k < int32_t(std::size(kSpecials)); ++k) {
      const std::string_view sp = kSpecials[k];
      if (text.substr(i, sp.size()) == sp) {
        t.push_back(kFirstSpecial + k);
        i += sp.size();
        matched = true;
        break;
      }
    }
    if (!matched) t.push_back(static_cast<unsigned char>(text[i++]));
  }
  return t;
}

std::string FakeGenerator::token_to_piece(int32_t id) const {
  if (id >= 0 && id < 256) return std::string(1, char(id));
  return "";
}

int32_t FakeGenerator::next_token(int32_t last) {
  if (last >= 'a' && last < 'z') return last + 1;
  if (last == 'z') return '.';
  if (last == '.') return kEos;
  return 'a';
}

int FakeGenerator::create_sequence() {
  std::lock_guard lk(mu_);
  for (size_t i = 0; i < len_.size(); ++i)
    if (len_[i] < 0) { len_[i] = 0; return int(i); }
  fail("fake generator: all {} sequences are in use", len_.size());
}

void FakeGenerator::free_sequence(int seq) {
  std::lock_guard lk(mu_);
  if (seq >= 0 && size_t(seq) < len_.size()) len_[seq] = -1;
}

void FakeGenerator::step(std::span<const StepInput> batch, std::vector<std::vector<float>>& logits) {
  size_t n_tok = 0;
  for (auto& b : batch) n_tok += b.tokens.size();
  const double us = o_.step_ms * 1000.0 + o_.per_token_us * double(n_tok);
  if (us > 0) std::this_thread::sleep_for(std::chrono::microseconds(int64_t(us)));
  steps_++;
  int mb = max_batch_.load();
  while (int(batch.size()) > mb && !max_batch_.compare_exchange_weak(mb, int(batch.size()))) {}
  logits.resize(batch.size());
  std::lock_guard lk(mu_);
  for (size_t i = 0; i < batch.size(); ++i) {
    const auto& b = batch[i];
    if (b.seq < 0 || size_t(b.seq) >= len_.size() || len_[b.seq] < 0)
      fail("fake generator: step on sequence {} that does not exist", b.seq);
    if (b.tokens.empty()) fail("fake generator: empty step input for sequence {}", b.seq);
    if (len_[b.seq] + int(b.tokens.size()) > o_.n_ctx)
      fail("fake generator: sequence {} exceeds the context of {} tokens", b.seq, o_.n_ctx);
    len_[b.seq] += int(b.tokens.size());
    auto& l = logits[i];
    l.assign(kVocab, 0.0f);
    l[next_token(b.tokens.back())] = o_.margin;
  }
}

size_t FakeGenerator::kv_bytes_used() const {
  std::lock_guard lk(mu_);
  size_t n = 0;
  for (int l : len_) if (l > 0) n += size_t(l);
  return n * 1024;  // pretend 1 KiB per token
}

size_t FakeGenerator::kv_bytes_capacity() const { return size_t(o_.max_sequences) * o_.n_ctx * 1024; }

int FakeGenerator::live_sequences() const {
  std::lock_guard lk(mu_);
  int n = 0;
  for (int l : len_) n += l >= 0;
  return n;
}

}  // namespace samq::serve
