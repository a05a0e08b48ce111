// Calibration text: read, validated (non-empty, UTF-8, at least one context of tokens) and
// tokenized as llama-imatrix does (BOS first when the vocab has one, special tokens not
// parsed), then cut into chunks of ctx tokens, each chunk's first token replaced by BOS.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace samq {

class Tokenizer;

struct Calibration {
  std::string path, sha256;
  int64_t bytes = 0;
  int64_t ctx = 0;
  int64_t n_text_tokens = 0;                 // tokens of the whole text
  std::vector<std::vector<int32_t>> chunks;  // each ctx tokens
  int64_t n_tokens() const { return int64_t(chunks.size()) * ctx; }
};

// Byte offset of the first invalid UTF-8 sequence, or -1 when the text is valid.
int64_t first_invalid_utf8(const std::string& s);

// max_tokens > 0 caps the number of tokens used (whole chunks; at least one).
// Errors name the file: empty, not UTF-8 (with the byte offset), shorter than one context.
Calibration load_calibration(const std::string& path, const Tokenizer& tok, int64_t ctx, int64_t max_tokens = -1);
Calibration calibration_from_text(const std::string& text, const std::string& name, const Tokenizer& tok,
                                  int64_t ctx, int64_t max_tokens = -1);

}  // namespace samq
