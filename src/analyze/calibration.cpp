// Calibration text loading (analyze/calibration.h).
#include "analyze/calibration.h"

#include <algorithm>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/sha256.h"
#include "model/tokenizer.h"

namespace samq {

int64_t first_invalid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; }
    else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; }
    else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; }
    else return int64_t(i);
    if (i + len > n) return int64_t(i);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return int64_t(i);
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    const uint32_t min_cp = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min_cp || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return int64_t(i);
    i += len;
  }
  return -1;
}

Calibration calibration_from_text(const std::string& text, const std::string& name, const Tokenizer& tok,
                                  int64_t ctx, int64_t max_tokens) {
  if (ctx < 2) fail("--ctx {} is too small (need at least 2 tokens per chunk)", ctx);
  if (text.empty()) fail("calibration file {} is empty", name);
  if (const int64_t bad = first_invalid_utf8(text); bad >= 0)
    fail("calibration file {} is not valid UTF-8 (first bad byte at offset {})", name, bad);
  Calibration c;
  c.path = name;
  c.bytes = int64_t(text.size());
  c.sha256 = sha256_hex(text.data(), text.size());
  c.ctx = ctx;
  const int32_t bos = tok.bos();
  std::vector<int32_t> toks = tok.encode(text, bos >= 0, false);
  c.n_text_tokens = int64_t(toks.size());
  int64_t n_chunks = c.n_text_tokens / ctx;
  if (n_chunks < 1)
    fail("calibration file {} is shorter than one context: {} tokens < --ctx {}", name, c.n_text_tokens, ctx);
  if (max_tokens > 0) n_chunks = std::max<int64_t>(1, std::min(n_chunks, max_tokens / ctx));
  for (int64_t k = 0; k < n_chunks; ++k) {
    std::vector<int32_t> ch(toks.begin() + k * ctx, toks.begin() + (k + 1) * ctx);
    if (bos >= 0) ch[0] = bos;
    c.chunks.push_back(std::move(ch));
  }
  return c;
}

Calibration load_calibration(const std::string& path, const Tokenizer& tok, int64_t ctx, int64_t max_tokens) {
  const std::string text = read_file(path);
  Calibration c = calibration_from_text(text, path, tok, ctx, max_tokens);
  return c;
}

}  // namespace samq
