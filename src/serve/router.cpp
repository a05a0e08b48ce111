#include "serve/router.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace samq::serve {

namespace {
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
}  // namespace

const char* circuit_state_name(CircuitState s) {
  switch (s) {
    case CircuitState::Closed: return "closed";
    case CircuitState::Open: return "open";
    default: return "half-open";
  }
}

Router::Router(Backend& primary, Backend* fallback, RouterOptions opt, Metrics* metrics)
    : Router(primary, fallback ? std::vector<Backend*>{fallback} : std::vector<Backend*>{}, std::move(opt), metrics) {}

Router::Router(Backend& primary, std::vector<Backend*> fallbacks, RouterOptions opt, Metrics* metrics)
    : primary_(primary), fallback_(fallbacks.empty() ? nullptr : fallbacks[0]), fallbacks_(std::move(fallbacks)),
      opt_(std::move(opt)), metrics_(metrics) {
  if (metrics_) metrics_->circuit_state(0);
}

void Router::set_state(CircuitState s) {
  state_ = s;
  if (s == CircuitState::Open) opened_at_ = Clock::now();
  if (s != CircuitState::HalfOpen) probe_successes_ = 0;
  if (metrics_) metrics_->circuit_state(int(s));
}

CircuitState Router::state() {
  std::lock_guard lk(mu_);
  return state_;
}

void Router::prune(Clock::time_point now) {
  const auto horizon = now - std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt_.sla_window_s));
  while (!window_.empty() && window_.front().first < horizon) window_.pop_front();
}

double Router::primary_p99_ms() {
  std::lock_guard lk(mu_);
  prune(Clock::now());
  if (window_.empty()) return 0;
  std::vector<double> v;
  v.reserve(window_.size());
  for (auto& [t, ms] : window_) v.push_back(ms);
  std::sort(v.begin(), v.end());
  // Nearest-rank p99.
  const size_t rank = size_t(std::ceil(0.99 * double(v.size())));
  return v[std::max<size_t>(rank, 1) - 1];
}

bool Router::choose_primary(bool& probe) {
  probe = false;
  if (!fallback_) return true;
  std::lock_guard lk(mu_);
  if (state_ == CircuitState::Open &&
      ms_between(opened_at_, Clock::now()) >= opt_.breaker_cooldown_ms)
    set_state(CircuitState::HalfOpen);
  if (state_ == CircuitState::Closed) return true;
  if (state_ == CircuitState::HalfOpen && !probe_in_flight_) {
    probe_in_flight_ = true;
    probe = true;
    return true;
  }
  return false;
}

void Router::probe_abandoned() {
  std::lock_guard lk(mu_);
  probe_in_flight_ = false;
}

void Router::record(bool probe, bool ok, double e2e_ms, double ttft_ms) {
  if (!fallback_) return;
  bool check_sla = false;
  {
    std::lock_guard lk(mu_);
    if (probe) probe_in_flight_ = false;
    const double lat = opt_.sla_metric == "ttft" ? ttft_ms : e2e_ms;
    const bool slow = opt_.sla_p99_ms > 0 && lat > opt_.sla_p99_ms;
    if (!ok) {
      ++consecutive_failures_;
      if (state_ == CircuitState::HalfOpen ||
          (state_ == CircuitState::Closed && consecutive_failures_ >= opt_.breaker_failures)) {
        set_state(CircuitState::Open);
        if (metrics_) metrics_->fallback_activation("circuit_opened_errors");
      }
      return;
    }
    consecutive_failures_ = 0;
    if (probe && state_ == CircuitState::HalfOpen) {
      if (slow) {
        set_state(CircuitState::Open);
        return;
      }
      if (++probe_successes_ >= opt_.breaker_probes) {
        window_.clear();
        set_state(CircuitState::Closed);
      }
      return;
    }
    if (state_ != CircuitState::Closed || opt_.sla_p99_ms <= 0) return;
    window_.emplace_back(Clock::now(), lat);
    check_sla = int(window_.size()) >= opt_.sla_min_samples;
  }
  const double p99 = primary_p99_ms();
  if (metrics_) metrics_->primary_p99(p99 / 1000.0);
  if (check_sla && p99 > opt_.sla_p99_ms) {
    std::lock_guard lk(mu_);
    if (state_ == CircuitState::Closed) {
      set_state(CircuitState::Open);
      if (metrics_) metrics_->fallback_activation("circuit_opened_sla");
    }
  }
}

