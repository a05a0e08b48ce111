#include "serve/backend.h"

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <cstdio>
#include <regex>

#include "core/error.h"
#include "serve/text_stream.h"

namespace samq::serve {

using nlohmann::json;

UpstreamBackend::UpstreamBackend(const std::string& url, std::string model, int timeout_ms, std::string api_key,
                                 int workers, int queue)
    : model_(std::move(model)), api_key_(std::move(api_key)), timeout_ms_(timeout_ms),
      max_queue_(size_t(std::max(queue, 0))) {
  static const std::regex re(R"(^http://([^/:]+)(?::(\d+))?(/.*)?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) fail("--fallback-url '{}': expected http://HOST[:PORT][/PATH]", url);
  host_ = m[1];
  port_ = m[2].matched ? std::stoi(m[2]) : 80;
  prefix_ = m[3].matched ? m[3].str() : "";
  while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
  if (prefix_.size() >= 3 && prefix_.substr(prefix_.size() - 3) == "/v1") prefix_.resize(prefix_.size() - 3);
  for (int i = 0; i < std::max(workers, 1); ++i) threads_.emplace_back([this] { work(); });
}

UpstreamBackend::~UpstreamBackend() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    for (auto& [req, ch] : jobs_) ch->push(Event::error(503, "the server is shutting down"));
    jobs_.clear();
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

std::shared_ptr<RequestChannel> UpstreamBackend::start(const GenRequest& req) {
  auto ch = std::make_shared<RequestChannel>();
  {
    std::lock_guard lk(mu_);
    if (stopping_) throw ApiError(503, "server_error", "shutting_down", "the server is shutting down");
    if (jobs_.size() >= max_queue_)
      throw ApiError(429, "rate_limit_error", "server_overloaded", "the fallback's queue is full; retry later", "", 1);
    jobs_.emplace_back(req, ch);
  }
  cv_.notify_one();
  return ch;
}

void UpstreamBackend::work() {
  for (;;) {
    std::pair<GenRequest, std::shared_ptr<RequestChannel>> job;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_ && jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (job.second->cancelled()) continue;
    try {
      run(std::move(job.first), job.second);
    } catch (...) {
      try {
        job.second->push(Event::error(502, "the fallback upstream failed"));
      } catch (...) {
      }
    }
  }
}

void UpstreamBackend::run(GenRequest req, std::shared_ptr<RequestChannel> ch) {
  json body = {{"prompt", req.prompt},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}},
               {"temperature", req.sampling.temperature},
               {"top_p", req.sampling.top_p}};
  if (!model_.empty()) body["model"] = model_;
  if (req.sampling.top_k > 0) body["top_k"] = req.sampling.top_k;
  if (req.sampling.seed) body["seed"] = *req.sampling.seed;
  if (req.max_tokens > 0) body["max_tokens"] = req.max_tokens;
  const SamplingParams& sp = req.sampling;
  if (sp.presence_penalty != 0) body["presence_penalty"] = sp.presence_penalty;
  if (sp.frequency_penalty != 0) body["frequency_penalty"] = sp.frequency_penalty;
  if (!sp.logit_bias.empty()) {
    json lb = json::object();
    for (auto& [id, b] : sp.logit_bias) lb[std::to_string(id)] = b;
    body["logit_bias"] = lb;
  }
  if (sp.logprobs) body["logprobs"] = std::min(sp.top_logprobs, 5);
  // Not in OpenAI's /v1/completions, but llama-server and samq accept it there.
  if (req.json_object) body["response_format"] = {{"type", "json_object"}};
  if (!req.stop.empty()) {
    // OpenAI allows 4 stop sequences; the rest are applied here on the returned text.
    json s = json::array();
    for (size_t i = 0; i < req.stop.size() && i < 4; ++i) s.push_back(req.stop[i]);
    body["stop"] = s;
  }
  httplib::Client cli(host_, port_);
  cli.set_connection_timeout(std::chrono::milliseconds(std::max(timeout_ms_, 1000)));
  cli.set_read_timeout(std::chrono::milliseconds(std::max(timeout_ms_, 30000)));
  httplib::Request hr;
  hr.method = "POST";
  hr.path = prefix_ + "/v1/completions";
  hr.body = body.dump();
  hr.set_header("Content-Type", "application/json");
  if (!api_key_.empty()) hr.set_header("Authorization", "Bearer " + api_key_);
  int status = 0;
  std::string buf, err_body, finish;
  Usage usage;
  bool done = false;
  TextStream text(req.stop);
  int n_tokens = 0;
  hr.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  hr.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (ch->cancelled()) return false;
    if (status != 200) {
      if (err_body.size() < 65536) err_body.append(data, n);
      return true;
    }
    buf.append(data, n);
    size_t pos;
    while ((pos = buf.find("\n\n")) != std::string::npos) {
      std::string ev = buf.substr(0, pos);
      buf.erase(0, pos + 2);
      if (ev.rfind("data: ", 0) != 0) continue;
      std::string payload = ev.substr(6);
      if (payload == "[DONE]") {
        done = true;
        continue;
      }
      json j = json::parse(payload, nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("error")) {
        status = 502;
        err_body = payload;
        return false;
      }
      if (j.contains("usage") && j["usage"].is_object()) {
        usage.prompt_tokens = j["usage"].value("prompt_tokens", 0);
        usage.completion_tokens = j["usage"].value("completion_tokens", 0);
      }
      if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) continue;
      const json& c = j["choices"][0];
      if (c.contains("text") && c["text"].is_string() && !text.stopped()) {
        Event t;
        t.text = text.push(c["text"].get<std::string>());
        t.tokens = 1;  // OpenAI streams about one token per chunk
        if (sp.logprobs && c.contains("logprobs") && c["logprobs"].is_object()) {
          const json& l = c["logprobs"];
          const json toks = l.value("tokens", json::array()), lps = l.value("token_logprobs", json::array()),
                     tops = l.value("top_logprobs", json::array());
          for (size_t k = 0; toks.is_array() && k < toks.size(); ++k) {
            LogprobEntry e;
            if (toks[k].is_string()) e.token = toks[k].get<std::string>();
            if (lps.is_array() && k < lps.size() && lps[k].is_number()) e.logprob = lps[k].get<float>();
            if (tops.is_array() && k < tops.size() && tops[k].is_object())
              for (auto& [tok, v] : tops[k].items())
                if (v.is_number() && int(e.top.size()) < sp.top_logprobs) e.top.emplace_back(tok, v.get<float>());
            std::sort(e.top.begin(), e.top.end(), [](auto& a, auto& b) { return a.second > b.second; });
            t.logprobs.push_back(std::move(e));
          }
          if (toks.is_array() && toks.size() > 1) t.tokens = int(toks.size());
        }
        n_tokens += t.tokens;
        ch->push(std::move(t));
      }
      if (c.contains("finish_reason") && c["finish_reason"].is_string()) finish = c["finish_reason"];
    }
    return true;
  };
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  const bool ok = cli.send(hr, res, error);
  if (ch->cancelled()) return;
  // Clients hear the status only: the upstream's address and payload stay in the server's log.
  if (!ok && status != 200) {
    std::fprintf(stderr, "samq serve: fallback upstream %s:%d failed: %s\n", host_.c_str(), port_,
                 (status ? err_body.substr(0, 500) : httplib::to_string(error)).c_str());
    ch->push(Event::error(502, status ? "the fallback upstream failed (HTTP " + std::to_string(status) + ")"
                                      : "the fallback upstream could not be reached"));
    return;
  }
  if (status != 200) {
    std::fprintf(stderr, "samq serve: fallback upstream %s:%d returned HTTP %d: %s\n", host_.c_str(), port_, status,
                 err_body.substr(0, 500).c_str());
    ch->push(Event::error(status == 429 ? 429 : 502, "the fallback upstream returned HTTP " + std::to_string(status)));
    return;
  }
  if (!done && finish.empty()) {
    ch->push(Event::error(502, "fallback upstream closed the stream early"));
    return;
  }
  Event rest;
  rest.text = text.finish();
  if (!rest.text.empty()) ch->push(std::move(rest));
  Event d = Event::done(text.stopped() ? "stop" : finish.empty() ? "stop" : finish);
  d.usage = usage;
  if (d.usage.completion_tokens == 0) d.usage.completion_tokens = n_tokens;
  ch->push(std::move(d));
}

}  // namespace samq::serve
