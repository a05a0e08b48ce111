// SentencePiece (llama.cpp's "llama" vocab) encoding of one raw fragment, behaving as
// llama.cpp's llm_tokenizer_spm_session (see tokenizer.h for the whole pipeline):
//   - symbols are the UTF-8 characters of the fragment, a character's length taken from its
//     first byte alone (a lone continuation byte is one symbol; a lead byte swallows the next
//     bytes whatever they are, clipped at the end); invalid UTF-8 is not repaired;
//   - every adjacent pair whose concatenated text is a vocab entry (any type) is queued with
//     that entry's score; the highest score is merged first, the leftmost on equal scores;
//     entries made stale by an earlier merge are skipped;
//   - each final symbol is emitted as its vocab entry, or, if it is none, byte by byte as the
//     "<0xNN>" pieces (falling back to the 1-byte piece itself).
// A merged symbol is always a vocab entry (it was queued only if its text is one), so
// llama.cpp's reverse-merge resegmentation never splits anything here and is not needed.
#include <queue>

#include "core/error.h"
#include "model/tokenizer_impl.h"

namespace samq {

void Tokenizer::Impl::build_spm() {
  const size_t n = vocab.tokens.size();
  if (vocab.scores.empty()) vocab.scores.assign(n, 0.0f);  // llama.cpp: 0 when the key is absent
  if (vocab.scores.size() != n)
    fail("tokenizer: {} scores for {} tokens (tokenizer.ggml.scores)", vocab.scores.size(), n);
  if (!vocab.merges.empty()) fail("tokenizer: a SentencePiece ('llama') vocab has no merges");
  add_space_prefix = vocab.add_space_prefix.value_or(true);
  static const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    const std::string piece = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
    auto it = token_to_id.find(piece);
    if (it == token_to_id.end()) it = token_to_id.find(std::string(1, char(b)));
    byte_ids[size_t(b)] = it == token_to_id.end() ? -1 : it->second;
  }
}

void Tokenizer::Impl::spm_fragment(std::string_view text, std::vector<int32_t>& out) const {
  struct Sym {
    int prev, next;
    uint32_t start, len;
  };
  std::vector<Sym> syms;
  syms.reserve(text.size());
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  for (size_t i = 0; i < text.size();) {
    const size_t len = std::min<size_t>(kLen[uint8_t(text[i]) >> 4], text.size() - i);
    syms.push_back({int(syms.size()) - 1, int(syms.size()) + 1, uint32_t(i), uint32_t(len)});
    i += len;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  struct Bigram {
    int left, right;
    float score;
    uint32_t size;
    bool operator<(const Bigram& o) const {  // the queue pops the highest score, leftmost on ties
      return score < o.score || (score == o.score && left > o.left);
    }
  };
  std::priority_queue<Bigram> queue;
  std::string key;
  auto add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const Sym& a = syms[size_t(l)];
    const Sym& b = syms[size_t(r)];
    key.assign(text.substr(a.start, a.len + b.len));
    const auto it = token_to_id.find(key);
    if (it == token_to_id.end()) return;
    queue.push({l, r, vocab.scores[size_t(it->second)], a.len + b.len});
  };
  for (size_t i = 1; i < syms.size(); ++i) add(int(i) - 1, int(i));
  while (!queue.empty()) {
    const Bigram bg = queue.top();
    queue.pop();
    Sym& l = syms[size_t(bg.left)];
    Sym& r = syms[size_t(bg.right)];
    if (l.len == 0 || r.len == 0 || l.len + r.len != bg.size) continue;  // stale
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[size_t(r.next)].prev = bg.left;
    add(l.prev, bg.left);
    add(bg.left, l.next);
  }
  for (int i = 0; i >= 0; i = syms[size_t(i)].next) {
    const Sym& s = syms[size_t(i)];
    key.assign(text.substr(s.start, s.len));
    const auto it = token_to_id.find(key);
    if (it != token_to_id.end()) {
      out.push_back(it->second);
      continue;
    }
    for (uint32_t k = 0; k < s.len; ++k) {
      const uint8_t c = uint8_t(text[s.start + k]);
      const int32_t id = byte_ids[c];
      if (id < 0) fail("tokenizer: byte 0x{:02X} has no token (neither <0x{:02X}> nor the byte itself)", c, c);
      out.push_back(id);
    }
  }
}

}  // namespace samq
