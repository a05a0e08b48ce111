// serve/router.h — primary/fallback routing with an SLA monitor and a circuit breaker.
//
// - A request goes to the primary while its circuit is closed. If the primary errors, or
//   produces no token for --timeout-ms (streaming: per token; non-streaming: in total), the
//   request is cancelled there and continued on the fallback: the fallback gets the prompt
//   plus the text produced so far and the remaining token budget, so the client sees one
//   uninterrupted answer.
// - SLA: the primary's end-to-end (or first-token) latencies of the last --sla-window-s seconds
//   form a rolling window; when their p99 exceeds --sla-p99-ms (with >= min samples), the
//   circuit opens. --breaker-failures consecutive errors/timeouts open it too.
// - Open: new requests go to the fallback. After --breaker-cooldown-ms it turns half-open: one
//   request at a time probes the primary; --breaker-probes good probes close it (and clear the
//   window), a bad one opens it again.
// Several fallbacks form a chain (e.g. --fallback MODEL, then --fallback-url URL): a request
// moves to the next one when the current one fails; the breaker watches the primary only.
// Without a fallback the primary serves everything and the breaker stays closed.
#pragma once
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "serve/backend.h"
#include "serve/metrics.h"

namespace samq::serve {

struct RouterOptions {
  int timeout_ms = 0;             // 0: no timeout
  double sla_p99_ms = 0;          // 0: no SLA
  std::string sla_metric = "e2e"; // "e2e" or "ttft"
  double sla_window_s = 30;
  int sla_min_samples = 8;
  int breaker_failures = 3;
  int breaker_cooldown_ms = 5000;
  int breaker_probes = 2;
};

enum class CircuitState { Closed = 0, Open = 1, HalfOpen = 2 };
const char* circuit_state_name(CircuitState s);

class Router;

// One request in flight; pull its events with next().
class Execution {
 public:
  ~Execution();
  // Next Text/Done/Error event, or nullopt if none arrived before `wake` (the caller can then
  // check its client and call again). Fallback switches happen inside.
  std::optional<Event> next(Clock::time_point wake);
  void cancel();
  const std::string& served_by() const { return served_by_; }  // who produced the first token
  std::string current() const { return cur_ ? cur_->name() : ""; }  // who produces tokens now
  bool switched() const { return switched_; }

 private:
  friend class Router;
  enum class Outcome { None, Success, Failure };
  bool switch_to_fallback(const std::string& reason, std::optional<Event>& out);
  bool can_switch() const;
  void report(Outcome o);

  Router* r_ = nullptr;
  GenRequest req_;
  Backend* cur_ = nullptr;
  std::shared_ptr<RequestChannel> ch_;
  std::string served_by_;
  int fb_ = -1;  // index of the current fallback; -1 while on the primary
  bool on_primary_ = false, probe_ = false, switched_ = false, reported_ = false, finished_ = false;
  bool stream_ = false;
  Clock::time_point t_start_, t_last_;
  std::optional<Clock::time_point> t_first_;
  std::string text_;
  int tokens_ = 0;
};

class Router {
 public:
  Router(Backend& primary, Backend* fallback, RouterOptions opt, Metrics* metrics);
  Router(Backend& primary, std::vector<Backend*> fallbacks, RouterOptions opt, Metrics* metrics);
  // Starts a request (stream: whether the client streams, which sets the timeout rule).
  // Throws ApiError when no backend can take it.
  std::unique_ptr<Execution> begin(const GenRequest& req, bool stream);

  CircuitState state();
  double primary_p99_ms();  // over the current window; 0 when empty
  bool has_fallback() const { return fallback_ != nullptr; }
  Backend& primary() { return primary_; }
  Backend* fallback() { return fallback_; }
  const RouterOptions& options() const { return opt_; }

 private:
  friend class Execution;
  bool choose_primary(bool& probe);
  void record(bool probe, bool ok, double e2e_ms, double ttft_ms);
  void probe_abandoned();
  void set_state(CircuitState s);
  void prune(Clock::time_point now);

  Backend& primary_;
  Backend* fallback_;                // the first fallback, or null
  std::vector<Backend*> fallbacks_;  // the chain
  RouterOptions opt_;
  Metrics* metrics_;
  std::mutex mu_;
  CircuitState state_ = CircuitState::Closed;
  Clock::time_point opened_at_;
  int consecutive_failures_ = 0, probe_successes_ = 0;
  bool probe_in_flight_ = false;
  std::deque<std::pair<Clock::time_point, double>> window_;  // (when, latency ms)
};

}  // namespace samq::serve
