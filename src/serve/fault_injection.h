// serve/fault_injection.h — wraps a Generator so tests can make it fail or slow down while
// the server runs (TEST ONLY: reachable over HTTP only with `samq serve
// --enable-fault-injection`, through POST /internal/fault).
#pragma once
#include <atomic>
#include <memory>

#include "serve/generator.h"

namespace samq::serve {

class FaultInjectingGenerator : public Generator {
 public:
  explicit FaultInjectingGenerator(std::unique_ptr<Generator> inner) : in_(std::move(inner)) {}

  void set_fail(bool f) { fail_ = f; }
  void set_delay_ms(int ms) { delay_ms_ = ms; }  // added to every step
  bool failing() const { return fail_; }
  int delay_ms() const { return delay_ms_; }

  std::string model_id() const override { return in_->model_id(); }
  int n_vocab() const override { return in_->n_vocab(); }
  int n_ctx() const override { return in_->n_ctx(); }
  int max_sequences() const override { return in_->max_sequences(); }
  std::string chat_template() const override { return in_->chat_template(); }
  bool add_bos() const override { return in_->add_bos(); }
  int32_t bos() const override { return in_->bos(); }
  std::vector<int32_t> tokenize(std::string_view t, bool b) const override { return in_->tokenize(t, b); }
  std::vector<int32_t> tokenize(std::string_view t, bool b, bool s) const override { return in_->tokenize(t, b, s); }
  std::string token_to_piece(int32_t id) const override { return in_->token_to_piece(id); }
  bool is_eog(int32_t id) const override { return in_->is_eog(id); }
  int create_sequence() override { return in_->create_sequence(); }
  void free_sequence(int s) override { in_->free_sequence(s); }
  void step(std::span<const StepInput> batch, std::vector<std::vector<float>>& logits) override;
  size_t kv_bytes_used() const override { return in_->kv_bytes_used(); }
  size_t kv_bytes_capacity() const override { return in_->kv_bytes_capacity(); }

 private:
  std::unique_ptr<Generator> in_;
  std::atomic<bool> fail_{false};
  std::atomic<int> delay_ms_{0};
};

}  // namespace samq::serve
