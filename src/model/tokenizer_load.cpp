// Building a Tokenizer: from an HF directory (tokenizer.json + tokenizer_config.json, the vocab
// arrays made exactly as llama.cpp's converter makes them) or from a GGUF file's tokenizer.*
// keys. All derived tables (ranks, special tokens, end-of-generation set) come from
// TokenizerVocab in Impl::build(), so both sources behave identically.
#include <algorithm>
#include <filesystem>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "format/gguf.h"
#include "model/tokenizer_impl.h"

namespace samq {

namespace {

// Texts llama.cpp treats as end-of-turn / end-of-message markers (besides EOS itself).
constexpr std::string_view kEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "_<EOT>", "<|end_of_text|>", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
};

// Added tokens the converter marks CONTROL even when tokenizer.json does not call them special.
bool looks_special(std::string_view t) {
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (t.starts_with("<|") && t.ends_with("|>")) return true;
  if (t.starts_with("<\xef\xbd\x9c") && t.ends_with("\xef\xbd\x9c>")) return true;  // <｜ ... ｜>
  if (t.starts_with("<unused") && t.ends_with(">")) return true;
  return false;
}

// True when tokenizer.json prepends "▁" to the text (Llama-2: normalizer Prepend("▁"); newer
// files: pre_tokenizer Metaspace with prepend_scheme "first"/"always" or add_prefix_space).
bool hf_prepends_space(const nlohmann::json& tj) {
  using nlohmann::json;
  auto any_of = [](const json& node, const char* list_key, auto&& pred) {
    if (!node.is_object()) return false;
    if (pred(node)) return true;
    if (node.contains(list_key) && node[list_key].is_array())
      for (const json& c : node[list_key])
        if (c.is_object() && pred(c)) return true;
    return false;
  };
  const bool prepend = any_of(tj.value("normalizer", json()), "normalizers", [](const json& n) {
    return n.value("type", "") == "Prepend" && n.value("prepend", "") == "\xe2\x96\x81";
  });
  const bool metaspace = any_of(tj.value("pre_tokenizer", json()), "pretokenizers", [](const json& n) {
    if (n.value("type", "") != "Metaspace") return false;
    if (n.contains("prepend_scheme") && n["prepend_scheme"].is_string()) return n["prepend_scheme"].get<std::string>() != "never";
    return n.value("add_prefix_space", true);
  });
  return prepend || metaspace;
}

// The "llama" (SentencePiece) vocab from tokenizer.json's BPE-with-byte_fallback or Unigram
// model, typed as llama.cpp's SentencePiece conversion types them: the unknown piece UNKNOWN,
// "<0xNN>" pieces BYTE, added tokens CONTROL (special) or USER_DEFINED, padding "[PAD<i>]"
// UNUSED with score -1000. Scores: Unigram's own log-probabilities; for BPE, -(rank of the first
// merge that makes the piece), so that llama.cpp's highest-score-first merging follows the merge
// order (pieces no merge makes score below every merged one; special, byte and added pieces 0).
// (llama.cpp's converter, given only tokenizer.json, writes -1000 for every BPE piece, a
// placeholder under which llama.cpp merges leftmost-first; samq writes the merge order instead.)
// add_space_prefix: tokenizer_config.json's add_prefix_space when present (as the converter),
// else whether tokenizer.json prepends "▁".
TokenizerVocab spm_vocab_from_json(const nlohmann::json& tj, const nlohmann::json& tc, const std::string& tj_path,
                                   int64_t n_vocab_padded) {
  using nlohmann::json;
  const json& model = tj.at("model");
  const bool unigram = model.value("type", "") == "Unigram";
  TokenizerVocab v;
  v.model = "llama";
  v.pre = "default";
  std::vector<std::string> by_id;
  std::vector<float> score;
  std::vector<uint8_t> present;
  auto put = [&](int64_t id, const std::string& text, float sc) {
    if (id < 0 || id > (1 << 24)) fail("{}: token id {} of '{}' out of range", tj_path, id, text);
    if (size_t(id) >= by_id.size()) {
      by_id.resize(size_t(id) + 1);
      score.resize(size_t(id) + 1, 0.0f);
      present.resize(size_t(id) + 1, 0);
    }
    by_id[size_t(id)] = text;
    score[size_t(id)] = sc;
    present[size_t(id)] = 1;
  };
  int64_t unk = -1;
  size_t n_model = 0;
  if (unigram) {
    const json& jv = model.at("vocab");
    for (size_t i = 0; i < jv.size(); ++i) put(int64_t(i), jv[i].at(0).get<std::string>(), jv[i].at(1).get<float>());
    n_model = jv.size();
    if (model.contains("unk_id") && model["unk_id"].is_number_integer()) unk = model["unk_id"].get<int64_t>();
  } else {
    const json& jv = model.at("vocab");
    for (auto it = jv.begin(); it != jv.end(); ++it) put(it.value().get<int64_t>(), it.key(), 0.0f);
    n_model = by_id.size();
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      const auto it = jv.find(model["unk_token"].get<std::string>());
      if (it != jv.end()) unk = it->get<int64_t>();
    }
  }
  std::vector<std::pair<int64_t, bool>> added;  // id, special
  for (const auto& a : tj.value("added_tokens", json::array())) {
    const int64_t id = a.at("id").get<int64_t>();
    const std::string content = a.at("content").get<std::string>();
    if (size_t(id) >= n_model || !present[size_t(id)]) put(id, content, -1000.0f);
    added.emplace_back(id, a.value("special", false));
  }
  if (n_vocab_padded > 0 && by_id.size() > size_t(n_vocab_padded))
    fail("{}: the tokenizer has ids up to {} but config.json's vocab_size is {}", tj_path, by_id.size() - 1, n_vocab_padded);
  const size_t n = std::max<size_t>(by_id.size(), n_vocab_padded > 0 ? size_t(n_vocab_padded) : 0);
  v.tokens.resize(n);
  v.scores.assign(n, 0.0f);
  v.token_types.assign(n, int32_t(TokenType::Normal));
  auto is_byte_piece = [](const std::string& t) {
    auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
    return t.size() == 6 && t.starts_with("<0x") && hex(t[3]) && hex(t[4]) && t[5] == '>';
  };
  for (size_t i = 0; i < n; ++i) {
    if (i < by_id.size() && present[i]) {
      v.tokens[i] = by_id[i];
      v.scores[i] = score[i];
      if (is_byte_piece(by_id[i])) v.token_types[i] = int32_t(TokenType::Byte);
    } else {
      v.tokens[i] = "[PAD" + std::to_string(i) + "]";
      v.scores[i] = -1000.0f;
      v.token_types[i] = int32_t(TokenType::Unused);
    }
  }
  for (const auto& [id, special] : added)
    v.token_types[size_t(id)] = int32_t(special ? TokenType::Control : TokenType::UserDefined);
  if (unk >= 0 && size_t(unk) < n) v.token_types[size_t(unk)] = int32_t(TokenType::Unknown);

