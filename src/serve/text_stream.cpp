#include "serve/text_stream.h"

#include <algorithm>

namespace samq::serve {

size_t incomplete_utf8_tail(std::string_view s) {
  // Walk back over at most 3 continuation bytes to the lead byte and see if it is complete.
  const size_t n = s.size();
  for (size_t back = 1; back <= std::min<size_t>(4, n); ++back) {
    const unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte
    size_t need = 1;
    if ((c & 0xE0) == 0xC0) need = 2;
    else if ((c & 0xF0) == 0xE0) need = 3;
    else if ((c & 0xF8) == 0xF0) need = 4;
    return need > back ? back : 0;
  }
  return 0;  // only continuation bytes (invalid): do not hold them
}

TextStream::TextStream(std::vector<std::string> stop) {
  for (auto& s : stop)
    if (!s.empty()) stop_.push_back(std::move(s));
}

std::string TextStream::push(std::string_view piece) {
  if (stopped_) return "";
  pending_.append(piece);
  size_t first = std::string::npos;
  for (auto& s : stop_) first = std::min(first, pending_.find(s));
  if (first != std::string::npos) {
    std::string out = pending_.substr(0, first);
    pending_.clear();
    stopped_ = true;
    emitted_ += out;
    return out;
  }
  // Hold back the longest suffix of pending_ that is a proper prefix of a stop sequence.
  size_t hold = 0;
  for (auto& s : stop_)
    for (size_t k = std::min(s.size() - 1, pending_.size()); k > hold; --k)
      if (std::string_view(pending_).substr(pending_.size() - k) == std::string_view(s).substr(0, k)) {
        hold = k;
        break;
      }
  hold = std::max(hold, incomplete_utf8_tail(pending_));
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  emitted_ += out;
  return out;
}

std::string TextStream::finish() {
  if (stopped_) return "";
  std::string out = std::move(pending_);
  pending_.clear();
  emitted_ += out;
  return out;
}

}  // namespace samq::serve
