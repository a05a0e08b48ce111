// samq::Error — the one exception type of samq. Messages name the file, field or request
// and (for binary formats) the byte offset, so a user can act on them.
#pragma once
#include <stdexcept>
#include <string>
#include <fmt/format.h>

namespace samq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace samq