  if (!unigram) {
    // Scores from the merge order.
    std::unordered_map<std::string, int32_t> id_of;
    id_of.reserve(n * 2);
    for (size_t i = 0; i < n; ++i) id_of.emplace(v.tokens[i], int32_t(i));
    std::vector<uint8_t> scored(n, 0);
    int64_t rank = 0;
    for (const auto& m : model.at("merges")) {
      std::string merged;
      if (m.is_string()) {
        const std::string ms = m.get<std::string>();
        const size_t sp = ms.find(' ', 1);
        if (sp == std::string::npos) fail("{}: merge '{}' has no separating space", tj_path, ms);
        merged = ms.substr(0, sp) + ms.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2) {
        merged = m[0].get<std::string>() + m[1].get<std::string>();
      } else {
        fail("{}: model.merges entry is neither \"a b\" nor [a, b]", tj_path);
      }
      const auto it = id_of.find(merged);
      if (it != id_of.end() && !scored[size_t(it->second)]) {
        scored[size_t(it->second)] = 1;
        if (TokenType(v.token_types[size_t(it->second)]) == TokenType::Normal) v.scores[size_t(it->second)] = -float(rank);
      }
      ++rank;
    }
    for (size_t i = 0; i < n; ++i)
      if (!scored[i] && TokenType(v.token_types[i]) == TokenType::Normal) v.scores[i] = -float(rank + int64_t(i));
  }
  if (tc.contains("add_prefix_space") && tc["add_prefix_space"].is_boolean()) v.add_space_prefix = tc["add_prefix_space"].get<bool>();
  else v.add_space_prefix = hf_prepends_space(tj);
  return v;
}

