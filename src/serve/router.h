// serve/router.h — primary/fallback routing with an SLA monitor and circuit breakers.
//
// - Primaries: one backend (the in-process model), or several replicas (`--upstream URL`
//   repeated); a request goes to the admitting replica with the fewest requests outstanding.
//   Each replica has its own breaker and its own SLA windows.
// - Deadlines are per token: a primary that gives no first token within timeout_ms (from the
//   start), or no next token within token_timeout_ms of the previous one, has the request
//   cancelled there and continued elsewhere (streaming or not). A token whose text is held back
//   (a possible stop string, an incomplete UTF-8 character) is progress, not silence. The
//   continuation gets the prompt plus the text so far and the remaining token budget, so the
//   client sees one uninterrupted answer.
// - SLA: the primary's time to first token (one sample per request) and inter-token gaps (one
//   per token) of the last sla_window_s seconds; the circuit opens when the p99 of either
//   exceeds its threshold. End-to-end time, which grows with max_tokens, is not judged. With
//   fewer than 100 samples the p99 is the maximum, so it does not decide alone: at least 10% of
//   the samples, and at least two, must exceed the threshold too.
// - Failures (errors, missed deadlines) count over a window (the last breaker_window outcomes
//   within sla_window_s): the circuit opens when at least breaker_failures of them failed and
//   they are at least breaker_failure_rate of the window, so alternating failures open it too.
// - Open: new requests go elsewhere. After breaker_cooldown_ms it turns half-open: one request
//   at a time probes that primary; breaker_probes good probes close it (and clear its windows),
//   a bad or slow one opens it again. A probe that ends any other way (it threw, the client
//   left) frees the half-open slot.
// Where a request moves on failure: the other closed replicas (fewest outstanding first), then
// the fallback chain in order (e.g. --fallback MODEL, then --fallback-url URL). Breakers watch
// primaries only. With no other backend, the primary serves everything and deadlines do not
// apply.
#pragma once
#include <atomic>
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
  int timeout_ms = 0;             // first-token deadline on a primary; 0: none
  int token_timeout_ms = -1;      // gap between tokens on a primary; < 0: timeout_ms; 0: none
  double sla_ttft_p99_ms = 0;     // 0: no TTFT SLA
  double sla_itl_p99_ms = 0;      // 0: no inter-token SLA
  double sla_window_s = 30;
  int sla_min_samples = 8;        // samples in a window before it is judged
  int breaker_failures = 3;       // failures in the window that may open the circuit
  double breaker_failure_rate = 0.5;  // ... when they are at least this share of the window
  int breaker_window = 20;        // outcomes kept per primary (also bounded by sla_window_s)
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
  // check its client and call again). Switches to other backends happen inside. A Text event
  // may have empty text (a token held back).
  std::optional<Event> next(Clock::time_point wake);
  void cancel();
  const std::string& served_by() const { return served_by_; }  // who produced the first token
  std::string current() const { return cur_ ? cur_->name() : ""; }  // who produces tokens now
  bool switched() const { return switched_; }

 private:
  friend class Router;
  enum class Outcome { Success, Failure };
  bool switch_next(const std::string& reason, std::optional<Event>& out);
  bool can_switch() const { return !next_.empty(); }
  void report(Outcome o);
  void leave_primary();

  Router* r_ = nullptr;
  GenRequest req_;
  Backend* cur_ = nullptr;
  std::shared_ptr<RequestChannel> ch_;
  std::string served_by_;
  std::deque<std::pair<Backend*, int>> next_;  // where to continue (backend, primary index or -1)
  int pi_ = -1;  // index of the primary serving it now; -1 when not on a primary
  bool probe_ = false, switched_ = false, reported_ = false, finished_ = false;
  Clock::time_point t_start_, t_last_, t_seg_;  // t_seg_: when the current backend started
  std::optional<Clock::time_point> t_first_, t_seg_first_;
  std::vector<double> gaps_ms_;  // inter-token gaps on the current primary
  std::string text_;
  int tokens_ = 0;
};

class Router {
 public:
  Router(Backend& primary, Backend* fallback, RouterOptions opt, Metrics* metrics);
  Router(Backend& primary, std::vector<Backend*> fallbacks, RouterOptions opt, Metrics* metrics);
  Router(std::vector<Backend*> primaries, std::vector<Backend*> fallbacks, RouterOptions opt, Metrics* metrics);
  // Starts a request. Throws ApiError when no backend can take it.
  std::unique_ptr<Execution> begin(const GenRequest& req, bool stream = false);

  CircuitState state(size_t primary = 0);
  double primary_p99_ms(size_t primary = 0);      // TTFT p99 over the current window; 0 when empty
  double primary_itl_p99_ms(size_t primary = 0);  // inter-token p99; 0 when empty
  int outstanding(size_t primary) const;
  size_t primaries() const { return ps_.size(); }
  bool has_fallback() const { return !fallbacks_.empty(); }
  Backend& primary(size_t i = 0) { return *ps_[i]->b; }
  Backend* fallback() { return fallbacks_.empty() ? nullptr : fallbacks_[0]; }
  const RouterOptions& options() const { return opt_; }

 private:
  friend class Execution;
  struct Primary {
    Backend* b;
    CircuitState state = CircuitState::Closed;
    Clock::time_point opened_at;
    int probe_successes = 0;
    bool probe_in_flight = false;
    std::atomic<int> outstanding{0};
    std::deque<std::pair<Clock::time_point, bool>> outcomes;   // (when, ok)
    std::deque<std::pair<Clock::time_point, double>> ttft, itl;  // (when, ms)
  };
  bool guarded() const { return ps_.size() > 1 || !fallbacks_.empty(); }  // somewhere else to go
  int choose(bool& probe);
  void record(size_t i, bool probe, bool ok, double ttft_ms, const std::vector<double>& gaps_ms);
  void probe_abandoned(size_t i);
  void set_state(size_t i, CircuitState s);
  void prune(Primary& p, Clock::time_point now);
  std::deque<std::pair<Backend*, int>> continuations(int exclude);

  std::vector<std::unique_ptr<Primary>> ps_;
  std::vector<Backend*> fallbacks_;
  RouterOptions opt_;
  Metrics* metrics_;
  std::mutex mu_;
  size_t rr_ = 0;  // where the next choice starts (under mu_)
};

}  // namespace samq::serve
