#include "serve/openai_api.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <random>

#include <fmt/format.h>

#include "serve/chat_template.h"

namespace samq::serve {

using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& msg) {
  throw ApiError(400, "invalid_request_error", param.empty() ? "invalid_request" : "invalid_value", msg, param);
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    default: return "number";
  }
}

// The key before the first number literal too large for a double ("" when none is found).
std::string overflow_key(const std::string& body) {
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c == '"') {  // skip strings
      for (++i; i < body.size() && body[i] != '"'; ++i)
        if (body[i] == '\\') ++i;
      continue;
    }
    if (!(c == '-' || (c >= '0' && c <= '9'))) continue;
    size_t j = i;
    while (j < body.size() && std::string_view("+-0123456789.eE").find(body[j]) != std::string_view::npos) ++j;
    const std::string lit = body.substr(i, j - i);
    errno = 0;
    const double v = std::strtod(lit.c_str(), nullptr);
    if (!std::isfinite(v) || errno == ERANGE) {
      // Back to the ':' and the quoted key before it.
      size_t k = body.rfind(':', i);
      if (k == std::string::npos) return "";
      const size_t qe = body.rfind('"', k), qs = qe == std::string::npos || qe == 0 ? std::string::npos : body.rfind('"', qe - 1);
      if (qs == std::string::npos) return "";
      return body.substr(qs + 1, std::min<size_t>(qe - qs - 1, 64));
    }
    i = j;
  }
  return "";
}

json parse_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    // Position only: nlohmann's text names its internals ("[json.exception.parse_error.101]").
    throw ApiError(400, "invalid_request_error", "invalid_json",
                   fmt::format("We could not parse the JSON body of your request (syntax error near byte {}). "
                               "JSON has no NaN or Infinity; numbers must be finite.", e.byte));
  } catch (const json::out_of_range&) {
    // A number beyond double (1e400): name the key it belongs to.
    throw ApiError(400, "invalid_request_error", "invalid_value",
                   "A number in the request is out of range (it must be a finite double).", overflow_key(body));
  }
  if (!j.is_object())
    throw ApiError(400, "invalid_request_error", "invalid_json",
                   std::string("The request body must be a JSON object, not ") + type_name(j));
  return j;
}

// Optional number in [lo, hi]; absent or null → dflt.
double get_number(const json& j, const char* key, double dflt, double lo, double hi) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_number())
    bad(key, fmt::format("Invalid type for '{}': expected a number, but got {}.", key, type_name(*it)));
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi)
    bad(key, fmt::format("Invalid value for '{}': {} is not in [{}, {}].", key, v, lo, hi));
  return v;
}

std::optional<int64_t> get_int(const json& j, const char* key, int64_t lo, int64_t hi) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer() && !it->is_number_unsigned())
    bad(key, fmt::format("Invalid type for '{}': expected an integer, but got {}.", key,
                         it->is_number() ? "a non-integer number" : type_name(*it)));
  const int64_t v = it->is_number_unsigned() ? int64_t(std::min<uint64_t>(it->get<uint64_t>(), INT64_MAX))
                                             : it->get<int64_t>();
  if (v < lo || v > hi) bad(key, fmt::format("Invalid value for '{}': {} is not in [{}, {}].", key, v, lo, hi));
  return v;
}

bool get_bool(const json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_boolean())
    bad(key, fmt::format("Invalid type for '{}': expected a boolean, but got {}.", key, type_name(*it)));
  return it->get<bool>();
}

// Fields OpenAI defines that samq does not implement: named as such.
const char* const kUnsupported[] = {"user", "store", "metadata", "service_tier", "audio", "modalities", "prediction",
                                    "reasoning_effort", "web_search_options", "functions", "function_call",
                                    "tool_choice", "parallel_tool_calls", "logprobs_mode", "verbosity"};

void check_fields(const json& j, ApiKind kind) {
  const auto& ok = accepted_fields(kind);
  for (auto& [k, v] : j.items()) {
    if (std::find(ok.begin(), ok.end(), k) != ok.end()) continue;
    const std::string key = k.substr(0, 64);
    for (const char* u : kUnsupported)
      if (k == u) bad(key, fmt::format("'{}' is not supported by this server.", key));
    bad(key, fmt::format("Unrecognized request argument supplied: {}", key));
  }
}

