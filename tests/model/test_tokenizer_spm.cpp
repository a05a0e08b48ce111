// SentencePiece ("llama" vocab) tokenizer: the rules of llama.cpp's SPM path on hand-made vocabs
// (score order, leftmost ties, byte fallback, raw invalid UTF-8, the space prefix after special
// tokens, user-defined vs control tokens), and loading tests/data/spm (tokenizer.json in the BPE
// with byte_fallback and the Unigram forms). llama.cpp itself is the oracle in
// tests/node/spm_interop.test.mjs; the raw invalid-UTF-8 cases are here because node strings
// cannot carry such bytes to llama.cpp.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/test_env.h"
#include "core/error.h"
#include "model/tokenizer.h"

using namespace samq;

namespace {

const std::string SP = "\xe2\x96\x81";  // U+2581

// <unk> <s> </s> <0x00>..<0xFF> (ids 3..258), then `pieces` with their scores, then [CTL]
// (control) and <u> (user-defined).
Tokenizer make(const std::vector<std::pair<std::string, float>>& pieces, bool prefix) {
  TokenizerVocab v;
  v.model = "llama";
  v.pre = "default";
  auto add = [&](std::string t, float s, TokenType type) {
    v.tokens.push_back(std::move(t));
    v.scores.push_back(s);
    v.token_types.push_back(int32_t(type));
  };
  add("<unk>", 0, TokenType::Unknown);
  add("<s>", 0, TokenType::Control);
  add("</s>", 0, TokenType::Control);
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), 0, TokenType::Byte);
  for (const auto& [t, s] : pieces) add(t, s, TokenType::Normal);
  add("[CTL]", 0, TokenType::Control);
  add("<u>", 0, TokenType::UserDefined);
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  v.add_space_prefix = prefix;
  return Tokenizer::from_vocab(v);
}

constexpr int32_t kByte0 = 3;  // id of <0x00>
constexpr int32_t kP = 259;    // id of the first piece

}  // namespace

TEST(TokenizerSpm, HighestScoreFirstLeftmostOnTies) {
  // pieces: a b c ab bc
  {
    const Tokenizer t = make({{"a", -10}, {"b", -10}, {"c", -10}, {"ab", -2}, {"bc", -1}}, false);
    EXPECT_EQ(t.encode("abc", false, false), (std::vector<int32_t>{kP + 0, kP + 4}));  // bc wins
  }
  {
    const Tokenizer t = make({{"a", -10}, {"b", -10}, {"c", -10}, {"ab", -1}, {"bc", -1}}, false);
    EXPECT_EQ(t.encode("abc", false, false), (std::vector<int32_t>{kP + 3, kP + 2}));  // tie: leftmost
  }
  {
    // "abc" is reached from a+bc although no rule says so: concatenation lookup, as llama.cpp.
    const Tokenizer t = make({{"a", -10}, {"b", -10}, {"c", -10}, {"bc", -1}, {"abc", -5}}, false);
    EXPECT_EQ(t.encode("abc", false, false), (std::vector<int32_t>{kP + 4}));
  }
}

TEST(TokenizerSpm, ByteFallbackAndInvalidUtf8) {
  const Tokenizer t = make({{"a", -1}, {SP, -1}}, false);
  EXPECT_EQ(t.encode("z", false, false), (std::vector<int32_t>{kByte0 + 'z'}));
  EXPECT_EQ(t.encode("\xc3\xa9", false, false), (std::vector<int32_t>{kByte0 + 0xc3, kByte0 + 0xa9}));  // é
  // Invalid UTF-8 is not replaced by U+FFFD: a lead byte takes the next byte whatever it is,
  // so "\xc3" + "a" is one symbol, not a token, emitted as two bytes (the "a" is not seen alone).
  EXPECT_EQ(t.encode("\xc3" "a", false, false), (std::vector<int32_t>{kByte0 + 0xc3, kByte0 + 'a'}));
  EXPECT_EQ(t.encode("\x80" "a\xff", false, false), (std::vector<int32_t>{kByte0 + 0x80, kP, kByte0 + 0xff}));
  EXPECT_EQ(t.encode("a\xe2\x96", false, false), (std::vector<int32_t>{kP, kByte0 + 0xe2, kByte0 + 0x96}));  // clipped
  // Decoding: byte pieces become bytes, U+2581 a space.
  EXPECT_EQ(t.decode({kByte0 + 0xc3, kByte0 + 0xa9, kP + 1, kP}), "\xc3\xa9 a");
}

