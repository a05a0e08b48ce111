// Stop sequences and UTF-8 hold-back, checked against the whole-string answer computed
// directly (first occurrence of any stop string in the concatenated text).
#include <gtest/gtest.h>

#include "serve/text_stream.h"

using namespace samq::serve;

namespace {
std::string run(std::vector<std::string> pieces, std::vector<std::string> stop, bool* stopped = nullptr) {
  TextStream ts(stop);
  std::string out;
  for (auto& p : pieces) out += ts.push(p);
  out += ts.finish();
  if (stopped) *stopped = ts.stopped();
  return out;
}
std::string oracle(const std::vector<std::string>& pieces, const std::vector<std::string>& stop) {
  std::string all;
  for (auto& p : pieces) all += p;
  size_t first = std::string::npos;
  for (auto& s : stop) first = std::min(first, all.find(s));
  return first == std::string::npos ? all : all.substr(0, first);
}
}  // namespace

TEST(TextStream, StopAcrossPieces) {
  std::vector<std::vector<std::string>> cases = {
      {"Hel", "lo wo", "rld"}, {"a", "b", "<|", "im_", "end|>", "x"}, {"ab", "c<|im", "_start"}, {"xx", "y"}, {"END"}};
  std::vector<std::string> stop = {"<|im_end|>", "wor", "END", "c<|im_s"};
  for (auto& c : cases) {
    bool st = false;
    EXPECT_EQ(run(c, stop, &st), oracle(c, stop));
  }
}

TEST(TextStream, HoldsBackOnlyWhatMightStop) {
  TextStream ts({"STOP"});
  EXPECT_EQ(ts.push("abc S"), "abc ");
  EXPECT_EQ(ts.push("T"), "");
  EXPECT_EQ(ts.push("x"), "STx");
  EXPECT_EQ(ts.push("ST"), "");
  EXPECT_EQ(ts.push("OP and more"), "");
  EXPECT_TRUE(ts.stopped());
  EXPECT_EQ(ts.emitted(), "abc STx");
}

TEST(TextStream, Utf8SplitAcrossPieces) {
  const std::string euro = "\xE2\x82\xAC";  // U+20AC, 3 bytes
  TextStream ts;
  EXPECT_EQ(ts.push("a\xE2"), "a");
  EXPECT_EQ(ts.push("\x82"), "");
  EXPECT_EQ(ts.push("\xAC" "b"), euro + "b");
  EXPECT_EQ(incomplete_utf8_tail("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(incomplete_utf8_tail("\xF0\x9F\x98\x80"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("ab"), 0u);
}
