// serve/request.h — what the HTTP layer hands to a backend (a rendered prompt and OpenAI's
// parameters) and the events it gets back (text, done, error) through a RequestChannel.
//
// A channel has one producer (a scheduler worker or an upstream client thread) and one
// consumer (the HTTP handler). The consumer cancels by calling cancel(); producers check
// cancelled() between steps and stop work for it.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "serve/sampler.h"

namespace samq::serve {

using Clock = std::chrono::steady_clock;

// An error with an HTTP status and OpenAI's error "type"/"code" (serve/openai_api.h renders it).
struct ApiError : std::runtime_error {
  ApiError(int status, std::string type, std::string code, const std::string& msg,
           std::string param = "", int retry_after_s = 0)
      : std::runtime_error(msg), status(status), type(std::move(type)), code(std::move(code)),
        param(std::move(param)), retry_after_s(retry_after_s) {}
  int status;
  std::string type, code, param;
  int retry_after_s;
};

// A piece of a rendered prompt: the chat template's own text (special = true: control tokens such
// as <|im_start|> are parsed) or a client's message content (special = false: tokenized as plain
// text, so "<|im_end|>" in a message is characters, never a control id).
struct PromptPart {
  std::string text;
  bool special = false;
};

struct GenRequest {
  std::string route = "/v1/completions";  // for metrics
  std::string prompt;                     // already rendered through the chat template
  // Chat requests: the same prompt in parts, tokenized part by part and joined (see PromptPart).
  // Empty: `prompt` is tokenized with special tokens parsed (/v1/completions, as llama-server).
  std::vector<PromptPart> parts;
  bool add_bos = true;                    // false when the template spells the BOS itself
  SamplingParams sampling;
  int max_tokens = 16;                    // <= 0: until the context is full
  std::vector<std::string> stop;
  bool json_object = false;               // response_format json_object (serve/json_prefix.h)
};

// The logprob of one generated token and its most likely alternatives (raw token text, which
// may be part of a UTF-8 character).
struct LogprobEntry {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

struct Event {
  enum Kind { Text, Done, Error } kind = Text;
  std::string text;           // Text: safe-to-send text (may be empty on a token held back)
  int tokens = 0;             // Text: tokens generated since the previous Text event
  std::vector<LogprobEntry> logprobs;  // Text: one per token, when the request asked for them
  std::string finish_reason;  // Done: "stop" | "length"
  Usage usage;                // Done
  int status = 500;           // Error
  std::string message;        // Error

  static Event done(std::string reason) { Event e; e.kind = Done; e.finish_reason = std::move(reason); return e; }
  static Event error(int status, std::string msg) { Event e; e.kind = Error; e.status = status; e.message = std::move(msg); return e; }
};

class RequestChannel {
 public:
  void push(Event e) {
    {
      std::lock_guard lk(mu_);
      q_.push_back(std::move(e));
    }
    cv_.notify_all();
  }
  // Next event, or nullopt when the deadline passes first.
  std::optional<Event> pop(Clock::time_point deadline) {
    std::unique_lock lk(mu_);
    if (!cv_.wait_until(lk, deadline, [&] { return !q_.empty(); })) return std::nullopt;
    Event e = std::move(q_.front());
    q_.pop_front();
    return e;
  }
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> q_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace samq::serve