TEST(TokenizerSpm, SpacePrefixAndSpecialTokens) {
  const Tokenizer t = make({{"a", -5}, {"b", -5}, {SP, -5}, {SP + "a", -1}, {SP + "b", -1}}, true);
  const int32_t a = kP, b = kP + 1, sp = kP + 2, spa = kP + 3, spb = kP + 4, ctl = kP + 5, u = kP + 6;
  EXPECT_EQ(t.encode("a b", false, false), (std::vector<int32_t>{spa, spb}));
  EXPECT_EQ(t.encode("a b", true, false), (std::vector<int32_t>{1, spa, spb}));
  EXPECT_EQ(t.encode("", false, false), std::vector<int32_t>{});
  EXPECT_EQ(t.encode(" ", false, false), (std::vector<int32_t>{sp, sp}));
  // A special token resets the prefix: " " before the next raw fragment.
  EXPECT_EQ(t.encode("a[CTL]b", false, true), (std::vector<int32_t>{spa, ctl, spb}));
  // Control tokens are text without parse_special; user-defined ones are always matched.
  const auto plain = t.encode("[CTL]", false, false);
  EXPECT_TRUE(std::find(plain.begin(), plain.end(), ctl) == plain.end());
  EXPECT_EQ(t.encode("a<u>b", false, false), (std::vector<int32_t>{spa, u, spb}));
  EXPECT_EQ(t.encode("<u>", false, false), (std::vector<int32_t>{u}));
  EXPECT_EQ(t.encode("<s>a", false, true), (std::vector<int32_t>{1, spa}));
  EXPECT_EQ(t.decode({spa, u, spb, 2}), " a<u> b");
  EXPECT_EQ(t.decode({spa, 2}, true), " a</s>");
  EXPECT_TRUE(t.add_bos_default());
  // Without the prefix (Gemma-like).
  const Tokenizer np = make({{"a", -5}, {"b", -5}, {SP, -5}, {SP + "a", -1}, {SP + "b", -1}}, false);
  EXPECT_EQ(np.encode("a b", false, false), (std::vector<int32_t>{a, spb}));
  EXPECT_EQ(np.encode("b[CTL]a", false, true), (std::vector<int32_t>{b, ctl, a}));
}

TEST(TokenizerSpm, LoadsTokenizerJsonForms) {
  for (const char* form : {"bpe", "unigram"}) {
    SCOPED_TRACE(form);
    const std::string dir = test::source_path(std::string("tests/data/spm/") + form);
    ASSERT_TRUE(std::filesystem::exists(dir + "/tokenizer.json")) << "fixture missing: scripts/make_spm_fixture.py";
    const Tokenizer t = Tokenizer::from_hf_dir(dir, 4000);
    const TokenizerVocab& v = t.vocab();
    EXPECT_EQ(v.model, "llama");
    EXPECT_EQ(v.pre, "default");
    ASSERT_EQ(v.tokens.size(), 4000u);
    ASSERT_EQ(v.scores.size(), 4000u);
    EXPECT_TRUE(v.merges.empty());
    EXPECT_EQ(v.bos_id, 1);
    EXPECT_EQ(v.eos_id, 2);
    EXPECT_EQ(v.unk_id, 0);
    EXPECT_EQ(v.add_bos, true);
    EXPECT_EQ(v.add_eos, false);
    EXPECT_EQ(v.add_space_prefix, true);
    EXPECT_EQ(t.token_type(0), TokenType::Unknown);
    EXPECT_EQ(t.token_type(1), TokenType::Control);
    EXPECT_EQ(t.token_type(3), TokenType::Byte);
    EXPECT_EQ(t.token_type(258), TokenType::Byte);
    EXPECT_EQ(t.token_type(t.token_id("[INST]")), TokenType::Control);
    EXPECT_EQ(t.token_type(t.token_id("<tool>")), TokenType::UserDefined);
    EXPECT_EQ(t.token_type(3999), TokenType::Unused);
    EXPECT_EQ(v.tokens[3999], "[PAD3999]");
    EXPECT_EQ(v.scores[3999], -1000.0f);
    // BPE: scores follow the merge order (a merged piece outranks single characters); Unigram:
    // the file's log-probabilities as they are.
    const int32_t the = t.token_id(SP + "the");
    ASSERT_GE(the, 0);
    if (std::string(form) == "bpe") EXPECT_GT(v.scores[size_t(the)], v.scores[size_t(t.token_id("h"))]);
    else EXPECT_LT(v.scores[size_t(the)], 0.0f);
    const std::string text = "def __init__(self, x):\n    return x  # é 😀\t[INST] <tool>";
    const auto ids = t.encode(text, false, false);
    EXPECT_EQ(t.decode(ids), " " + text);  // the prefix space; [INST] as text, byte fallback for 😀
    EXPECT_LT(ids.size(), text.size() / 2);
    // The same vocab rebuilt from its arrays (what a GGUF holds) tokenizes the same.
    EXPECT_EQ(Tokenizer::from_vocab(v).encode(text, true, true), t.encode(text, true, true));
  }
}

TEST(TokenizerSpm, RejectsBadVocab) {
  TokenizerVocab v;
  v.model = "llama";
  v.tokens = {"<unk>", "a"};
  v.scores = {0.0f};
  EXPECT_THROW(Tokenizer::from_vocab(v), Error);
  v.model = "ugm";
  v.scores = {0.0f, 0.0f};
  EXPECT_THROW(Tokenizer::from_vocab(v), Error);
}
