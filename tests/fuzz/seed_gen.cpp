// Writes the seed corpora of the fuzz targets: small valid GGUF files (every value type,
// tensors of several block types, a llama-like model header), safetensors images and
// config.json variants (the fixtures of ../shared plus old-style rope keys).
// Usage: fuzz_seed_gen OUT_DIR SHARED_DIR   -> OUT_DIR/{gguf,safetensors,config}/
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "format/gguf.h"

namespace fs = std::filesystem;
using namespace samq;

namespace {

void gguf_seeds(const std::string& dir) {
  std::vector<uint8_t> zeros(4096, 0x11);
  {  // a llama-like model header with tiny tensors
    GgufWriter w(dir + "/llama.gguf");
    w.set_str("general.architecture", "llama");
    w.set_u32("llama.context_length", 64);
    w.set_u32("llama.embedding_length", 32);
    w.set_u32("llama.block_count", 1);
    w.set_u32("llama.feed_forward_length", 64);
    w.set_u32("llama.attention.head_count", 4);
    w.set_u32("llama.attention.head_count_kv", 2);
    w.set_f32("llama.rope.freq_base", 10000.0f);
    w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.set_str("tokenizer.ggml.model", "gpt2");
    w.set_arr_str("tokenizer.ggml.tokens", {"a", "b", "c", "d"});
    const int32_t tt[] = {1, 1, 3, 3};
    w.set_arr_i32("tokenizer.ggml.token_type", tt);
    w.set_u32("tokenizer.ggml.bos_token_id", 2);
    w.add_tensor_info("token_embd.weight", GgmlType::F32, {32, 4});
    w.add_tensor_info("blk.0.attn_q.weight", GgmlType::Q8_0, {32, 2});
    w.add_tensor_info("blk.0.ffn_down.weight", GgmlType::Q4_K, {256, 1});
    w.add_tensor_info("output_norm.weight", GgmlType::F16, {32});
    w.write_header();
    for (size_t i = 0; i < w.n_tensors(); ++i) w.write_tensor_data(i, zeros.data(), w.tensor_info(i).nbytes);
    w.finish();
  }
  {  // every value type
    GgufWriter w(dir + "/values.gguf");
    w.set_u8("a", 1); w.set_i8("b", -1); w.set_u16("c", 2); w.set_i16("d", -2);
    w.set_u32("e", 3); w.set_i32("f", -3); w.set_u64("g", 4); w.set_i64("h", -4);
    w.set_f32("i", 0.5f); w.set_f64("j", 0.25); w.set_bool("k", true); w.set_str("l", "str");
    const float fa[] = {1, 2};
    w.set_arr_f32("m", fa);
    w.set_arr_str("n", {"x", ""});
    const uint8_t ba[] = {1, 0};
    w.set("o", GgufValue::arr_bool(ba));
    w.add_tensor_info("t", GgmlType::BF16, {3, 2, 1, 1});
    w.write_header();
    w.write_tensor_data(size_t(0), zeros.data(), 12);
    w.finish();
  }
  {  // custom alignment, two tensors
    GgufWriter w(dir + "/align64.gguf");
    w.set_u32("general.alignment", 64);
    w.add_tensor_info("a", GgmlType::Q5_K, {256});
    w.add_tensor_info("b", GgmlType::IQ4_NL, {32, 2});
    w.write_header();
    w.write_tensor_data(size_t(0), zeros.data(), w.tensor_info(0).nbytes);
    w.write_tensor_data(size_t(1), zeros.data(), w.tensor_info(1).nbytes);
    w.finish();
  }
  {
    GgufWriter w(dir + "/empty.gguf");
    w.finish();
  }
}

std::string st_image(const std::string& header, size_t data_bytes) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  s += header;
  s += std::string(data_bytes, '\x3c');
  return s;
}

void safetensors_seeds(const std::string& dir) {
  write_file_atomic(dir + "/one.safetensors",
                    st_image(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})", 24));
  write_file_atomic(dir + "/mixed.safetensors",
                    st_image(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F16","shape":[2,2],"data_offsets":[8,16]},"s":{"dtype":"F32","shape":[],"data_offsets":[16,20]}})",
                             20));
  write_file_atomic(dir + "/empty.safetensors", st_image("{}", 0));
}

void config_seeds(const std::string& dir, const std::string& shared) {
  int i = 0;
  for (const char* rel : {"models/refcode-32m/config.json", "golden/archs/llama3-ropescaled/config.json",
                          "golden/archs/qwen2-tied-bias/config.json", "golden/archs/qwen3-qknorm/config.json"}) {
    const std::string p = shared + "/" + rel;
    if (fs::exists(p)) write_file_atomic(dir + "/fixture" + std::to_string(i++) + ".json", read_file(p));
  }
  write_file_atomic(dir + "/old_llama3.json",
                    R"({"architectures":["LlamaForCausalLM"],"hidden_size":256,"num_hidden_layers":2,)"
                    R"("num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":768,"vocab_size":1000,)"
                    R"("max_position_embeddings":2048,"rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3",)"
                    R"("factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192},)"
                    R"("bos_token_id":1,"eos_token_id":[2,3],"torch_dtype":"bfloat16"})");
  write_file_atomic(dir + "/mistral_linear.json",
                    R"({"architectures":["MistralForCausalLM"],"hidden_size":128,"num_hidden_layers":1,)"
                    R"("num_attention_heads":2,"intermediate_size":256,"vocab_size":100,"max_position_embeddings":512,)"
                    R"("rope_scaling":{"type":"linear","factor":2},"rms_norm_eps":1e-5,"tie_word_embeddings":true})");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s OUT_DIR SHARED_DIR\n", argv[0]);
    return 2;
  }
  const std::string out = argv[1];
  for (const char* d : {"gguf", "safetensors", "config"}) fs::create_directories(out + "/" + d);
  gguf_seeds(out + "/gguf");
  safetensors_seeds(out + "/safetensors");
  config_seeds(out + "/config", argv[2]);
  return 0;
}