// Special token ids, add_bos/add_eos and the chat template from tokenizer_config.json (ids
// found among the added tokens, then the vocab), falling back to config.json's ids as the
// converter does.
void finish_hf_vocab(TokenizerVocab& v, const nlohmann::json& tj, const nlohmann::json& tc, const std::string& dir) {
  namespace fs = std::filesystem;
  using nlohmann::json;
    // Special token ids from tokenizer_config.json's strings, found among the added tokens.
    auto special_id = [&](const char* key) -> int32_t {
      if (!tc.contains(key) || tc[key].is_null()) return -1;
      const json& j = tc[key];
      const std::string content = j.is_string() ? j.get<std::string>() : j.value("content", "");
      for (const auto& a : tj.value("added_tokens", json::array()))
        if (a.value("content", "") == content) return a.at("id").get<int32_t>();
      const auto it = std::find(v.tokens.begin(), v.tokens.end(), content);
      return it == v.tokens.end() ? -1 : int32_t(it - v.tokens.begin());
    };
    v.bos_id = special_id("bos_token");
    v.eos_id = special_id("eos_token");
    v.unk_id = special_id("unk_token");
    v.pad_id = special_id("pad_token");
    // Fall back to config.json's ids, as the converter does.
    const std::string cfg_path = (fs::path(dir) / "config.json").string();
    if ((v.bos_id < 0 || v.eos_id < 0) && fs::exists(cfg_path)) {
      const json cfg = json::parse(read_file(cfg_path));
      auto from_cfg = [&](const char* key, int32_t& id) {
        if (id < 0 && cfg.contains(key) && cfg[key].is_number_integer()) id = cfg[key].get<int32_t>();
      };
      from_cfg("bos_token_id", v.bos_id);
      from_cfg("eos_token_id", v.eos_id);
    }
    if (tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean()) v.add_bos = tc["add_bos_token"].get<bool>();
    if (tc.contains("add_eos_token") && tc["add_eos_token"].is_boolean()) v.add_eos = tc["add_eos_token"].get<bool>();
    if (tc.contains("chat_template") && tc["chat_template"].is_string()) v.chat_template = tc["chat_template"].get<std::string>();
}

}  // namespace

void Tokenizer::Impl::build() {
  spm = vocab.model == "llama";
  if (!spm && vocab.model != "gpt2")
    fail("tokenizer model '{}' is not supported yet (samq implements byte-level BPE 'gpt2' and SentencePiece 'llama')",
         vocab.model);
  if (!spm) {
    pre_kind = detail::pre_tokenizer_from_name(vocab.pre);
    ignore_merges = pre_kind == detail::PreTokenizer::Llama3;
    splitter = std::make_unique<detail::RegexSplitter>(pre_kind);
  }
  const size_t n = vocab.tokens.size();
  if (n == 0) fail("tokenizer: empty vocab (tokenizer.ggml.tokens)");
  if (vocab.token_types.empty()) vocab.token_types.assign(n, int32_t(TokenType::Normal));
  if (vocab.token_types.size() != n)
    fail("tokenizer: {} token types for {} tokens (tokenizer.ggml.token_type)", vocab.token_types.size(), n);
  token_to_id.clear();
  token_to_id.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    if (!token_to_id.emplace(vocab.tokens[i], int32_t(i)).second)
      fail("tokenizer: token {} '{}' is a duplicate (tokenizer.ggml.tokens must be unique)", i, vocab.tokens[i]);
  }
  for (int32_t* id : {&vocab.bos_id, &vocab.eos_id, &vocab.unk_id, &vocab.pad_id, &vocab.eot_id})
    if (*id >= int32_t(n)) fail("tokenizer: special token id {} out of range [0, {})", *id, n);

  merge_ids.clear();
  merge_str.clear();
  merge_ids.reserve(vocab.merges.size() * 2);
  for (size_t r = 0; r < vocab.merges.size(); ++r) {
    const std::string& m = vocab.merges[r];
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) fail("tokenizer: merge {} '{}' has no separating space (tokenizer.ggml.merges)", r, m);
    const std::string left = m.substr(0, sp), right = m.substr(sp + 1);
    const auto l = token_to_id.find(left), rt = token_to_id.find(right);
    if (l != token_to_id.end() && rt != token_to_id.end()) {
      const auto res = token_to_id.find(left + right);
      merge_ids.emplace(uint64_t(uint32_t(l->second)) << 32 | uint32_t(rt->second),
                        Merge{int32_t(r), res == token_to_id.end() ? -1 : res->second});
    } else {
      merge_str.emplace(m, int32_t(r));
    }
  }

  special_ids.clear();
  is_eog.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const auto t = TokenType(vocab.token_types[i]);
    if ((t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown) && !vocab.tokens[i].empty())
      special_ids.push_back(int32_t(i));
    if (t == TokenType::Control || t == TokenType::UserDefined)
      for (auto e : kEogTexts)
        if (vocab.tokens[i] == e) is_eog[i] = 1;
  }
  std::stable_sort(special_ids.begin(), special_ids.end(), [&](int32_t a, int32_t b) {
    return vocab.tokens[size_t(a)].size() > vocab.tokens[size_t(b)].size();
  });
  if (vocab.eos_id >= 0) is_eog[size_t(vocab.eos_id)] = 1;
  if (vocab.eot_id >= 0) is_eog[size_t(vocab.eot_id)] = 1;
  if (spm) build_spm();
  cache.clear();
}

