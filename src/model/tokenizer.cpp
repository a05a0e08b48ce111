// Byte-level BPE encode/decode (see tokenizer.h for the pipeline). The merge loop follows
// llama.cpp's llm_tokenizer_bpe_session: symbols are the UTF-8 characters of the pre-token in
// the GPT-2 byte alphabet; the adjacent pair with the lowest merge rank (leftmost on ties) is
// merged until no ranked pair is left; outdated queue entries are skipped.
#include <algorithm>
#include <array>
#include <queue>

#include "core/error.h"
#include "model/tokenizer_impl.h"

namespace samq {

namespace {

struct ByteTables {
  std::array<std::string, 256> to_unicode;
  std::array<int16_t, 0x144> to_byte;  // code point -> byte, -1 if none (max code point 0x143)
  ByteTables() {
    to_byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      const uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + n++);
      std::string s;
      if (cp < 0x80) {
        s.push_back(char(cp));
      } else {
        s.push_back(char(0xc0 | (cp >> 6)));
        s.push_back(char(0x80 | (cp & 0x3f)));
      }
      to_unicode[b] = s;
      to_byte[cp] = int16_t(b);
    }
  }
};
const ByteTables& byte_tables() {
  static const ByteTables t;
  return t;
}

constexpr size_t kCacheLimit = 1 << 18;  // entries
constexpr size_t kMaxCachedBytes = 128;  // longest pre-token cached

}  // namespace

const std::string& byte_to_unicode(uint8_t b) { return byte_tables().to_unicode[b]; }

