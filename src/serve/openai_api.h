// serve/openai_api.h — OpenAI's request and response shapes for /v1/completions and
// /v1/chat/completions: strict parameter validation (400 with the offending `param`), response
// objects, streaming chunks, and error objects {"error": {message, type, param, code}}.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "serve/request.h"

namespace samq::serve {

enum class ApiKind { Completion, Chat };

struct ApiRequest {
  ApiKind kind = ApiKind::Completion;
  std::string model;          // as the client named it (echoed back)
  bool stream = false;
  bool include_usage = false; // stream_options.include_usage
  GenRequest gen;
};

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
// One streaming chunk. For chat, role_chunk=true makes the opening {"role":"assistant"} delta.
// finish_reason empty → null. usage chunk: choices [] and "usage".
nlohmann::json stream_chunk(const ApiRequest& r, const ResponseMeta& m, const std::string& text,
                            const std::string& finish_reason, bool role_chunk = false);
nlohmann::json usage_chunk(const ApiRequest& r, const ResponseMeta& m, const Usage& u);
nlohmann::json usage_json(const Usage& u);

// JSON text that never throws on invalid UTF-8 from the model (replaced by U+FFFD).
std::string dump_json(const nlohmann::json& j);
std::string new_request_id(ApiKind kind);

}  // namespace samq::serve
