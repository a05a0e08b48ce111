// serve/engine_generator.h — the Generator over samq's own CPU engine (model/forward.h): one
// KvCache per sequence slot, allocated once at load; a step is one batched forward() over all
// the sequences in it (their token rows share every matmul, attention runs per sequence).
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "serve/generator.h"

namespace samq {
class Model;
class KvCache;
class Tokenizer;
}  // namespace samq

namespace samq::serve {

struct EngineGeneratorOptions {
  std::string path;                   // .gguf or HF directory
  int n_ctx = 0;                      // per sequence; 0: the model's training context, at most 4096
  int max_sequences = 4;              // KV caches to allocate
  std::string chat_template = "auto"; // auto | llama3 | chatml
  std::string model_id;               // empty: the file or directory name
};

class EngineGenerator : public Generator {
 public:
  explicit EngineGenerator(const EngineGeneratorOptions& o);  // loads; throws samq::Error
  ~EngineGenerator() override;

  std::string model_id() const override { return id_; }
  int n_vocab() const override;
  int n_ctx() const override { return n_ctx_; }
  int max_sequences() const override { return int(caches_.size()); }
  std::string chat_template() const override { return template_; }
  bool add_bos() const override { return add_bos_; }
  int32_t bos() const override;

  std::vector<int32_t> tokenize(std::string_view text, bool add_bos) const override;
  std::vector<int32_t> tokenize(std::string_view text, bool add_bos, bool parse_special) const override;
  std::string token_to_piece(int32_t id) const override;
  bool is_eog(int32_t id) const override;

  int create_sequence() override;
  void free_sequence(int seq) override;
  void step(std::span<const StepInput> batch, std::vector<std::vector<float>>& logits) override;

  size_t kv_bytes_used() const override;
  size_t kv_bytes_capacity() const override;

 private:
  std::shared_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tok_;
  std::vector<std::unique_ptr<KvCache>> caches_;
  std::vector<char> in_use_;
  mutable std::mutex mu_;
  std::string id_, template_;
  int n_ctx_ = 0;
  bool add_bos_ = true;
  size_t kv_bytes_per_token_ = 0;
};

}  // namespace samq::serve
