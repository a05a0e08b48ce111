// samq's tokenizer against ids recorded from llama.cpp (node-llama-cpp 3.22.1) on more text than
// the shared goldens: slices of ../shared/data/*.txt and Unicode edge cases (combining marks,
// emoji sequences, CJK punctuation, exotic whitespace and digits, special-token strings).
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
  ASSERT_GE(fx["cases"].size(), 10u);
  size_t tokens = 0;
  for (const auto& c : fx["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const bool special = c["special"].get<bool>();
    const auto want = c["ids"].get<std::vector<int32_t>>();
    const auto got = tok.encode(text, false, special);
    tokens += want.size();
    if (got != want) {
      size_t i = 0;
      while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
      ADD_FAILURE() << c["label"].get<std::string>() << " (special=" << special << "): first difference at token " << i;
    }
    if (!special) EXPECT_EQ(tok.decode(got), text) << c["label"].get<std::string>();
  }
  std::printf("compared %zu llama.cpp tokens\n", tokens);
}
