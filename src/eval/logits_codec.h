// Compact storage of a base model's next-token distributions, for KL divergence without
// keeping (or re-running) the base model.
//
// Each scored position keeps exactly what llama-perplexity's KLD uses (ggml-formats.md §6.2):
// with M = max logit, lo = max(min logit, M - 16), lse = log sum exp(logit - M),
// scale = (M - lo)/65535, min_log_prob = lo - M - lse, code_i = RNE((logit_i - lo)/scale) for
// logit_i > lo, else 0; decoded log p_i = scale*code_i + min_log_prob. llama.cpp's KLD sums
// only over codes > 0, its same-top uses the argmax of the codes and its base NLL the code of
// the true token. So storing the codes > 0 (sparse: ids delta-coded as varints, codes as
// uint16) loses nothing that llama.cpp's own full base file holds, and the results equal what
// llama.cpp computes from its file. Each chunk's records are zlib-compressed.
//
// File (samq base logits, little-endian): "SAMQLGT1", u32 n_ctx, u32 n_vocab, u32 n_chunk,
// i32 tokens[n_chunk*n_ctx], u32 text_sha256_len + bytes (hex), then per chunk:
// u32 raw_bytes, u32 zlib_bytes, zlib data of its scored positions' records
// (f32 scale, f32 min_log_prob, u32 n, n x (varint id delta, u16 code)).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace samq {

// One position's base distribution.
struct TokenDist {
  float scale = 0, min_log_prob = 0;
  std::vector<int32_t> ids;     // ascending, codes > 0 only
  std::vector<uint16_t> codes;

  float log_prob(int32_t id) const;  // decoded, min_log_prob for ids not stored
  int32_t argmax() const;            // first id with the largest code (0 if none stored)
};

TokenDist encode_dist(const float* logits, int64_t n_vocab);

// Serialization of a chunk's positions (uncompressed form; zlib applied by the file I/O).
void append_dist(std::vector<uint8_t>& out, const TokenDist& d);
std::vector<TokenDist> parse_dists(const std::vector<uint8_t>& raw, size_t count, const std::string& where);

// Many positions' distributions in one flat form (what Ops::eval_token_stats reads as EvalBase
// once uploaded): row r's entries are ids/codes[offsets[r] .. offsets[r+1]).
struct DistRows {
  std::vector<float> scale, min_log_prob;
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> ids;
  std::vector<uint16_t> codes;
  int64_t rows() const { return int64_t(scale.size()); }
  void append(const TokenDist& d);
};
// As parse_dists, straight into the flat form (same checks).
DistRows parse_dist_rows(const std::vector<uint8_t>& raw, size_t count, const std::string& where);

struct BaseLogitsFile {
  int32_t n_ctx = 0, n_vocab = 0, n_chunk = 0;
  std::vector<int32_t> tokens;            // n_chunk * n_ctx (first token of each chunk as in the text)
  std::string text_sha256;
  std::vector<std::vector<uint8_t>> chunks_zlib;  // compressed records per chunk
  std::vector<uint32_t> chunks_raw_bytes;

  void add_chunk(const std::vector<TokenDist>& dists);
  std::vector<TokenDist> chunk(int32_t c) const;  // decompress + parse
  DistRows chunk_rows(int32_t c) const;          // decompress + parse into the flat form
  void save(const std::string& path) const;       // atomic
  static BaseLogitsFile load(const std::string& path);
};

}  // namespace samq
