#include "eval/logits_codec.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log_softmax.h"
#include "core/mapped_file.h"

namespace samq {

float TokenDist::log_prob(int32_t id) const {
  auto it = std::lower_bound(ids.begin(), ids.end(), id);
  const uint16_t c = (it != ids.end() && *it == id) ? codes[it - ids.begin()] : 0;
  return scale * float(c) + min_log_prob;
}

int32_t TokenDist::argmax() const {
  int32_t best = 0;
  uint16_t bc = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    if (codes[i] > bc) {
      bc = codes[i];
      best = ids[i];
    }
  return best;
}

// As llama-perplexity's log_softmax for the base file (ggml-formats.md §6.2).
TokenDist encode_dist(const float* logits, int64_t n_vocab) {
  const DistCodeRange r = dist_code_range(logits, n_vocab);
  const float mn = r.lo;
  TokenDist d;
  d.min_log_prob = r.min_log_prob;
  d.scale = r.scale;
  if (d.scale != 0.0f) {
    const float inv = 1.0f / d.scale;
    for (int64_t i = 0; i < n_vocab; ++i) {
      if (!(logits[i] > mn)) continue;
      const long c = std::lrintf(inv * (logits[i] - mn));
      if (c > 0) {
        d.ids.push_back(int32_t(i));
        d.codes.push_back(uint16_t(std::min<long>(c, 65535)));
      }
    }
  }
  return d;
}

namespace {

void put(std::vector<uint8_t>& o, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  o.insert(o.end(), b, b + n);
}
void put_varint(std::vector<uint8_t>& o, uint32_t v) {
  while (v >= 0x80) {
    o.push_back(uint8_t(v | 0x80));
    v >>= 7;
  }
  o.push_back(uint8_t(v));
}

struct Reader {
  const uint8_t* p;
  size_t n, off = 0;
  std::string where;
  void need(size_t k) {
    if (off + k > n) fail("{}: truncated at byte {} (need {} more bytes)", where, off, k);
  }
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, p + off, sizeof(T));
    off += sizeof(T);
    return v;
  }
  uint32_t varint() {
    uint32_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
      need(1);
      const uint8_t b = p[off++];
      v |= uint32_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("{}: bad varint at byte {}", where, off);
  }
};

}  // namespace

void append_dist(std::vector<uint8_t>& out, const TokenDist& d) {
  put(out, &d.scale, 4);
  put(out, &d.min_log_prob, 4);
  const uint32_t n = uint32_t(d.ids.size());
  put(out, &n, 4);
  int32_t prev = -1;
  for (uint32_t i = 0; i < n; ++i) {
    put_varint(out, uint32_t(d.ids[i] - prev - 1));
    prev = d.ids[i];
    put(out, &d.codes[i], 2);
  }
}

std::vector<TokenDist> parse_dists(const std::vector<uint8_t>& raw, size_t count, const std::string& where) {
  Reader r{raw.data(), raw.size(), 0, where};
  std::vector<TokenDist> out(count);
  for (auto& d : out) {
    d.scale = r.get<float>();
    d.min_log_prob = r.get<float>();
    const uint32_t n = r.get<uint32_t>();
    if (n > raw.size()) fail("{}: absurd entry count {} at byte {}", where, n, r.off - 4);
    d.ids.resize(n);
    d.codes.resize(n);
    int64_t prev = -1;
    for (uint32_t i = 0; i < n; ++i) {
      prev += int64_t(r.varint()) + 1;
      if (prev > INT32_MAX) fail("{}: token id overflow at byte {}", where, r.off);
      d.ids[i] = int32_t(prev);
      d.codes[i] = r.get<uint16_t>();
    }
  }
  if (r.off != raw.size()) fail("{}: {} trailing bytes", where, raw.size() - r.off);
  return out;
}

void DistRows::append(const TokenDist& d) {
  scale.push_back(d.scale);
  min_log_prob.push_back(d.min_log_prob);
  ids.insert(ids.end(), d.ids.begin(), d.ids.end());
  codes.insert(codes.end(), d.codes.begin(), d.codes.end());
  offsets.push_back(int64_t(ids.size()));
}

DistRows parse_dist_rows(const std::vector<uint8_t>& raw, size_t count, const std::string& where) {
  Reader r{raw.data(), raw.size(), 0, where};
  DistRows out;
  out.scale.reserve(count);
  out.min_log_prob.reserve(count);
  out.offsets.reserve(count + 1);
  // at least 3 bytes per entry (1-byte varint + u16 code)
  out.ids.reserve(raw.size() / 3);
  out.codes.reserve(raw.size() / 3);
  for (size_t k = 0; k < count; ++k) {
    out.scale.push_back(r.get<float>());
    out.min_log_prob.push_back(r.get<float>());
    const uint32_t n = r.get<uint32_t>();
    if (n > raw.size()) fail("{}: absurd entry count {} at byte {}", where, n, r.off - 4);
    int64_t prev = -1;
    for (uint32_t i = 0; i < n; ++i) {
      prev += int64_t(r.varint()) + 1;
      if (prev > INT32_MAX) fail("{}: token id overflow at byte {}", where, r.off);
      out.ids.push_back(int32_t(prev));
      out.codes.push_back(r.get<uint16_t>());
    }
    out.offsets.push_back(int64_t(out.ids.size()));
  }
  if (r.off != raw.size()) fail("{}: {} trailing bytes", where, raw.size() - r.off);
  return out;
}