void parse_common(const json& j, ApiRequest& r) {
  check_fields(j, r.kind);
  if (auto it = j.find("model"); it != j.end()) {
    if (!it->is_string()) bad("model", fmt::format("Invalid type for 'model': expected a string, but got {}.", type_name(*it)));
    r.model = it->get<std::string>();
  }
  r.stream = get_bool(j, "stream", false);
  if (auto it = j.find("stream_options"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) bad("stream_options", "Invalid type for 'stream_options': expected an object.");
    if (!r.stream) bad("stream_options", "'stream_options' is only allowed when 'stream' is true.");
    r.include_usage = get_bool(*it, "include_usage", false);
  }
  auto& s = r.gen.sampling;
  s.temperature = float(get_number(j, "temperature", 1.0, 0.0, 2.0));
  s.top_p = float(get_number(j, "top_p", 1.0, 0.0, 1.0));
  if (s.top_p <= 0.0f) bad("top_p", "Invalid value for 'top_p': must be greater than 0.");
  s.top_k = int(get_int(j, "top_k", 0, 1 << 30).value_or(0));
  if (auto seed = get_int(j, "seed", INT64_MIN, INT64_MAX)) s.seed = uint64_t(*seed);
  if (auto n = get_int(j, "n", 1, 128)) {
    if (*n > kMaxChoices) bad("n", fmt::format("Invalid value for 'n': samq generates at most {} choices per request.", kMaxChoices));
    r.n = int(*n);
  }
  s.presence_penalty = float(get_number(j, "presence_penalty", 0.0, -2.0, 2.0));
  s.frequency_penalty = float(get_number(j, "frequency_penalty", 0.0, -2.0, 2.0));
  if (auto it = j.find("logit_bias"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) bad("logit_bias", fmt::format("Invalid type for 'logit_bias': expected an object, but got {}.", type_name(*it)));
    if (it->size() > 1024) bad("logit_bias", "Invalid 'logit_bias': at most 1024 tokens.");
    for (auto& [k, v] : it->items()) {
      if (k.empty() || k.size() > 9 || k.find_first_not_of("0123456789") != std::string::npos)
        bad("logit_bias", fmt::format("Invalid key in 'logit_bias': '{}' is not a token id.", k.substr(0, 32)));
      if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < -100 || v.get<double>() > 100)
        bad("logit_bias", fmt::format("Invalid value in 'logit_bias' for token {}: expected a number in [-100, 100].", k));
      s.logit_bias.emplace_back(int32_t(std::stol(k)), float(v.get<double>()));
    }
  }
  if (auto it = j.find("response_format"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) bad("response_format", "Invalid type for 'response_format': expected an object.");
    auto t = it->find("type");
    if (t == it->end() || !t->is_string()) bad("response_format.type", "Missing or invalid 'response_format.type'.");
    const std::string type = t->get<std::string>();
    if (type == "json_object") r.gen.json_object = true;
    else if (type != "text")
      bad("response_format.type", fmt::format("Invalid value for 'response_format.type': '{}' is not supported "
                                              "(text or json_object).", type.substr(0, 32)));
    for (auto& [k, v] : it->items())
      if (k != "type") bad("response_format." + k.substr(0, 32), fmt::format("Unrecognized argument 'response_format.{}'.", k.substr(0, 32)));
  }
  if (auto it = j.find("stop"); it != j.end() && !it->is_null()) {
    if (it->is_string()) {
      r.gen.stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      if (it->size() > 4) bad("stop", "Invalid value for 'stop': at most 4 stop sequences are allowed.");
      for (auto& v : *it) {
        if (!v.is_string()) bad("stop", "Invalid type for 'stop': expected a string or an array of strings.");
        r.gen.stop.push_back(v.get<std::string>());
      }
    } else {
      bad("stop", fmt::format("Invalid type for 'stop': expected a string or an array of strings, but got {}.", type_name(*it)));
    }
  }
}

std::string message_content(const json& m, size_t i) {
  auto it = m.find("content");
  const std::string param = fmt::format("messages[{}].content", i);
  if (it == m.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    std::string out;
    for (auto& part : *it) {
      const auto type = part.is_object() ? part.find("type") : part.end();
      if (!part.is_object() || type == part.end() || !type->is_string() || *type != "text" || !part.contains("text") ||
          !part["text"].is_string())
        bad(param, fmt::format("Invalid content part in '{}': only {{\"type\": \"text\", \"text\": ...}} parts are supported.", param));
      out += part["text"].get<std::string>();
    }
    return out;
  }
  bad(param, fmt::format("Invalid type for '{}': expected a string or an array of content parts, but got {}.", param, type_name(*it)));
}

}  // namespace

// Any JSON access this file did not foresee is still the client's 400, with no internal text.
template <class F>
ApiRequest guarded(F&& f) {
  try {
    return f();
  } catch (const json::exception&) {
    throw ApiError(400, "invalid_request_error", "invalid_request",
                   "The request has a value of an unexpected type or range.");
  }
}

ApiRequest parse_completion_request_impl(const std::string& body, bool model_adds_bos);
ApiRequest parse_chat_request_impl(const std::string& body, const std::string& chat_template, bool model_adds_bos);

