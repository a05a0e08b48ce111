// libFuzzer target: the OpenAI request parser of samq serve (serve/openai_api.cpp) on arbitrary
// bytes, as completion and as chat (both built-in templates). A body must parse or be refused with
// an ApiError of status 400 naming no internals; any other exception, crash or sanitizer report is
// a bug (it would be a 500 or a dead process for a client's input).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "serve/openai_api.h"

namespace {
template <class F>
void expect_api_error_only(F&& f) {
  try {
    f();
  } catch (const samq::serve::ApiError& e) {
    if (e.status != 400) std::abort();
    if (std::string(e.what()).find("json.exception") != std::string::npos) std::abort();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  expect_api_error_only([&] { samq::serve::parse_completion_request(body, true); });
  expect_api_error_only([&] { samq::serve::parse_chat_request(body, "chatml", true); });
  expect_api_error_only([&] {
    auto r = samq::serve::parse_chat_request(body, "llama3", false);
    // The prompt is the parts joined; content parts never count as template text.
    std::string joined;
    for (auto& p : r.gen.parts) joined += p.text;
    if (joined != r.gen.prompt) std::abort();
  });
  return 0;
}
