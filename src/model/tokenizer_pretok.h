// Pre-tokenization for byte-level BPE: llama.cpp-compatible UTF-8 cleaning and the regex
// split (PCRE2 with UTF + UCP + JIT). Internal to the tokenizer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace samq::detail {

// Decodes UTF-8 as llama.cpp's unicode_cpts_from_utf8 does (lead/continuation bits checked,
// overlong forms and surrogates accepted, a byte that starts no decodable sequence -> U+FFFD
// and one byte skipped) and re-encodes the code points. Code points above U+10FFFF (which
// llama.cpp cannot re-encode) also become U+FFFD. Returns true if the output differs.
bool clean_utf8(std::string_view in, std::string& out);

// Pre-tokenizer families samq implements (tokenizer.ggml.pre values).
enum class PreTokenizer { Llama3, Qwen2 };
// "llama-bpe" -> Llama3, "qwen2" -> Qwen2; throws "not supported yet" naming the value.
PreTokenizer pre_tokenizer_from_name(std::string_view pre);
// Recognizes the Split regex of an HF tokenizer.json; nullptr if it is none of ours.
const char* pre_tokenizer_name_for_regex(std::string_view hf_regex);

class RegexSplitter {
 public:
  explicit RegexSplitter(PreTokenizer kind);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Splits valid UTF-8 (as produced by clean_utf8) into pre-tokens covering all of `text`;
  // appends (offset, length) byte spans. Thread-safe.
  void split(std::string_view text, std::vector<std::pair<size_t, size_t>>& spans) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace samq::detail