std::unique_ptr<Execution> Router::begin(const GenRequest& req, bool stream) {
  auto ex = std::unique_ptr<Execution>(new Execution());
  ex->r_ = this;
  ex->req_ = req;
  ex->stream_ = stream;
  ex->t_start_ = ex->t_last_ = Clock::now();
  bool probe = false;
  if (choose_primary(probe)) {
    try {
      ex->ch_ = primary_.start(req);
      ex->cur_ = &primary_;
      ex->on_primary_ = true;
      ex->probe_ = probe;
      ex->served_by_ = primary_.name();
      return ex;
    } catch (const ApiError& e) {
      if (probe) probe_abandoned();
      // Client errors, or nowhere else to go: the client gets the primary's answer.
      if (!fallback_ || e.status == 400 || e.status == 413) throw;
      if (metrics_) metrics_->fallback_activation(e.status == 429 ? "overload" : "unavailable");
    } catch (const std::exception&) {
      // Not a refusal but a fault (tokenizer error, bad_alloc, no thread left): it frees the
      // probe slot, counts against the primary, and the request moves on.
      if (probe) probe_abandoned();
      record(false, false, 0, 0);
      if (!fallback_) throw ApiError(500, "server_error", "internal_error", "The server had an error while processing your request.");
      if (metrics_) metrics_->fallback_activation("error");
    }
  } else if (metrics_) {
    metrics_->fallback_activation("circuit_open");
  }
  // The fallback chain, in order; the last refusal goes to the client.
  for (size_t i = 0; i < fallbacks_.size(); ++i) {
    try {
      ex->ch_ = fallbacks_[i]->start(req);
    } catch (const std::exception& e) {
      if (i + 1 == fallbacks_.size()) {
        if (dynamic_cast<const ApiError*>(&e)) throw;
        throw ApiError(500, "server_error", "internal_error", "The server had an error while processing your request.");
      }
      if (metrics_) metrics_->fallback_activation("fallback_refused");
      continue;
    }
    ex->cur_ = fallbacks_[i];
    ex->fb_ = int(i);
    ex->served_by_ = fallbacks_[i]->name();
    ex->switched_ = true;
    return ex;
  }
  throw ApiError(503, "server_error", "unavailable", "no backend can take the request");
}

Execution::~Execution() {
  if (!finished_ && ch_) ch_->cancel();
  if (on_primary_ && !reported_ && probe_) r_->probe_abandoned();
}

void Execution::cancel() {
  if (ch_) ch_->cancel();
}

void Execution::report(Outcome o) {
  if (!on_primary_ || reported_) return;
  reported_ = true;
  const auto now = Clock::now();
  const double e2e = ms_between(t_start_, now);
  const double ttft = t_first_ ? ms_between(t_start_, *t_first_) : e2e;
  r_->record(probe_, o == Outcome::Success, e2e, ttft);
}

bool Execution::can_switch() const { return size_t(fb_ + 1) < r_->fallbacks_.size(); }

bool Execution::switch_to_fallback(const std::string& reason, std::optional<Event>& out) {
  if (!can_switch()) return false;
  ch_->cancel();
  if (on_primary_) report(Outcome::Failure);
  if (r_->metrics_) r_->metrics_->fallback_activation(on_primary_ ? reason : "fallback_" + reason);
  on_primary_ = false;
  switched_ = true;
  GenRequest cont = req_;
  cont.prompt = req_.prompt + text_;
  if (!cont.parts.empty() && !text_.empty()) cont.parts.push_back({text_, false});
  if (req_.max_tokens > 0) {
    cont.max_tokens = req_.max_tokens - tokens_;
    if (cont.max_tokens <= 0) {
      finished_ = true;
      Event d = Event::done("length");
      d.usage.completion_tokens = tokens_;
      out = std::move(d);
      return true;
    }
  }
  while (can_switch()) {
    ++fb_;
    Backend* b = r_->fallbacks_[fb_];
    try {
      ch_ = b->start(cont);
    } catch (const ApiError& e) {
      if (can_switch()) continue;
      finished_ = true;
      out = Event::error(e.status, "primary failed (" + reason + ") and the fallback refused: " + e.what());
      return true;
    } catch (const std::exception&) {
      if (can_switch()) continue;
      finished_ = true;
      out = Event::error(500, "primary failed (" + reason + ") and the fallback had an internal error");
      return true;
    }
    cur_ = b;
    if (text_.empty()) served_by_ = b->name();
    t_last_ = Clock::now();
    return true;
  }
  return false;
}

std::optional<Event> Execution::next(Clock::time_point wake) {
  for (;;) {
    if (finished_) return Event::error(500, "request already finished");
    Clock::time_point deadline = wake;
    std::optional<Clock::time_point> primary_deadline;
    if (on_primary_ && r_->fallback_ && r_->opt_.timeout_ms > 0) {
      const auto base = stream_ ? t_last_ : t_start_;
      primary_deadline = base + std::chrono::milliseconds(r_->opt_.timeout_ms);
      deadline = std::min(deadline, *primary_deadline);
    }
    auto ev = ch_->pop(deadline);
    if (!ev) {
      if (primary_deadline && Clock::now() >= *primary_deadline) {
        std::optional<Event> out;
        switch_to_fallback("timeout", out);
        if (out) return out;
        continue;
      }
      return std::nullopt;
    }
    switch (ev->kind) {
      case Event::Text:
        t_last_ = Clock::now();
        if (!t_first_) t_first_ = t_last_;
        text_ += ev->text;
        tokens_ += ev->tokens;
        return ev;
      case Event::Done:
        report(Outcome::Success);
        finished_ = true;
        if (switched_) ev->usage.completion_tokens = tokens_;
        return ev;
      case Event::Error: {
        std::optional<Event> out;
        if (ev->status != 400 && can_switch() && switch_to_fallback("error", out)) {
          if (out) return out;
          continue;
        }
        report(Outcome::Failure);
        finished_ = true;
        return ev;
      }
    }
  }
}

}  // namespace samq::serve
