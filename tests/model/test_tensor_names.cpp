// HF -> GGUF names, GGUF name parsing, and the q/k permutation against an independent
// implementation of numpy's reshape(n_head, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols).
#include <gtest/gtest.h>

#include <numeric>

#include "core/error.h"
#include "model/tensor_names.h"

using namespace samq;

TEST(TensorNames, HfToGguf) {
  const std::pair<const char*, const char*> cases[] = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
      {"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
      {"model.layers.12.self_attn.q_proj.weight", "blk.12.attn_q.weight"},
      {"model.layers.3.self_attn.q_proj.bias", "blk.3.attn_q.bias"},
      {"model.layers.3.self_attn.k_proj.bias", "blk.3.attn_k.bias"},
      {"model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight"},
      {"model.layers.7.self_attn.o_proj.weight", "blk.7.attn_output.weight"},
      {"model.layers.1.self_attn.q_norm.weight", "blk.1.attn_q_norm.weight"},
      {"model.layers.1.self_attn.k_norm.weight", "blk.1.attn_k_norm.weight"},
      {"model.layers.5.post_attention_layernorm.weight", "blk.5.ffn_norm.weight"},
      {"model.layers.5.mlp.gate_proj.weight", "blk.5.ffn_gate.weight"},
      {"model.layers.5.mlp.up_proj.weight", "blk.5.ffn_up.weight"},
      {"model.layers.5.mlp.down_proj.weight", "blk.5.ffn_down.weight"},
  };
  for (const auto& [hf, gg] : cases) {
    const auto got = hf_to_gguf_name(hf);
    ASSERT_TRUE(got.has_value()) << hf;
    EXPECT_EQ(*got, gg) << hf;
  }
  EXPECT_FALSE(hf_to_gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq").has_value());
  EXPECT_THROW(hf_to_gguf_name("model.layers.0.mlp.experts.0.w1.weight"), Error);
  EXPECT_THROW(hf_to_gguf_name("vision_tower.patch_embed.weight"), Error);
  EXPECT_THROW(hf_to_gguf_name("model.layers.x.mlp.up_proj.weight"), Error);
}

TEST(TensorNames, Parse) {
  auto p = parse_gguf_name("blk.17.ffn_down.weight");
  EXPECT_EQ(p.kind, "ffn_down");
  EXPECT_EQ(p.layer, 17);
  EXPECT_EQ(p.suffix, "weight");
  p = parse_gguf_name("blk.0.attn_q.bias");
  EXPECT_EQ(p.kind, "attn_q");
  EXPECT_EQ(p.suffix, "bias");
  p = parse_gguf_name("output.weight");
  EXPECT_EQ(p.kind, "output");
  EXPECT_EQ(p.layer, -1);
  EXPECT_EQ(tensor_kind("token_embd.weight"), "token_embd");
  EXPECT_EQ(tensor_kind("rope_freqs.weight"), "rope_freqs");
  EXPECT_EQ(tensor_layer("blk.3.attn_k_norm.weight"), 3);
  EXPECT_EQ(tensor_kind("blk.3.attn_k_norm.weight"), "attn_k_norm");
  EXPECT_TRUE(keeps_f32("blk.0.attn_norm.weight", 1));
  EXPECT_TRUE(keeps_f32("blk.0.attn_q.bias", 1));
  EXPECT_TRUE(keeps_f32("rope_freqs.weight", 1));
  EXPECT_FALSE(keeps_f32("blk.0.attn_q.weight", 2));
  EXPECT_FALSE(keeps_f32("token_embd.weight", 2));
}

// numpy: w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols), element by
// element: out[h][j][i][c] = in[h][i][j][c].
static std::vector<float> numpy_permute(const std::vector<float>& w, int64_t rows, int64_t cols, int n_head) {
  const int64_t half = rows / n_head / 2;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t j = 0; j < half; ++j)
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t out_flat = ((h * half + j) * 2 + i) * cols + c;
          const int64_t in_flat = ((h * 2 + i) * half + j) * cols + c;
          out[size_t(out_flat)] = w[size_t(in_flat)];
        }
  return out;
}

TEST(TensorNames, PermuteMatchesNumpyReshapeSwapaxes) {
  for (auto [rows, cols, heads] : {std::tuple<int64_t, int64_t, int>{512, 3, 8}, {128, 5, 2}, {8, 1, 2}, {64, 7, 1}}) {
    std::vector<float> w(size_t(rows * cols));
    std::iota(w.begin(), w.end(), 0.0f);
    std::vector<float> got(w.size()), back(w.size());
    permute_qk_rows(w.data(), got.data(), rows, size_t(cols) * sizeof(float), heads);
    EXPECT_EQ(got, numpy_permute(w, rows, cols, heads)) << rows << "x" << cols << " heads " << heads;
    unpermute_qk_rows(got.data(), back.data(), rows, size_t(cols) * sizeof(float), heads);
    EXPECT_EQ(back, w);
  }
  std::vector<float> w(10), o(10);
  EXPECT_THROW(permute_qk_rows(w.data(), o.data(), 10, 4, 4), Error);  // 10 rows are not 4 heads
  EXPECT_THROW(permute_qk_rows(w.data(), o.data(), 6, 4, 2), Error);   // head dim 3 is odd
}
