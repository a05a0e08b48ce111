// Tokenizer against llama.cpp's ids (../shared/golden/tokenizer, made with llama-tokenize), plus
// round trips, invalid UTF-8, special-token parsing and the GGUF vocab path.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "format/gguf.h"
#include "model/tokenizer.h"
#include "model/tokenizer_pretok.h"

using namespace samq;

namespace {

std::vector<int32_t> read_ids(const std::string& path) {
  std::string s = read_file(path);
  std::vector<int32_t> ids;
  std::string num;
  for (char c : s) {
    if ((c >= '0' && c <= '9') || c == '-') num += c;
    else if (!num.empty()) { ids.push_back(std::stoi(num)); num.clear(); }
  }
  if (!num.empty()) ids.push_back(std::stoi(num));
  return ids;
}

const Tokenizer& ref_tokenizer() {
  static const Tokenizer t = Tokenizer::from_hf_dir(test::shared_path("models/refcode-32m"));
  return t;
}

}  // namespace

TEST(Tokenizer, GoldenIdsMatchLlamaCpp) {
  const auto& tok = ref_tokenizer();
  for (const char* name : {"sample1", "sample2", "sample3"}) {
    const std::string text = read_file(test::shared_path(std::string("golden/tokenizer/") + name + ".txt"));
    const auto want = read_ids(test::shared_path(std::string("golden/tokenizer/") + name + ".ids"));
    EXPECT_EQ(tok.encode(text, false, false), want) << name;
  }
  const std::string s3 = read_file(test::shared_path("golden/tokenizer/sample3.txt"));
  EXPECT_EQ(tok.encode(s3, false, true), read_ids(test::shared_path("golden/tokenizer/sample3.special.ids")));
}

TEST(Tokenizer, VocabFacts) {
  const auto& tok = ref_tokenizer();
  EXPECT_EQ(tok.n_vocab(), 8192);
  EXPECT_EQ(tok.bos(), 0);
  EXPECT_EQ(tok.eos(), 1);
  EXPECT_TRUE(tok.is_eog(1));
  EXPECT_FALSE(tok.is_eog(0));
  EXPECT_TRUE(tok.add_bos_default());
  EXPECT_EQ(tok.vocab().pre, "llama-bpe");
  EXPECT_EQ(tok.vocab().merges.size(), 7934u);
  EXPECT_EQ(tok.token_type(0), TokenType::Control);
  EXPECT_EQ(tok.token_type(2), TokenType::Normal);
  EXPECT_EQ(tok.token_text(2), "!");
  EXPECT_EQ(tok.encode("", true, false), std::vector<int32_t>{0});
  EXPECT_TRUE(tok.encode("", false, false).empty());
}

TEST(Tokenizer, RoundTripValidUtf8) {
  const auto& tok = ref_tokenizer();
  std::vector<std::string> texts = {
      "Hello, world!  It's   a test.\n\n\tTabs\r\nand CRLF   \n",
      "Ünïcödé — “quotes” • ½ € 𝄞 emoji 😀👍🏽 中文字符 日本語 한국어 العربية עברית",
      "numbers 1234567 3.14159 -42 1e10 ١٢٣ ⅣⅫ",
      "   leading and trailing spaces   ",
      "'s 'S 'll 'LL 're 've 'd 'm 't don't WON'T",
      std::string("nul\0byte and \x7f del", 18),
      "\u00a0nbsp\u2003em\u3000ideo\u0085nel\u2028ls",
  };
  for (const auto& t : texts) {
    EXPECT_EQ(tok.decode(tok.encode(t, false, false)), t) << t;
    EXPECT_EQ(tok.decode(tok.encode(t, true, false)), t) << "BOS is not rendered by default";
  }
  // Random valid UTF-8 from a mix of ranges.
  std::mt19937 rng(7);
  const uint32_t ranges[][2] = {{0x20, 0x7e}, {0x9, 0xd}, {0xa0, 0x2ff}, {0x400, 0x4ff}, {0x4e00, 0x4fff}, {0x1f600, 0x1f64f}};
  for (int k = 0; k < 200; ++k) {
    std::string s;
    const int len = int(rng() % 40);
    for (int i = 0; i < len; ++i) {
      const auto& r = ranges[rng() % 6];
      uint32_t cp = r[0] + rng() % (r[1] - r[0] + 1);
      if (cp < 0x80) s += char(cp);
      else if (cp < 0x800) { s += char(0xc0 | (cp >> 6)); s += char(0x80 | (cp & 0x3f)); }
      else if (cp < 0x10000) { s += char(0xe0 | (cp >> 12)); s += char(0x80 | ((cp >> 6) & 0x3f)); s += char(0x80 | (cp & 0x3f)); }
      else { s += char(0xf0 | (cp >> 18)); s += char(0x80 | ((cp >> 12) & 0x3f)); s += char(0x80 | ((cp >> 6) & 0x3f)); s += char(0x80 | (cp & 0x3f)); }
    }
    EXPECT_EQ(tok.decode(tok.encode(s, false, false)), s);
  }
}

