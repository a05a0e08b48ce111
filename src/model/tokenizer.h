// Byte-level BPE tokenizer, behaving exactly as llama.cpp's `gpt2` vocabulary with the
// `llama-bpe` pre-tokenizer (Llama-3 family), built either from an HF directory
// (tokenizer.json + tokenizer_config.json) or from the vocab arrays of a GGUF file.
//
// Pipeline of encode() (as llama.cpp's llama_vocab::tokenize):
//   1. special-token partition: the text is cut around occurrences of special tokens
//      (longest first). CONTROL/UNKNOWN tokens are matched only when parse_special is true;
//      USER_DEFINED tokens are always matched.
//   2. invalid UTF-8 -> one U+FFFD per byte that does not start a decodable sequence (as
//      llama.cpp's unicode_cpts_from_utf8 does); regex pre-tokenization with the Llama-3
//      pattern through PCRE2 (UTF + UCP + JIT).
//   3. each pre-token is mapped to the GPT-2 byte alphabet; if it is itself a vocab entry it
//      is taken whole (llama-bpe `ignore_merges`), else merged by merge rank (lowest first,
//      leftmost on ties) and looked up.
// encode() is thread-safe; a bounded cache of pre-token -> ids, shared by all threads (one
// mutex), makes repeated words cheap: about 2M tokens/s on ../shared/data/eval.txt here, about
// 4x llama.cpp's own tokenizer measured in the same run (tests/node/convert_interop.test.mjs).
//
// SentencePiece (llama.cpp's `llama` vocab, Llama-2/Mistral/Gemma kind; tokenizer_spm.cpp): no
// pre-tokenizer; after the same special-token partition each raw fragment gets a leading " " when
// add_space_prefix is on and the previous fragment was a special token (or it is the first), its
// spaces become U+2581, and it is merged from UTF-8 characters by piece score (highest first,
// leftmost on ties, as llama.cpp's llm_tokenizer_spm_session); what is left unmatched goes out
// as <0xNN> byte tokens. Invalid UTF-8 is NOT replaced there (llama.cpp passes the bytes on).
//
// Non-goals: other vocab kinds (UGM/T5, WPM, RWKV) and other pre-tokenizers: they fail with a
// clear "not supported yet" error naming the family.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace samq {

class GgufFile;

// llama.cpp's llama_token_type values (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

// Everything the GGUF vocab keys hold, in the converter's spelling. gpt2: token strings are in
// the GPT-2 byte alphabet (e.g. "Ġthe"), merges are "left right". llama (SentencePiece): pieces
// with U+2581 for spaces ("▁the"), "<0xNN>" byte pieces, one score per token, no merges.
struct TokenizerVocab {
  std::string model = "gpt2";  // tokenizer.ggml.model: "gpt2" or "llama"
  std::string pre;             // tokenizer.ggml.pre, e.g. "llama-bpe"; "default" for llama
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;  // TokenType values
  std::vector<std::string> merges;
  std::vector<float> scores;  // tokenizer.ggml.scores (llama; empty for gpt2)
  std::optional<bool> add_space_prefix;  // tokenizer.ggml.add_space_prefix (llama.cpp's default: true for llama)
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1, eot_id = -1;  // -1: absent
  std::optional<bool> add_bos, add_eos;  // written only when the source says so
  std::optional<std::string> chat_template;
};

class Tokenizer {
 public:
  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  Tokenizer(const Tokenizer&);  // shares the immutable tables
  Tokenizer& operator=(const Tokenizer&);

  // tokenizer.json + tokenizer_config.json of an HF checkpoint. n_vocab_padded > number of
  // tokens pads the vocab with "[PAD<i>]" tokens of type UNUSED, as llama.cpp's converter does
  // when config.json's vocab_size exceeds the tokenizer's (-1: no padding).
  static Tokenizer from_hf_dir(const std::string& dir, int64_t n_vocab_padded = -1);
  static Tokenizer from_gguf(const GgufFile& gguf);
  static Tokenizer from_vocab(TokenizerVocab vocab);  // validates; throws samq::Error

  // Text -> ids. add_bos: prepend BOS (llama.cpp adds it by default for llama-bpe; callers
  // decide). parse_special: match CONTROL token strings such as "<|end_of_text|>" in the text.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;

  // Ids -> bytes. NORMAL tokens are mapped back from the byte alphabet; USER_DEFINED tokens
  // are emitted as their text; CONTROL tokens (BOS/EOS...) as their text only if `special`.
  // A piece may end inside a UTF-8 sequence (stream with utf8_complete_prefix()).
  std::string decode(const std::vector<int32_t>& ids, bool special = false) const;
  std::string token_to_piece(int32_t id, bool special = false) const;

  int32_t bos() const;  // -1 if the vocab has none
  int32_t eos() const;
  int32_t eot() const;  // -1 if none
  int32_t n_vocab() const;
  bool is_eog(int32_t id) const;  // end of generation: EOS, EOT, <|eot_id|>, <|im_end|>, ...
  bool is_control(int32_t id) const;
  bool add_bos_default() const;  // what llama.cpp does when the caller does not say (true for llama-bpe)
  int32_t token_id(std::string_view text) const;  // exact vocab entry (byte alphabet), -1 if absent
  const std::string& token_text(int32_t id) const;  // vocab entry as stored (byte alphabet)
  TokenType token_type(int32_t id) const;

  // The GGUF vocab arrays (what `samq convert` writes under tokenizer.*).
  const TokenizerVocab& vocab() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// GPT-2 byte alphabet: byte b <-> one code point, UTF-8 encoded ("Ġ" for 0x20).
const std::string& byte_to_unicode(uint8_t b);
// Length of the longest prefix of s that does not end inside an incomplete UTF-8 sequence
// (invalid bytes count as complete), for streaming decoded pieces.
size_t utf8_complete_prefix(std::string_view s);

}  // namespace samq
