// samq's tokenizer against ids recorded from llama.cpp (node-llama-cpp 3.22.1) on more text than
// the shared goldens: slices of ../shared/data/*.txt and Unicode edge cases (combining marks,
// emoji sequences, CJK punctuation, exotic whitespace and digits, special-token strings), with
// the llama-bpe pre-tokenizer and (cases with "pre": "qwen2") with the Qwen2 one.
// tests/node/convert_interop.test.mjs records tests/data/llamacpp/tokenizer-fixture.json and
// re-checks it against llama.cpp on every run.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "model/tokenizer.h"

using namespace samq;

TEST(TokenizerLlamaCpp, RecordedIdsMatch) {
  const auto fx = nlohmann::json::parse(read_file(test::source_path("tests/data/llamacpp/tokenizer-fixture.json")));
  const Tokenizer tok = Tokenizer::from_hf_dir(test::shared_path("models/refcode-32m"));
  // The same vocab with the Qwen2 pre-tokenizer (llama.cpp's `qwen2`: single digits).
  TokenizerVocab qv = tok.vocab();
  qv.pre = "qwen2";
  const Tokenizer qwen2 = Tokenizer::from_vocab(qv);
  ASSERT_GE(fx["cases"].size(), 10u);
  size_t n_qwen2 = 0;
  size_t tokens = 0;
  for (const auto& c : fx["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const bool special = c["special"].get<bool>();
    const auto want = c["ids"].get<std::vector<int32_t>>();
    const bool is_qwen2 = c.value("pre", "") == "qwen2";
    n_qwen2 += is_qwen2;
    const auto got = (is_qwen2 ? qwen2 : tok).encode(text, false, special);
    tokens += want.size();
    if (got != want) {
      size_t i = 0;
      while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
      ADD_FAILURE() << c["label"].get<std::string>() << " (special=" << special << ", pre=" << c.value("pre", "llama-bpe")
                    << "): first difference at token " << i;
    }
    if (!special) EXPECT_EQ(tok.decode(got), text) << c["label"].get<std::string>();
  }
  EXPECT_GE(n_qwen2, 5u);
  std::printf("compared %zu llama.cpp tokens\n", tokens);
}

// The prompts of the greedy fixture (what the engine tests feed) tokenize as llama.cpp did,
// BOS included as llama.cpp adds it for llama-bpe.
TEST(TokenizerLlamaCpp, GreedyFixturePromptIds) {
  const auto fx = nlohmann::json::parse(read_file(test::source_path("tests/data/llamacpp/greedy-fixture.json")));
  const Tokenizer tok = Tokenizer::from_hf_dir(test::shared_path("models/refcode-32m"));
  ASSERT_TRUE(tok.add_bos_default());
  int n = 0;
  for (const auto& [name, m] : fx["models"].items())
    for (const auto& c : m["cases"]) {
      EXPECT_EQ(tok.encode(c["prompt"].get<std::string>(), true, false), c["prompt_ids"].get<std::vector<int32_t>>())
          << name;
      ++n;
    }
  EXPECT_GE(n, 2);
}
