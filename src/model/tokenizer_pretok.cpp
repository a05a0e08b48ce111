// UTF-8 cleaning and regex pre-tokenization (see tokenizer_pretok.h).
//
// The Llama-3 pattern is
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//   \s*[\r\n]+|\s+(?!\S)|\s+
// (Qwen2: \p{N} instead of \p{N}{1,3}). Two deliberate rewrites make PCRE2 agree with llama.cpp's
// hand-written splitter: the contractions are spelled with explicit [sS] classes (llama.cpp
// lower-cases one code point; PCRE2's caseless UCP mode would also fold U+017F "ſ" to s), and
// \s is replaced by the Unicode White_Space set llama.cpp uses (PCRE2 10.42's \s lacks U+0085).
// Unicode surrogates (which llama.cpp accepts in its UTF-8 decoder but PCRE2 rejects) are
// replaced, for matching only, by U+E000, which has the same UTF-8 length and, like a
// surrogate, is neither letter, number nor space.
#include "model/tokenizer_pretok.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace samq::detail {

namespace {

// Returns the code point and advances `i`, or returns -1 (and advances by one byte) where
// llama.cpp's unicode_cpt_from_utf8 throws.
int64_t decode_one(std::string_view s, size_t& i) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  if (!(c & 0x80)) { i += 1; return c; }
  if (!(c & 0x40)) { i += 1; return -1; }
  auto cont = [&](size_t k) { return k < s.size() && (b(k) & 0xc0) == 0x80; };
  if (!(c & 0x20)) {
    if (!cont(i + 1)) { i += 1; return -1; }
    const int64_t r = ((c & 0x1f) << 6) | (b(i + 1) & 0x3f);
    i += 2;
    return r;
  }
  if (!(c & 0x10)) {
    if (!cont(i + 1) || !cont(i + 2)) { i += 1; return -1; }
    const int64_t r = ((c & 0x0f) << 12) | ((b(i + 1) & 0x3f) << 6) | (b(i + 2) & 0x3f);
    i += 3;
    return r;
  }
  if (!(c & 0x08)) {
    if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) { i += 1; return -1; }
    const int64_t r = (int64_t(c & 0x07) << 18) | ((b(i + 1) & 0x3f) << 12) | ((b(i + 2) & 0x3f) << 6) |
                      (b(i + 3) & 0x3f);
    i += 4;
    return r;
  }
  i += 1;
  return -1;
}

void encode_cpt(uint32_t cp, std::string& out) {
  if (cp <= 0x7f) {
    out.push_back(char(cp));
  } else if (cp <= 0x7ff) {
    out.push_back(char(0xc0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3f)));
  } else if (cp <= 0xffff) {
    out.push_back(char(0xe0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(char(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(char(0xf0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(char(0x80 | (cp & 0x3f)));
  }
}

// Unicode White_Space (PropList.txt), the set llama.cpp's splitter calls whitespace.
#define SAMQ_WS "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

const char* pattern_for(PreTokenizer kind) {
  // Both differ only in the digit run length.
  static const std::string llama3 =
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
      "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
      "|\\p{N}{1,3}"
      "| ?[^" SAMQ_WS "\\p{L}\\p{N}]+[\\r\\n]*"
      "|[" SAMQ_WS "]*[\\r\\n]+"
      "|[" SAMQ_WS "]+(?![^" SAMQ_WS "])"
      "|[" SAMQ_WS "]+";
  static const std::string qwen2 = [] {
    std::string s = llama3;
    s.replace(s.find("\\p{N}{1,3}"), 10, "\\p{N}");
    return s;
  }();
  return kind == PreTokenizer::Llama3 ? llama3.c_str() : qwen2.c_str();
}

}  // namespace

bool clean_utf8(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size() + 8);
  bool changed = false;
  size_t i = 0;
  while (i < in.size()) {
    const size_t start = i;
    int64_t cp = decode_one(in, i);
    if (cp < 0 || cp > 0x10ffff) cp = 0xfffd;
    const size_t before = out.size();
    encode_cpt(uint32_t(cp), out);
    if (!changed && (out.size() - before != i - start ||
                     out.compare(before, std::string::npos, in.substr(start, i - start)) != 0))
      changed = true;
  }
  return changed;
}

PreTokenizer pre_tokenizer_from_name(std::string_view pre) {
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") return PreTokenizer::Llama3;
  if (pre == "qwen2") return PreTokenizer::Qwen2;
  fail("BPE pre-tokenizer '{}' is not supported yet (samq implements llama-bpe and qwen2)", pre);
}

const char* pre_tokenizer_name_for_regex(std::string_view re) {
  static constexpr std::string_view kLlama3 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static constexpr std::string_view kQwen2 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  if (re == kLlama3) return "llama-bpe";
  if (re == kQwen2) return "qwen2";
  return nullptr;
}

struct RegexSplitter::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() {
    if (code) pcre2_code_free(code);
  }
};

RegexSplitter::RegexSplitter(PreTokenizer kind) : impl_(std::make_unique<Impl>()) {
  int err = 0;
  PCRE2_SIZE erroff = 0;
  const char* pat = pattern_for(kind);
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                              &err, &erroff, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("pre-tokenizer regex: PCRE2 compile error at offset {}: {}", erroff, reinterpret_cast<char*>(msg));
  }
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

RegexSplitter::~RegexSplitter() = default;

void RegexSplitter::split(std::string_view text, std::vector<std::pair<size_t, size_t>>& spans) const {
  if (text.empty()) return;
  // Surrogates (ED A0..BF xx) -> U+E000 (EE 80 80) for matching; same byte length.
  std::string patched;
  std::string_view subject = text;
  for (size_t i = 0; i + 2 < text.size(); ++i) {
    if (uint8_t(text[i]) == 0xED && (uint8_t(text[i + 1]) & 0xE0) == 0xA0) {
      if (patched.empty()) patched.assign(text);
      patched[i] = char(0xEE);
      patched[i + 1] = char(0x80);
      patched[i + 2] = char(0x80);
    }
  }
  if (!patched.empty()) subject = patched;

  struct MatchData {
    pcre2_match_data* md;
    MatchData() : md(pcre2_match_data_create(4, nullptr)) {}
    ~MatchData() { pcre2_match_data_free(md); }
  };
  thread_local MatchData tl;
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t pos = 0, prev_end = 0;
  while (pos < subject.size()) {
    const int rc = impl_->jit ? pcre2_jit_match(impl_->code, s, subject.size(), pos, PCRE2_NO_UTF_CHECK, tl.md, nullptr)
                              : pcre2_match(impl_->code, s, subject.size(), pos, PCRE2_NO_UTF_CHECK, tl.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail("pre-tokenizer regex: PCRE2 match error {} at byte {}", rc, pos);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(tl.md);
    const size_t b = ov[0], e = ov[1];
    if (b > prev_end) spans.emplace_back(prev_end, b - prev_end);
    if (e > b) {
      spans.emplace_back(b, e - b);
      pos = prev_end = e;
    } else {
      // Empty match (cannot happen with these patterns): step one code point.
      pos = b + 1;
      while (pos < subject.size() && (uint8_t(subject[pos]) & 0xc0) == 0x80) ++pos;
    }
  }
  if (prev_end < subject.size()) spans.emplace_back(prev_end, subject.size() - prev_end);
}

}  // namespace samq::detail
