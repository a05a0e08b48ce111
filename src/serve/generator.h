// serve/generator.h — the narrow interface between the server and an inference engine.
//
// The scheduler (serve/scheduler.h) drives a Generator: it creates one sequence per request,
// and in each step appends new tokens to several sequences at once (a whole prompt for a
// sequence that just joined, one sampled token for the others) and gets back the next-token
// logits of each. That is continuous batching: prompts join between steps.
//
// Implementations: FakeGenerator (deterministic, for unit tests of scheduling, errors,
// metrics and fallback; also `samq serve --fake-model`, test-only), EngineGenerator (the real
// CPU engine of src/model/), FaultInjectingGenerator (wraps another to fail or slow down on
// demand, enabled only by `samq serve --enable-fault-injection`).
//
// Threading: only the scheduler's worker thread calls step/create/free; tokenize/detokenize
// and the facts may be called from any thread concurrently.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace samq::serve {

// One entry of a batched step: append `tokens` to sequence `seq` (at its current end) and
// return the logits for the token after the last one.
struct StepInput {
  int seq = -1;
  std::vector<int32_t> tokens;
};

class Generator {
 public:
  virtual ~Generator() = default;

  // Facts.
  virtual std::string model_id() const = 0;      // shown in /v1/models, metrics, x-samq-served-by
  virtual int n_vocab() const = 0;
  virtual int n_ctx() const = 0;                 // max tokens (prompt + generated) per sequence
  virtual int max_sequences() const = 0;         // most live sequences at once
  virtual std::string chat_template() const = 0; // "llama3", "chatml" or "" (unknown)
  virtual bool add_bos() const = 0;
  virtual int32_t bos() const = 0;

  // Tokenizer (thread-safe).
  // Special-token strings (<|im_end|>, ...) become control ids.
  virtual std::vector<int32_t> tokenize(std::string_view text, bool add_bos) const = 0;
  // parse_special = false: special-token strings stay plain text (message content).
  virtual std::vector<int32_t> tokenize(std::string_view text, bool add_bos, bool parse_special) const = 0;
  virtual std::string token_to_piece(int32_t id) const = 0;  // raw bytes, may be partial UTF-8
  virtual bool is_eog(int32_t id) const = 0;

  // Sequences (worker thread only). create_sequence fails (samq::Error) when none is free.
  virtual int create_sequence() = 0;
  virtual void free_sequence(int seq) = 0;

  // Appends the tokens of each input to its sequence and writes n_vocab logits per input into
  // logits[i]. Throws samq::Error on failure; then every sequence in the batch is unusable and
  // the caller frees them.
  virtual void step(std::span<const StepInput> batch, std::vector<std::vector<float>>& logits) = 0;

  // KV cache use, for metrics (bytes).
  virtual size_t kv_bytes_used() const { return 0; }
  virtual size_t kv_bytes_capacity() const { return 0; }
};

}  // namespace samq::serve