ApiRequest parse_completion_request(const std::string& body, bool model_adds_bos) {
  return guarded([&] { return parse_completion_request_impl(body, model_adds_bos); });
}
ApiRequest parse_chat_request(const std::string& body, const std::string& chat_template, bool model_adds_bos) {
  return guarded([&] { return parse_chat_request_impl(body, chat_template, model_adds_bos); });
}

ApiRequest parse_completion_request_impl(const std::string& body, bool model_adds_bos) {
  const json j = parse_body(body);
  ApiRequest r;
  r.kind = ApiKind::Completion;
  r.gen.route = "/v1/completions";
  parse_common(j, r);
  auto it = j.find("prompt");
  if (it == j.end() || it->is_null()) bad("prompt", "Missing required parameter: 'prompt'.");
  if (it->is_string()) {
    r.gen.prompt = it->get<std::string>();
  } else if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
    r.gen.prompt = (*it)[0].get<std::string>();
  } else if (it->is_array()) {
    bad("prompt", "Invalid value for 'prompt': only a single string prompt is supported.");
  } else {
    bad("prompt", fmt::format("Invalid type for 'prompt': expected a string, but got {}.", type_name(*it)));
  }
  r.gen.add_bos = model_adds_bos;
  r.gen.max_tokens = int(get_int(j, "max_tokens", 1, 1 << 30).value_or(16));
  if (get_bool(j, "echo", false)) bad("echo", "'echo' is not supported.");
  if (auto lp = get_int(j, "logprobs", 0, 5)) {
    r.gen.sampling.logprobs = true;
    r.gen.sampling.top_logprobs = int(*lp);
  }
  if (auto bo = get_int(j, "best_of", 1, 128); bo && *bo != r.n)
    bad("best_of", "Only best_of = n is supported (each choice is returned).");
  if (auto sx = j.find("suffix"); sx != j.end() && !sx->is_null() && !(sx->is_string() && sx->get<std::string>().empty()))
    bad("suffix", "'suffix' is not supported.");
  return r;
}

ApiRequest parse_chat_request_impl(const std::string& body, const std::string& chat_template, bool model_adds_bos) {
  const json j = parse_body(body);
  ApiRequest r;
  r.kind = ApiKind::Chat;
  r.gen.route = "/v1/chat/completions";
  parse_common(j, r);
  auto it = j.find("messages");
  if (it == j.end() || it->is_null()) bad("messages", "Missing required parameter: 'messages'.");
  if (!it->is_array()) bad("messages", fmt::format("Invalid type for 'messages': expected an array, but got {}.", type_name(*it)));
  if (it->empty()) bad("messages", "Invalid 'messages': empty array. Expected an array with minimum length 1.");
  std::vector<ChatMessage> msgs;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    if (!m.is_object()) bad(fmt::format("messages[{}]", i), fmt::format("Invalid type for 'messages[{}]': expected an object.", i));
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      bad(fmt::format("messages[{}].role", i), fmt::format("Missing or invalid 'messages[{}].role'.", i));
    std::string rs = role->get<std::string>();
    if (rs == "developer") rs = "system";
    if (rs != "system" && rs != "user" && rs != "assistant" && rs != "tool")
      bad(fmt::format("messages[{}].role", i),
          fmt::format("Invalid value for 'messages[{}].role': '{}' (expected system, user, assistant, developer or tool).", i, rs));
    msgs.push_back({rs, message_content(m, i)});
  }
  RenderedChat rc = render_chat(chat_template, msgs, model_adds_bos);
  r.gen.prompt = std::move(rc.prompt);
  r.gen.parts = std::move(rc.parts);
  r.gen.add_bos = rc.add_bos;
  for (auto& s : rc.stop) r.gen.stop.push_back(s);
  auto mct = get_int(j, "max_completion_tokens", 1, 1 << 30);
  auto mt = get_int(j, "max_tokens", 1, 1 << 30);
  r.gen.max_tokens = int(mct ? *mct : mt ? *mt : 0);  // 0: until the turn or the context ends
  r.gen.sampling.logprobs = get_bool(j, "logprobs", false);
  if (auto tl = get_int(j, "top_logprobs", 0, 20)) {
    if (!r.gen.sampling.logprobs) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true.");
    r.gen.sampling.top_logprobs = int(*tl);
  }
  if (auto t = j.find("tools"); t != j.end() && !t->is_null() && !(t->is_array() && t->empty()))
    bad("tools", "'tools' are not supported.");
  return r;
}

