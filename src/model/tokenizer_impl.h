// Internal state of samq::Tokenizer, shared by tokenizer.cpp (encode/decode) and
// tokenizer_load.cpp (building it from tokenizer.json or GGUF vocab arrays).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/tokenizer.h"
#include "model/tokenizer_pretok.h"

namespace samq {

struct Tokenizer::Impl {
  TokenizerVocab vocab;
  detail::PreTokenizer pre_kind = detail::PreTokenizer::Llama3;
  std::unique_ptr<detail::RegexSplitter> splitter;
  bool ignore_merges = true;  // llama-bpe: a pre-token that is a vocab entry is taken whole
  bool spm = false;              // model "llama": SentencePiece (tokenizer_spm.cpp)
  bool add_space_prefix = true;  // spm: " " before a fragment at the start or after a special token
  std::array<int32_t, 256> byte_ids{};  // spm: byte -> "<0xNN>" (else the 1-byte piece), -1 if none

  std::unordered_map<std::string, int32_t> token_to_id;
  // Merge rank and resulting token id (-1 if the merged text is no vocab entry), keyed by
  // (left id << 32 | right id); merges whose parts are not both vocab entries (unusual) go to
  // the string-keyed fallback "left right".
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  std::unordered_map<uint64_t, Merge> merge_ids;
  std::unordered_map<std::string, int32_t> merge_str;
  // Special tokens for the partition step, longest text first.
  std::vector<int32_t> special_ids;
  std::vector<uint8_t> is_eog;

  // pre-token (byte alphabet) -> ids; bounded, guarded by cache_mu.
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  // Builds every derived table from `vocab`; throws samq::Error on an invalid vocab.
  void build();
  void bpe_word(const std::string& word, std::vector<int32_t>& out) const;
  void encode_raw(std::string_view text, std::vector<int32_t>& out) const;
  void build_spm();  // spm part of build()
  // One raw fragment, already prefixed and escaped (spaces as U+2581), as llama.cpp's SPM session.
  void spm_fragment(std::string_view text, std::vector<int32_t>& out) const;
};

}  // namespace samq
