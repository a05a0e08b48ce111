// serve/text_stream.h — from token pieces to the text a client may see, incrementally:
// - stop sequences: generation ends at the first occurrence of any of them, and neither it
//   nor anything after it is returned (as OpenAI does);
// - text that might still become a stop sequence, and an incomplete UTF-8 character at the
//   end, are held back until the next piece decides them.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace samq::serve {

class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop = {});
  // Appends a piece; returns the text that is now safe to send. After a stop sequence is
  // seen, stopped() is true and further pushes return "".
  std::string push(std::string_view piece);
  // Generation ended without a stop sequence: returns whatever is held back.
  std::string finish();
  bool stopped() const { return stopped_; }
  const std::string& emitted() const { return emitted_; }

 private:
  std::vector<std::string> stop_;
  std::string pending_, emitted_;
  bool stopped_ = false;
};

// Bytes at the end of s that begin a UTF-8 character not yet complete (0..3).
size_t incomplete_utf8_tail(std::string_view s);

}  // namespace samq::serve
