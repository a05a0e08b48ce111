// serve/fake_generator.h — a deterministic stand-in for the inference engine (TEST ONLY).
//
// Vocabulary: ids 0..255 are the bytes, 256 is BOS, 257 is EOS. The next-token logits give
// one token a margin of `margin` over all others, so greedy decoding is predictable by hand:
//   after 'a'..'y' comes the next letter, after 'z' comes '.', after '.' comes EOS,
//   after anything else comes 'a'.
// So the prompt "x" continues "yz." and then ends; "a" continues "bcd...z." (26 tokens).
// Ids 258.. are the Llama-3 and ChatML control tokens (kSpecials), matched in the text only
// when special tokens are parsed; their piece is empty.
// Each step sleeps step_ms + per_token_us * (tokens in the batch): a batch of sequences costs
// little more than one, as on a real engine, so continuous batching shows in throughput.
#pragma once
#include <atomic>
#include <mutex>
#include <vector>

#include "serve/generator.h"

namespace samq::serve {

struct FakeGeneratorOptions {
  std::string model_id = "fake-model";
  int n_ctx = 256;
  int max_sequences = 16;
  double step_ms = 0.0;
  double per_token_us = 0.0;
  float margin = 10.0f;
  std::string chat_template = "chatml";
};

class FakeGenerator : public Generator {
 public:
  static constexpr int32_t kBos = 256, kEos = 257, kFirstSpecial = 258, kVocab = 264;
  static constexpr const char* kSpecials[] = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                              "<|eot_id|>", "<|im_start|>", "<|im_end|>"};
  explicit FakeGenerator(FakeGeneratorOptions o = {});

  std::string model_id() const override { return o_.model_id; }
  int n_vocab() const override { return kVocab; }
  int n_ctx() const override { return o_.n_ctx; }
  int max_sequences() const override { return o_.max_sequences; }
  std::string chat_template() const override { return o_.chat_template; }
  bool add_bos() const override { return true; }
  int32_t bos() const override { return kBos; }

  std::vector<int32_t> tokenize(std::string_view text, bool add_bos) const override { return tokenize(text, add_bos, true); }
  std::vector<int32_t> tokenize(std::string_view text, bool add_bos, bool parse_special) const override;
  std::string token_to_piece(int32_t id) const override;
  bool is_eog(int32_t id) const override { return id == kEos; }

  int create_sequence() override;
  void free_sequence(int seq) override;
  void step(std::span<const StepInput> batch, std::vector<std::vector<float>>& logits) override;

  size_t kv_bytes_used() const override;
  size_t kv_bytes_capacity() const override;

  // The token greedy decoding picks after `last` (the rule above).
  static int32_t next_token(int32_t last);

  // Observability for tests.
  int live_sequences() const;
  int steps() const { return steps_.load(); }
  int max_batch_seen() const { return max_batch_.load(); }

 private:
  FakeGeneratorOptions o_;
  mutable std::mutex mu_;
  std::vector<int> len_;  // -1: free; else tokens held
  std::atomic<int> steps_{0}, max_batch_{0};
};

}  // namespace samq::serve