size_t utf8_complete_prefix(std::string_view s) {
  // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
  const size_t n = s.size();
  for (size_t k = 1; k <= 3 && k <= n; ++k) {
    const uint8_t c = uint8_t(s[n - k]);
    if ((c & 0xc0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = 1;
    if ((c & 0xe0) == 0xc0) need = 2;
    else if ((c & 0xf0) == 0xe0) need = 3;
    else if ((c & 0xf8) == 0xf0) need = 4;
    return need > k ? n - k : n;
  }
  return n;
}

void Tokenizer::Impl::bpe_word(const std::string& word, std::vector<int32_t>& out) const {
  struct Sym {
    int prev, next;
    uint32_t start, len;
    int32_t id;
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  for (size_t i = 0; i < word.size();) {
    const uint8_t c = uint8_t(word[i]);
    size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
    n = std::min(n, word.size() - i);
    const auto it = token_to_id.find(word.substr(i, n));
    syms.push_back({int(syms.size()) - 1, int(syms.size()) + 1, uint32_t(i), uint32_t(n),
                    it == token_to_id.end() ? -1 : it->second});
    i += n;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  struct Bigram {
    int left, right;
    int32_t rank, result;
    uint32_t size;
    bool operator<(const Bigram& o) const {  // priority_queue pops the "largest": lowest rank, leftmost
      return rank > o.rank || (rank == o.rank && left > o.left);
    }
  };
  std::priority_queue<Bigram> queue;
  auto add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const Sym& a = syms[size_t(l)];
    const Sym& b = syms[size_t(r)];
    if (a.id >= 0 && b.id >= 0) {
      const auto it = merge_ids.find(uint64_t(uint32_t(a.id)) << 32 | uint32_t(b.id));
      if (it != merge_ids.end()) {
        queue.push({l, r, it->second.rank, it->second.result, a.len + b.len});
        return;
      }
    }
    if (!merge_str.empty()) {
      std::string key = word.substr(a.start, a.len);
      key += ' ';
      key.append(word, b.start, b.len);
      const auto it = merge_str.find(key);
      if (it != merge_str.end()) {
        const auto t = token_to_id.find(word.substr(a.start, a.len + b.len));
        queue.push({l, r, it->second, t == token_to_id.end() ? -1 : t->second, a.len + b.len});
      }
    }
  };
  for (size_t i = 1; i < syms.size(); ++i) add(int(i) - 1, int(i));
  while (!queue.empty()) {
    const Bigram bg = queue.top();
    queue.pop();
    Sym& l = syms[size_t(bg.left)];
    Sym& r = syms[size_t(bg.right)];
    if (l.len == 0 || r.len == 0 || l.len + r.len != bg.size) continue;  // outdated
    l.len += r.len;
    l.id = bg.result;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[size_t(r.next)].prev = bg.left;
    add(l.prev, bg.left);
    add(bg.left, l.next);
  }
  for (int i = 0; i >= 0; i = syms[size_t(i)].next) {
    const Sym& s = syms[size_t(i)];
    if (s.len == 0) continue;
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    // Not a vocab entry: llama.cpp emits the single-byte entries it can find.
    for (uint32_t k = 0; k < s.len; ++k) {
      const auto it = token_to_id.find(word.substr(s.start + k, 1));
      if (it != token_to_id.end()) out.push_back(it->second);
    }
  }
}

void Tokenizer::Impl::encode_raw(std::string_view text, std::vector<int32_t>& out) const {
  std::string cleaned;
  if (detail::clean_utf8(text, cleaned)) text = cleaned;
  std::vector<std::pair<size_t, size_t>> spans;
  spans.reserve(text.size() / 4 + 1);
  splitter->split(text, spans);
  const auto& tables = byte_tables();
  std::string mapped;
  for (const auto& [off, len] : spans) {
    const std::string raw(text.substr(off, len));
    {
      std::lock_guard<std::mutex> lock(cache_mu);
      const auto it = cache.find(raw);
      if (it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        continue;
      }
    }
    mapped.clear();
    for (char c : raw) mapped += tables.to_unicode[uint8_t(c)];
    std::vector<int32_t> ids;
    const auto whole = ignore_merges ? token_to_id.find(mapped) : token_to_id.end();
    if (whole != token_to_id.end()) ids.push_back(whole->second);
    else bpe_word(mapped, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    if (raw.size() > kMaxCachedBytes) continue;  // long runs are rare and would bloat the cache
    std::lock_guard<std::mutex> lock(cache_mu);
    if (cache.size() >= kCacheLimit) cache.clear();
    cache.emplace(raw, std::move(ids));
  }
}

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::Tokenizer(const Tokenizer&) = default;
Tokenizer& Tokenizer::operator=(const Tokenizer&) = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  if (!impl_) fail("tokenizer: not loaded");
  const Impl& im = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos) {
    if (im.vocab.bos_id < 0) fail("tokenizer: BOS requested but the vocab has no BOS token");
    out.push_back(im.vocab.bos_id);
  }
  // Fragments: raw text spans (id < 0) or special tokens, cut longest special token first.
  struct Frag {
    int32_t id;
    size_t off, len;
  };
  std::vector<Frag> frags{{-1, 0, text.size()}}, next;
  for (int32_t sid : im.special_ids) {
    const auto type = TokenType(im.vocab.token_types[size_t(sid)]);
    if (!parse_special && (type == TokenType::Control || type == TokenType::Unknown)) continue;
    const std::string& st = im.vocab.tokens[size_t(sid)];
    bool any = false;
    next.clear();
    for (const Frag& f : frags) {
      if (f.id >= 0) {
        next.push_back(f);
        continue;
      }
      const std::string_view s = text.substr(f.off, f.len);
      size_t pos = 0;
      for (size_t hit; (hit = s.find(st, pos)) != std::string_view::npos; pos = hit + st.size()) {
        if (hit > pos) next.push_back({-1, f.off + pos, hit - pos});
        next.push_back({sid, 0, 0});
        any = true;
      }
      if (pos < s.size()) next.push_back({-1, f.off + pos, s.size() - pos});
    }
    if (any) frags.swap(next);
  }
  if (im.spm) {
    // llama.cpp's SPM branch: " " before a raw fragment that is first or follows a special token
    // (when add_space_prefix), spaces escaped as U+2581, each fragment merged on its own.
    bool prev_special = true;
    std::string buf;
    for (const Frag& f : frags) {
      if (f.id >= 0) {
        out.push_back(f.id);
        prev_special = true;
        continue;
      }
      if (f.len == 0) continue;  // empty text: no fragment at all in llama.cpp, so no prefix either
      buf.clear();
      if (im.add_space_prefix && prev_special) buf = "\xe2\x96\x81";
      for (char c : text.substr(f.off, f.len)) {
        if (c == ' ') buf += "\xe2\x96\x81";
        else buf.push_back(c);
      }
      im.spm_fragment(buf, out);
      prev_special = false;
    }
    return out;
  }
  for (const Frag& f : frags) {
    if (f.id >= 0) out.push_back(f.id);
    else if (f.len > 0) im.encode_raw(text.substr(f.off, f.len), out);
  }
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool special) const {
  if (!impl_) fail("tokenizer: not loaded");
  if (id < 0 || id >= n_vocab()) fail("tokenizer: token id {} out of range [0, {})", id, n_vocab());
  const std::string& text = impl_->vocab.tokens[size_t(id)];
  const TokenType type = TokenType(impl_->vocab.token_types[size_t(id)]);
  if (impl_->spm) {  // as llama.cpp's token_to_piece for SPM
    switch (type) {
      case TokenType::Normal: {
        std::string out;
        for (size_t i = 0; i < text.size(); ++i) {
          if (text.compare(i, 3, "\xe2\x96\x81") == 0) {
            out.push_back(' ');
            i += 2;
          } else {
            out.push_back(text[i]);
          }
        }
        return out;
      }
      case TokenType::Byte:
        if (text.size() == 6 && text.starts_with("<0x")) return std::string(1, char(std::stoi(text.substr(3, 2), nullptr, 16)));
        return text;
      case TokenType::UserDefined:
        return text;
      case TokenType::Control:
      case TokenType::Unknown:
        return special ? text : std::string();
      default:
        return std::string();
    }
  }
  switch (type) {
    case TokenType::Normal: {
      const auto& t = byte_tables();
      std::string out;
      out.reserve(text.size());
      for (size_t i = 0; i < text.size();) {
        const uint8_t c = uint8_t(text[i]);
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
        n = std::min(n, text.size() - i);
        uint32_t cp = c;
        if (n == 2) cp = uint32_t(c & 0x1f) << 6 | (uint8_t(text[i + 1]) & 0x3f);
        if (n <= 2 && cp < t.to_byte.size() && t.to_byte[cp] >= 0) out.push_back(char(t.to_byte[cp]));
        else out.append(text, i, n);  // not in the byte alphabet: keep as is
        i += n;
      }
      return out;
    }
    case TokenType::UserDefined:
      return text;
    case TokenType::Control:
      return special ? text : std::string();
    default:
      return std::string();
  }
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool special) const {
  std::string out;
  for (int32_t id : ids) out += token_to_piece(id, special);
  return out;
}

int32_t Tokenizer::bos() const { return impl_ ? impl_->vocab.bos_id : -1; }
int32_t Tokenizer::eos() const { return impl_ ? impl_->vocab.eos_id : -1; }
int32_t Tokenizer::eot() const { return impl_ ? impl_->vocab.eot_id : -1; }
int32_t Tokenizer::n_vocab() const { return impl_ ? int32_t(impl_->vocab.tokens.size()) : 0; }
bool Tokenizer::is_eog(int32_t id) const {
  return impl_ && id >= 0 && id < n_vocab() && impl_->is_eog[size_t(id)];
}
bool Tokenizer::is_control(int32_t id) const {
  return impl_ && id >= 0 && id < n_vocab() && TokenType(impl_->vocab.token_types[size_t(id)]) == TokenType::Control;
}
bool Tokenizer::add_bos_default() const {
  if (!impl_) return false;
  if (impl_->vocab.add_bos) return *impl_->vocab.add_bos;
  return impl_->spm || impl_->pre_kind == detail::PreTokenizer::Llama3;  // llama.cpp: true for SPM
}
int32_t Tokenizer::token_id(std::string_view text) const {
  if (!impl_) return -1;
  const auto it = impl_->token_to_id.find(std::string(text));
  return it == impl_->token_to_id.end() ? -1 : it->second;
}
const std::string& Tokenizer::token_text(int32_t id) const {
  if (!impl_ || id < 0 || id >= n_vocab()) fail("tokenizer: token id {} out of range [0, {})", id, n_vocab());
  return impl_->vocab.tokens[size_t(id)];
}
TokenType Tokenizer::token_type(int32_t id) const {
  if (!impl_ || id < 0 || id >= n_vocab()) fail("tokenizer: token id {} out of range [0, {})", id, n_vocab());
  return TokenType(impl_->vocab.token_types[size_t(id)]);
}
const TokenizerVocab& Tokenizer::vocab() const {
  if (!impl_) fail("tokenizer: not loaded");
  return impl_->vocab;
}

}  // namespace samq
