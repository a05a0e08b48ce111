// serve/openai_api.h — OpenAI's request and response shapes for /v1/completions and
// /v1/chat/completions: strict parameter validation (400 with the offending `param`), response
// objects, streaming chunks, and error objects {"error": {message, type, param, code}}.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "serve/request.h"

namespace samq::serve {

enum class ApiKind { Completion, Chat };

struct ApiRequest {
  ApiKind kind = ApiKind::Completion;
  std::string model;          // as the client named it (echoed back)
  bool stream = false;
  bool include_usage = false; // stream_options.include_usage
  int n = 1;                  // choices, each generated as its own request (seed + index)
  GenRequest gen;
};

// What one choice produced.
struct ChoiceResult {
  std::string text, finish_reason;
  std::vector<LogprobEntry> logprobs;
};

// The fields a request may carry; any other one gets 400 naming it (nothing is silently
// ignored). Exposed for tests and the README.
const std::vector<std::string>& accepted_fields(ApiKind kind);
constexpr int kMaxChoices = 8;  // n

// Parses and validates a request body. chat_template: "llama3" or "chatml". Throws ApiError(400).
ApiRequest parse_completion_request(const std::string& body, bool model_adds_bos);
ApiRequest parse_chat_request(const std::string& body, const std::string& chat_template, bool model_adds_bos);

nlohmann::json error_object(int status, const std::string& type, const std::string& code,
                            const std::string& message, const std::string& param = "");
nlohmann::json error_object(const ApiError& e);
// OpenAI's "type" for a status without a more specific one.
std::string error_type_for_status(int status);

// Response builders. id: "cmpl-..."/"chatcmpl-..."; created: unix seconds.
struct ResponseMeta {
  std::string id, model;
  int64_t created = 0;
  // "samq:<backend>": who generated this chunk (or, for a whole response, who finished it);
  // differs from the x-samq-served-by header after a mid-request switch to the fallback.
  std::string fingerprint = "samq";
};
nlohmann::json completion_response(const ApiRequest& r, const ResponseMeta& m, const std::string& text,
                                   const std::string& finish_reason, const Usage& u);
nlohmann::json completion_response(const ApiRequest& r, const ResponseMeta& m, const std::vector<ChoiceResult>& choices,
                                   const Usage& u);
// One streaming chunk. For chat, role_chunk=true makes the opening {"role":"assistant"} delta.
// finish_reason empty → null. usage chunk: choices [] and "usage". lp: the logprobs of this
// chunk's tokens (when asked for); text_offset: where this chunk's text starts in the choice.
nlohmann::json stream_chunk(const ApiRequest& r, const ResponseMeta& m, const std::string& text,
                            const std::string& finish_reason, bool role_chunk = false, int index = 0,
                            const std::vector<LogprobEntry>* lp = nullptr, size_t text_offset = 0);
// OpenAI's logprobs object of a choice: {tokens, token_logprobs, top_logprobs, text_offset}
// for completions, {content: [{token, logprob, bytes, top_logprobs}], refusal} for chat.
nlohmann::json logprobs_json(const ApiRequest& r, const std::vector<LogprobEntry>& lp, size_t text_offset = 0);
nlohmann::json usage_chunk(const ApiRequest& r, const ResponseMeta& m, const Usage& u);
nlohmann::json usage_json(const Usage& u);

// JSON text that never throws on invalid UTF-8 from the model (replaced by U+FFFD).
std::string dump_json(const nlohmann::json& j);
std::string new_request_id(ApiKind kind);

}  // namespace samq::serve