Tokenizer Tokenizer::from_vocab(TokenizerVocab v) {
  auto impl = std::make_shared<Impl>();
  impl->vocab = std::move(v);
  impl->build();
  Tokenizer t;
  t.impl_ = std::move(impl);
  return t;
}

Tokenizer Tokenizer::from_gguf(const GgufFile& f) {
  TokenizerVocab v;
  const std::string where = f.path();
  v.model = f.get_str("tokenizer.ggml.model", "");
  if (v.model.empty()) fail("{}: no tokenizer.ggml.model key; the file has no vocab", where);
  if (v.model != "gpt2" && v.model != "llama")
    fail("{}: tokenizer model '{}' is not supported yet (samq implements byte-level BPE 'gpt2' and SentencePiece 'llama')",
         where, v.model);
  v.pre = f.get_str("tokenizer.ggml.pre", "default");
  v.tokens = f.get_arr_str("tokenizer.ggml.tokens");
  v.token_types = f.get_arr_i32("tokenizer.ggml.token_type", {});
  if (v.model == "gpt2") v.merges = f.get_arr_str("tokenizer.ggml.merges");
  if (v.model == "llama") {
    if (const GgufValue* sc = f.find("tokenizer.ggml.scores")) {
      if (sc->is_array() && sc->elem_type() == GgufType::INT32) {
        for (int32_t x : sc->get_arr_i32()) v.scores.push_back(float(x));
      } else {
        v.scores = sc->get_arr_f32();
      }
    }
    if (const GgufValue* b = f.find("tokenizer.ggml.add_space_prefix")) v.add_space_prefix = b->get_bool();
  }
  auto id = [&](const char* key) {
    const GgufValue* val = f.find(key);
    return val ? int32_t(val->get_int()) : -1;
  };
  v.bos_id = id("tokenizer.ggml.bos_token_id");
  v.eos_id = id("tokenizer.ggml.eos_token_id");
  v.unk_id = id("tokenizer.ggml.unknown_token_id");
  v.pad_id = id("tokenizer.ggml.padding_token_id");
  v.eot_id = id("tokenizer.ggml.eot_token_id");
  if (const GgufValue* b = f.find("tokenizer.ggml.add_bos_token")) v.add_bos = b->get_bool();
  if (const GgufValue* b = f.find("tokenizer.ggml.add_eos_token")) v.add_eos = b->get_bool();
  if (const GgufValue* c = f.find("tokenizer.chat_template")) v.chat_template = c->get_str();
  try {
    return from_vocab(std::move(v));
  } catch (const Error& e) {
    fail("{}: {}", where, e.what());
  }
}