TEST(Tokenizer, InvalidUtf8BecomesReplacementCharacter) {
  const auto& tok = ref_tokenizer();
  const std::string fffd = "\xef\xbf\xbd";
  // A lone continuation byte, a truncated 3-byte sequence, a bad lead byte: one U+FFFD per
  // byte that starts no decodable sequence (llama.cpp's unicode_cpts_from_utf8).
  EXPECT_EQ(tok.decode(tok.encode("a\x80z", false, false)), "a" + fffd + "z");
  EXPECT_EQ(tok.decode(tok.encode("x\xe4\xb8y", false, false)), "x" + fffd + fffd + "y");
  EXPECT_EQ(tok.decode(tok.encode("\xff\xfe", false, false)), fffd + fffd);
  EXPECT_EQ(tok.encode("a\x80z", false, false), tok.encode("a" + fffd + "z", false, false));
  // llama.cpp's decoder accepts overlong forms: C1 81 is 'A'.
  std::string out;
  EXPECT_TRUE(detail::clean_utf8("\xc1\x81", out));
  EXPECT_EQ(out, "A");
  EXPECT_FALSE(detail::clean_utf8("plain ascii", out));
}

TEST(Tokenizer, SpecialTokens) {
  const auto& tok = ref_tokenizer();
  const std::string t = "a<|end_of_text|>b<|begin_of_text|>";
  const auto parsed = tok.encode(t, false, true);
  ASSERT_EQ(std::count(parsed.begin(), parsed.end(), 1), 1);
  ASSERT_EQ(std::count(parsed.begin(), parsed.end(), 0), 1);
  const auto plain = tok.encode(t, false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  EXPECT_EQ(tok.decode(parsed, true), t);
  EXPECT_EQ(tok.decode(parsed, false), "ab");
  EXPECT_EQ(tok.decode(plain), t);
}

TEST(Tokenizer, FromGgufVocabEqualsFromHf) {
  const auto& hf = ref_tokenizer();
  const std::string dir = test::temp_dir();
  const std::string path = dir + "/vocab.gguf";
  {
    GgufWriter w(path);
    const auto& v = hf.vocab();
    w.set_str("general.architecture", "llama");
    w.set_str("tokenizer.ggml.model", v.model);
    w.set_str("tokenizer.ggml.pre", v.pre);
    w.set_arr_str("tokenizer.ggml.tokens", v.tokens);
    w.set_arr_i32("tokenizer.ggml.token_type", v.token_types);
    w.set_arr_str("tokenizer.ggml.merges", v.merges);
    w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(v.bos_id));
    w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(v.eos_id));
    w.write_header();
    w.finish();
  }
  const GgufFile f = GgufFile::open(path);
  const Tokenizer g = Tokenizer::from_gguf(f);
  EXPECT_EQ(g.n_vocab(), hf.n_vocab());
  const std::string text = read_file(test::shared_path("golden/tokenizer/sample1.txt"));
  EXPECT_EQ(g.encode(text, true, false), hf.encode(text, true, false));
}

TEST(Tokenizer, PaddedVocab) {
  const Tokenizer t = Tokenizer::from_hf_dir(test::shared_path("models/refcode-32m"), 8256);
  EXPECT_EQ(t.n_vocab(), 8256);
  EXPECT_EQ(t.token_text(8200), "[PAD8200]");
  EXPECT_EQ(t.token_type(8200), TokenType::Unused);
  EXPECT_EQ(t.token_to_piece(8200), "");
}

