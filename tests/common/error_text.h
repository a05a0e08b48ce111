// For tests of error messages: the text of the samq::Error a call throws, and an expectation
// that a message names every one of several fragments.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"

namespace samq::test {

// what() of the samq::Error that fn() throws, or "<no error>" when it returns normally.
template <typename F>
std::string error_text(F&& fn) {
  try {
    fn();
  } catch (const samq::Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace samq::test

// EXPECTs each C-string fragment of ... in the message msg_expr (evaluated once).
#define SAMQ_EXPECT_MESSAGE_HAS(msg_expr, ...)                                                   \
  do {                                                                                           \
    const std::string samq_msg_ = (msg_expr);                                                    \
    for (const char* samq_s_ : {__VA_ARGS__})                                                    \
      EXPECT_NE(samq_msg_.find(samq_s_), std::string::npos) << "want '" << samq_s_ << "' in: " << samq_msg_; \
  } while (0)