void BaseLogitsFile::add_chunk(const std::vector<TokenDist>& dists) {
  std::vector<uint8_t> raw;
  for (const auto& d : dists) append_dist(raw, d);
  uLongf zn = compressBound(raw.size());
  std::vector<uint8_t> z(zn);
  if (compress2(z.data(), &zn, raw.data(), raw.size(), 6) != Z_OK) fail("zlib compression failed");
  z.resize(zn);
  chunks_zlib.push_back(std::move(z));
  chunks_raw_bytes.push_back(uint32_t(raw.size()));
}

std::vector<TokenDist> BaseLogitsFile::chunk(int32_t c) const {
  if (c < 0 || c >= int32_t(chunks_zlib.size())) fail("base logits: no chunk {}", c);
  std::vector<uint8_t> raw(chunks_raw_bytes[c]);
  uLongf n = raw.size();
  if (uncompress(raw.data(), &n, chunks_zlib[c].data(), chunks_zlib[c].size()) != Z_OK || n != raw.size())
    fail("base logits: chunk {} does not decompress (corrupt file?)", c);
  return parse_dists(raw, size_t(n_ctx - 1 - n_ctx / 2), fmt::format("base logits chunk {}", c));
}

DistRows BaseLogitsFile::chunk_rows(int32_t c) const {
  if (c < 0 || c >= int32_t(chunks_zlib.size())) fail("base logits: no chunk {}", c);
  std::vector<uint8_t> raw(chunks_raw_bytes[c]);
  uLongf n = raw.size();
  if (uncompress(raw.data(), &n, chunks_zlib[c].data(), chunks_zlib[c].size()) != Z_OK || n != raw.size())
    fail("base logits: chunk {} does not decompress (corrupt file?)", c);
  return parse_dist_rows(raw, size_t(n_ctx - 1 - n_ctx / 2), fmt::format("base logits chunk {}", c));
}

void BaseLogitsFile::save(const std::string& path) const {
  AtomicFile f(path);
  f.write("SAMQLGT1", 8);
  const uint32_t hdr[3] = {uint32_t(n_ctx), uint32_t(n_vocab), uint32_t(n_chunk)};
  f.write(hdr, sizeof(hdr));
  f.write(tokens.data(), tokens.size() * 4);
  const uint32_t sl = uint32_t(text_sha256.size());
  f.write(&sl, 4);
  f.write(text_sha256);
  for (size_t c = 0; c < chunks_zlib.size(); ++c) {
    const uint32_t h[2] = {chunks_raw_bytes[c], uint32_t(chunks_zlib[c].size())};
    f.write(h, 8);
    f.write(chunks_zlib[c].data(), chunks_zlib[c].size());
  }
  f.commit();
}

BaseLogitsFile BaseLogitsFile::load(const std::string& path) {
  MappedFile map(path);
  Reader r{map.data(), map.size(), 0, path};
  r.need(8);
  if (std::memcmp(map.data(), "SAMQLGT1", 8) != 0) fail("{}: not a samq base-logits file (bad magic)", path);
  r.off = 8;
  BaseLogitsFile b;
  b.n_ctx = int32_t(r.get<uint32_t>());
  b.n_vocab = int32_t(r.get<uint32_t>());
  b.n_chunk = int32_t(r.get<uint32_t>());
  if (b.n_ctx < 4 || b.n_vocab <= 0 || b.n_chunk < 0 || uint64_t(b.n_ctx) * b.n_chunk * 4 > map.size())
    fail("{}: bad header (n_ctx {}, n_vocab {}, n_chunk {})", path, b.n_ctx, b.n_vocab, b.n_chunk);
  b.tokens.resize(size_t(b.n_ctx) * b.n_chunk);
  r.need(b.tokens.size() * 4);
  std::memcpy(b.tokens.data(), map.data() + r.off, b.tokens.size() * 4);
  r.off += b.tokens.size() * 4;
  const uint32_t sl = r.get<uint32_t>();
  r.need(sl);
  b.text_sha256.assign(reinterpret_cast<const char*>(map.data() + r.off), sl);
  r.off += sl;
  for (int32_t c = 0; c < b.n_chunk; ++c) {
    const uint32_t raw = r.get<uint32_t>(), zn = r.get<uint32_t>();
    r.need(zn);
    b.chunks_raw_bytes.push_back(raw);
    b.chunks_zlib.emplace_back(map.data() + r.off, map.data() + r.off + zn);
    r.off += zn;
  }
  return b;
}

}  // namespace samq