const std::vector<std::string>& accepted_fields(ApiKind kind) {
  static const std::vector<std::string> completion = {
      "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "n", "stream", "stream_options", "stop",
      "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "response_format", "echo", "best_of", "suffix"};
  static const std::vector<std::string> chat = {
      "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "n", "stream",
      "stream_options", "stop", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
      "response_format", "tools"};
  return kind == ApiKind::Chat ? chat : completion;
}

std::string error_type_for_status(int status) {
  switch (status) {
    case 400: case 404: case 413: return "invalid_request_error";
    case 401: return "authentication_error";
    case 429: return "rate_limit_error";
    default: return "server_error";
  }
}

json error_object(int status, const std::string& type, const std::string& code, const std::string& message,
                  const std::string& param) {
  json e = {{"message", message},
            {"type", type.empty() ? error_type_for_status(status) : type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}};
  return json{{"error", e}};
}

json error_object(const ApiError& e) { return error_object(e.status, e.type, e.code, e.what(), e.param); }

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json logprobs_json(const ApiRequest& r, const std::vector<LogprobEntry>& lp, size_t text_offset) {
  auto bytes = [](const std::string& t) {
    json b = json::array();
    for (unsigned char c : t) b.push_back(int(c));
    return b;
  };
  if (r.kind == ApiKind::Chat) {
    json content = json::array();
    for (auto& e : lp) {
      json top = json::array();
      for (auto& [t, l] : e.top) top.push_back({{"token", t}, {"logprob", l}, {"bytes", bytes(t)}});
      content.push_back({{"token", e.token}, {"logprob", e.logprob}, {"bytes", bytes(e.token)}, {"top_logprobs", top}});
    }
    return {{"content", content}, {"refusal", nullptr}};
  }
  json tokens = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  size_t off = text_offset;
  for (auto& e : lp) {
    tokens.push_back(e.token);
    lps.push_back(e.logprob);
    json t = json::object();
    for (auto& [s, l] : e.top) t[s] = l;
    tops.push_back(t);
    offs.push_back(off);
    off += e.token.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

json completion_response(const ApiRequest& r, const ResponseMeta& m, const std::string& text,
                         const std::string& finish_reason, const Usage& u) {
  return completion_response(r, m, std::vector<ChoiceResult>{{text, finish_reason, {}}}, u);
}

json completion_response(const ApiRequest& r, const ResponseMeta& m, const std::vector<ChoiceResult>& results,
                         const Usage& u) {
  json choices = json::array();
  for (size_t i = 0; i < results.size(); ++i) {
    const ChoiceResult& c = results[i];
    const json lp = r.gen.sampling.logprobs ? logprobs_json(r, c.logprobs) : json(nullptr);
    if (r.kind == ApiKind::Chat)
      choices.push_back({{"index", i},
                         {"message", {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}}},
                         {"logprobs", lp},
                         {"finish_reason", c.finish_reason}});
    else
      choices.push_back({{"text", c.text}, {"index", i}, {"logprobs", lp}, {"finish_reason", c.finish_reason}});
  }
  return {{"id", m.id},
          {"object", r.kind == ApiKind::Chat ? "chat.completion" : "text_completion"},
          {"created", m.created},
          {"model", m.model},
          {"system_fingerprint", m.fingerprint},
          {"choices", choices},
          {"usage", usage_json(u)}};
}

json stream_chunk(const ApiRequest& r, const ResponseMeta& m, const std::string& text,
                  const std::string& finish_reason, bool role_chunk, int index, const std::vector<LogprobEntry>* lp,
                  size_t text_offset) {
  const json fr = finish_reason.empty() ? json(nullptr) : json(finish_reason);
  const json lpj = lp && r.gen.sampling.logprobs && !role_chunk ? logprobs_json(r, *lp, text_offset) : json(nullptr);
  json choice;
  if (r.kind == ApiKind::Chat) {
    json delta = json::object();
    if (role_chunk) delta = {{"role", "assistant"}, {"content", ""}, {"refusal", nullptr}};
    else if (finish_reason.empty()) delta = {{"content", text}};
    choice = {{"index", index}, {"delta", delta}, {"logprobs", lpj}, {"finish_reason", fr}};
  } else {
    choice = {{"text", text}, {"index", index}, {"logprobs", lpj}, {"finish_reason", fr}};
  }
  json c = {{"id", m.id},
            {"object", r.kind == ApiKind::Chat ? "chat.completion.chunk" : "text_completion"},
            {"created", m.created},
            {"model", m.model},
            {"system_fingerprint", m.fingerprint},
            {"choices", json::array({choice})}};
  if (r.include_usage) c["usage"] = nullptr;
  return c;
}

json usage_chunk(const ApiRequest& r, const ResponseMeta& m, const Usage& u) {
  return {{"id", m.id},
          {"object", r.kind == ApiKind::Chat ? "chat.completion.chunk" : "text_completion"},
          {"created", m.created},
          {"model", m.model},
          {"system_fingerprint", m.fingerprint},
          {"choices", json::array()},
          {"usage", usage_json(u)}};
}

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string new_request_id(ApiKind kind) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  return fmt::format("{}-{:08x}{:06x}", kind == ApiKind::Chat ? "chatcmpl" : "cmpl", uint32_t(salt), ++counter);
}

}  // namespace samq::serve