Tokenizer Tokenizer::from_hf_dir(const std::string& dir, int64_t n_vocab_padded) {
  namespace fs = std::filesystem;
  using nlohmann::json;
  const std::string tj_path = (fs::path(dir) / "tokenizer.json").string();
  if (!fs::exists(tj_path)) {
    if (fs::exists(fs::path(dir) / "tokenizer.model"))
      fail("{}: SentencePiece tokenizer (tokenizer.model, llama.cpp's 'llama' vocab) is not supported yet", dir);
    fail("{}: no tokenizer.json", dir);
  }
  json tj;
  try {
    tj = json::parse(read_file(tj_path));
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", tj_path, e.what());
  }
  json tc = json::object();
  const std::string tc_path = (fs::path(dir) / "tokenizer_config.json").string();
  if (fs::exists(tc_path)) {
    try {
      tc = json::parse(read_file(tc_path));
    } catch (const json::exception& e) {
      fail("{}: invalid JSON: {}", tc_path, e.what());
    }
  }
  try {
    const json& model = tj.at("model");
    const std::string mtype = model.value("type", "");
    if (mtype == "Unigram" || (mtype == "BPE" && model.value("byte_fallback", false))) {
      TokenizerVocab v = spm_vocab_from_json(tj, tc, tj_path, n_vocab_padded);
      finish_hf_vocab(v, tj, tc, dir);
      return from_vocab(std::move(v));
    }
    if (mtype != "BPE")
      fail("{}: tokenizer family '{}' (model.type) is not supported yet; samq implements byte-level BPE and "
           "SentencePiece (BPE with byte_fallback, Unigram)", tj_path, mtype);

    // Pre-tokenizer: Sequence[Split(regex, Isolated), ByteLevel(use_regex=false)].
    TokenizerVocab v;
    const json& pt = tj.value("pre_tokenizer", json());
    std::string family = pt.is_object() ? pt.value("type", "null") : "null";
    const char* pre = nullptr;
    if (family == "Sequence" && pt.contains("pretokenizers")) {
      const json& seq = pt["pretokenizers"];
      if (seq.size() == 2 && seq[0].value("type", "") == "Split" && seq[1].value("type", "") == "ByteLevel" &&
          !seq[1].value("use_regex", true) && seq[0].contains("pattern") && seq[0]["pattern"].contains("Regex"))
        pre = detail::pre_tokenizer_name_for_regex(seq[0]["pattern"]["Regex"].get<std::string>());
      family = "Sequence[";
      for (const auto& p : seq) family += p.value("type", "?") + (p.contains("pattern") ? "(custom regex)" : "") + ",";
      family.back() = ']';
    } else if (family == "ByteLevel") {
      family = "ByteLevel (GPT-2 regex)";
    }
    if (!pre) fail("{}: pre-tokenizer '{}' is not supported yet (samq implements the Llama-3 and Qwen2 regexes)", tj_path, family);
    v.pre = pre;

    // Tokens by id: the BPE vocab, then the added tokens, padded as the converter does.
    const json& jv = model.at("vocab");
    std::vector<std::string> by_id;
    std::vector<uint8_t> present;
    auto put = [&](int64_t id, const std::string& text) {
      if (id < 0 || id > (1 << 24)) fail("{}: token id {} of '{}' out of range", tj_path, id, text);
      if (size_t(id) >= by_id.size()) {
        by_id.resize(size_t(id) + 1);
        present.resize(size_t(id) + 1, 0);
      }
      by_id[size_t(id)] = text;
      present[size_t(id)] = 1;
    };
    for (auto it = jv.begin(); it != jv.end(); ++it) put(it.value().get<int64_t>(), it.key());
    std::vector<int32_t> types;
    std::vector<std::pair<int64_t, bool>> added;  // id, special
    for (const auto& a : tj.value("added_tokens", json::array())) {
      const int64_t id = a.at("id").get<int64_t>();
      put(id, a.at("content").get<std::string>());
      added.emplace_back(id, a.value("special", false));
    }
    if (n_vocab_padded > 0 && by_id.size() > size_t(n_vocab_padded))
      fail("{}: the tokenizer has ids up to {} but config.json's vocab_size is {}", tj_path, by_id.size() - 1, n_vocab_padded);
    const size_t n = std::max<size_t>(by_id.size(), n_vocab_padded > 0 ? size_t(n_vocab_padded) : 0);
    v.tokens.resize(n);
    v.token_types.assign(n, int32_t(TokenType::Normal));
    for (size_t i = 0; i < n; ++i) {
      if (i < by_id.size() && present[i]) {
        v.tokens[i] = by_id[i];
      } else {
        v.tokens[i] = "[PAD" + std::to_string(i) + "]";
        v.token_types[i] = int32_t(TokenType::Unused);
      }
    }
    for (const auto& [id, special] : added) {
      std::string& t = v.tokens[size_t(id)];
      if (special || looks_special(t)) {
        v.token_types[size_t(id)] = int32_t(TokenType::Control);
      } else {
        v.token_types[size_t(id)] = int32_t(TokenType::UserDefined);
        // The converter pre-normalizes user-defined tokens' SentencePiece spaces (U+2581).
        for (size_t p; (p = t.find("\xe2\x96\x81")) != std::string::npos;) t.replace(p, 3, " ");
      }
    }

    // Merges: "a b" strings (old format) or [a, b] pairs (new format).
    for (const auto& m : model.at("merges")) {
      if (m.is_string()) v.merges.push_back(m.get<std::string>());
      else if (m.is_array() && m.size() == 2) v.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      else fail("{}: model.merges entry is neither \"a b\" nor [a, b]", tj_path);
    }

    finish_hf_vocab(v, tj, tc, dir);
    return from_vocab(std::move(v));
  } catch (const json::exception& e) {
    fail("{}: unexpected structure: {}", tj_path, e.what());
  }
}

}  // namespace samq