TEST(Tokenizer, UnsupportedFamiliesNameTheFamily) {
  const std::string dir = test::temp_dir();
  write_file_atomic(dir + "/tokenizer.json",
                    R"({"model": {"type": "WordPiece", "vocab": {}}, "pre_tokenizer": null, "added_tokens": []})");
  try {
    Tokenizer::from_hf_dir(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("WordPiece"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not supported yet"), std::string::npos) << e.what();
  }
  write_file_atomic(dir + "/tokenizer.json",
                    R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                        "pre_tokenizer": {"type": "Metaspace"}, "added_tokens": []})");
  try {
    Tokenizer::from_hf_dir(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Metaspace"), std::string::npos) << e.what();
  }
  TokenizerVocab v;
  v.model = "t5";  // llama.cpp's UGM vocab (SentencePiece "llama" is supported: test_tokenizer_spm.cpp)
  v.tokens = {"a"};
  EXPECT_THROW(Tokenizer::from_vocab(v), Error);
}

TEST(Tokenizer, Utf8CompletePrefix) {
  EXPECT_EQ(utf8_complete_prefix("abc"), 3u);
  EXPECT_EQ(utf8_complete_prefix("ab\xe4\xb8"), 2u);
  EXPECT_EQ(utf8_complete_prefix("ab\xe4\xb8\xad"), 5u);
  EXPECT_EQ(utf8_complete_prefix("\xf0\x9f\x98"), 0u);
}

// Throughput on the evaluation text (printed; the fast-suite budget is a loose bound).
TEST(Tokenizer, Throughput) {
  const std::string path = test::shared_path("data/eval.txt");
  std::string text = read_file(path).substr(0, 400000);
  const Tokenizer tok = Tokenizer::from_hf_dir(test::shared_path("models/refcode-32m"));  // cold cache
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok.encode(text, true, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("tokenizer: %zu bytes -> %zu tokens in %.3f s (%.0f tokens/s, %.1f MB/s)\n", text.size(), ids.size(), s,
              double(ids.size()) / s, double(text.size()) / s / 1e6);
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_LT(s, 5.0);
}

// encode() is called from several server threads at once; the shared pre-token cache must not
// change results.
TEST(Tokenizer, ConcurrentEncodeIsDeterministic) {
  const Tokenizer tok = Tokenizer::from_hf_dir(test::shared_path("models/refcode-32m"));
  const std::string text = read_file(test::shared_path("data/calib.txt")).substr(0, 60000);
  const auto want = tok.encode(text, true, false);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      // Different offsets so the threads fill and hit the cache in different orders.
      for (int r = 0; r < 3; ++r) got[size_t(k)] = tok.encode(text, true, false);
      (void)tok.encode(text.substr(size_t(k) * 1000), false, false);
    });
  for (auto& t : threads) t.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

// The vocab arrays of a GGUF written by llama.cpp itself (the Q4_K_M anchor) give the golden ids.
TEST(Tokenizer, FromLlamaCppGgufMatchesGolden) {
  const GgufFile f = GgufFile::open(test::shared_path("golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf"));
  const Tokenizer tok = Tokenizer::from_gguf(f);
  EXPECT_EQ(tok.vocab().pre, "llama-bpe");
  for (const char* name : {"sample1", "sample2", "sample3"}) {
    const std::string text = read_file(test::shared_path(std::string("golden/tokenizer/") + name + ".txt"));
    EXPECT_EQ(tok.encode(text, false, false), read_ids(test::shared_path(std::string("golden/tokenizer/") + name + ".ids")))
        << name;
  }
  const std::string s3 = read_file(test::shared_path("golden/tokenizer/sample3.txt"));
  EXPECT_EQ(tok.encode(s3, false, true), read_ids(test::shared_path("golden/tokenizer/sample3.special.ids")));
}

// Arbitrary bytes (invalid UTF-8, overlong forms, surrogates, code points above U+10FFFF) never
// throw, and decoding gives back exactly llama.cpp's cleaned text.
TEST(Tokenizer, RandomBytesRoundTripThroughCleaning) {
  const auto& tok = ref_tokenizer();
  std::mt19937 rng(11);
  const uint8_t interesting[] = {0x00, 0x20, 0x0a, 'a', 'Z', '1', '\'', 0x80, 0xbf, 0xc0, 0xc1, 0xc3, 0xe0, 0xed,
                                 0xa0, 0xef, 0xf0, 0xf4, 0xf5, 0xf7, 0xf8, 0xff, 0x8f, 0x9f};
  for (int k = 0; k < 500; ++k) {
    std::string s;
    const int len = int(rng() % 24);
    for (int i = 0; i < len; ++i)
      s += char(rng() % 2 ? interesting[rng() % sizeof interesting] : uint8_t(rng() % 256));
    std::string cleaned;
    detail::clean_utf8(s, cleaned);
    std::vector<int32_t> ids;
    ASSERT_NO_THROW(ids = tok.encode(s, false, false)) << k;
    EXPECT_EQ(tok.decode(ids), cleaned) << k;
  }
}
