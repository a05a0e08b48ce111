#include "serve/router.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace samq::serve {

namespace {
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

double nearest_rank(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const size_t rank = size_t(std::ceil(q * double(sorted.size())));
  return sorted[std::max<size_t>(rank, 1) - 1];
}

std::vector<double> sorted_values(const std::deque<std::pair<Clock::time_point, double>>& w) {
  std::vector<double> v;
  v.reserve(w.size());
  for (auto& [t, ms] : w) v.push_back(ms);
  std::sort(v.begin(), v.end());
  return v;
}

// Whether a window of latencies breaches `limit_ms` at p99. Below 100 samples the p99 is the
// maximum, so one outlier would decide: there at least 10% of the samples, and at least two,
// must exceed the limit.
bool breached(const std::deque<std::pair<Clock::time_point, double>>& w, double limit_ms, int min_samples) {
  if (limit_ms <= 0 || int(w.size()) < std::max(1, min_samples)) return false;
  const auto v = sorted_values(w);
  if (nearest_rank(v, 0.99) <= limit_ms) return false;
  if (v.size() >= 100) return true;
  const size_t over = size_t(v.end() - std::upper_bound(v.begin(), v.end(), limit_ms));
  return over >= 2 && 10 * over >= v.size();
}

constexpr size_t kMaxItlSamples = 4096;
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
    : Router(std::vector<Backend*>{&primary}, std::move(fallbacks), std::move(opt), metrics) {}

Router::Router(std::vector<Backend*> primaries, std::vector<Backend*> fallbacks, RouterOptions opt, Metrics* metrics)
    : fallbacks_(std::move(fallbacks)), opt_(std::move(opt)), metrics_(metrics) {
  for (Backend* b : primaries) {
    auto p = std::make_unique<Primary>();
    p->b = b;
    ps_.push_back(std::move(p));
  }
  if (ps_.empty()) throw std::invalid_argument("Router needs a primary");
  if (metrics_) {
    metrics_->circuit_state(0);
    if (ps_.size() > 1)
      for (auto& p : ps_) {
        metrics_->primary_circuit_state(p->b->name(), 0);
        metrics_->primary_outstanding(p->b->name(), 0);
      }
  }
}

void Router::set_state(size_t i, CircuitState s) {
  Primary& p = *ps_[i];
  p.state = s;
  if (s == CircuitState::Open) p.opened_at = Clock::now();
  if (s != CircuitState::HalfOpen) p.probe_successes = 0;
  if (metrics_) {
    if (i == 0) metrics_->circuit_state(int(s));
    if (ps_.size() > 1) metrics_->primary_circuit_state(p.b->name(), int(s));
  }
}

CircuitState Router::state(size_t i) {
  std::lock_guard lk(mu_);
  return ps_.at(i)->state;
}

int Router::outstanding(size_t i) const { return ps_.at(i)->outstanding.load(); }

void Router::prune(Primary& p, Clock::time_point now) {
  const auto horizon = now - std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt_.sla_window_s));
  while (!p.outcomes.empty() && p.outcomes.front().first < horizon) p.outcomes.pop_front();
  while (!p.ttft.empty() && p.ttft.front().first < horizon) p.ttft.pop_front();
  while (!p.itl.empty() && p.itl.front().first < horizon) p.itl.pop_front();
}

double Router::primary_p99_ms(size_t i) {
  std::lock_guard lk(mu_);
  prune(*ps_.at(i), Clock::now());
  return nearest_rank(sorted_values(ps_[i]->ttft), 0.99);
}

double Router::primary_itl_p99_ms(size_t i) {
  std::lock_guard lk(mu_);
  prune(*ps_.at(i), Clock::now());
  return nearest_rank(sorted_values(ps_[i]->itl), 0.99);
}

// The admitting primary with the fewest requests outstanding (a half-open one admits one
// probe); -1 when none admits and there is a fallback.
int Router::choose(bool& probe) {
  probe = false;
  std::lock_guard lk(mu_);
  int best = -1;
  const auto now = Clock::now();
  // Ties go round, so equally loaded replicas share the traffic.
  const size_t start = ps_.size() > 1 ? rr_++ % ps_.size() : 0;
  for (size_t k = 0; k < ps_.size(); ++k) {
    const size_t i = (start + k) % ps_.size();
    Primary& p = *ps_[i];
    if (!guarded()) {
      best = 0;
      break;
    }
    if (p.state == CircuitState::Open && ms_between(p.opened_at, now) >= opt_.breaker_cooldown_ms)
      set_state(i, CircuitState::HalfOpen);
    const bool admits = p.state == CircuitState::Closed || (p.state == CircuitState::HalfOpen && !p.probe_in_flight);
    if (admits && (best < 0 || p.outstanding < ps_[best]->outstanding)) best = int(i);
  }
  if (best < 0) {
    if (!fallbacks_.empty()) return -1;
    // Every replica's circuit is open and there is no fallback: the least loaded one serves.
    best = 0;
    for (size_t i = 1; i < ps_.size(); ++i)
      if (ps_[i]->outstanding < ps_[best]->outstanding) best = int(i);
    ++ps_[best]->outstanding;
    return best;
  }
  Primary& p = *ps_[best];
  if (guarded() && p.state == CircuitState::HalfOpen) {
    p.probe_in_flight = true;
    probe = true;
  }
  ++p.outstanding;
  return best;
}

std::deque<std::pair<Backend*, int>> Router::continuations(int exclude) {
  std::deque<std::pair<Backend*, int>> out;
  std::vector<int> others;
  {
    std::lock_guard lk(mu_);
    for (size_t i = 0; i < ps_.size(); ++i)
      if (int(i) != exclude && ps_[i]->state == CircuitState::Closed) others.push_back(int(i));
    std::stable_sort(others.begin(), others.end(),
                     [&](int a, int b) { return ps_[a]->outstanding < ps_[b]->outstanding; });
  }
  for (int i : others) out.emplace_back(ps_[i]->b, i);
  for (Backend* b : fallbacks_) out.emplace_back(b, -1);
  return out;
}

void Router::probe_abandoned(size_t i) {
  std::lock_guard lk(mu_);
  ps_[i]->probe_in_flight = false;
}

void Router::record(size_t i, bool probe, bool ok, double ttft_ms, const std::vector<double>& gaps_ms) {
  if (!guarded()) return;
  std::lock_guard lk(mu_);
  Primary& p = *ps_[i];
  const auto now = Clock::now();
  if (probe) p.probe_in_flight = false;
  prune(p, now);
  auto push_outcome = [&](bool good) {
    p.outcomes.emplace_back(now, good);
    while (int(p.outcomes.size()) > std::max(1, opt_.breaker_window)) p.outcomes.pop_front();
  };
  if (!ok) {
    if (p.state == CircuitState::HalfOpen) {
      set_state(i, CircuitState::Open);
      if (metrics_) metrics_->fallback_activation("circuit_opened_errors");
      return;
    }
    push_outcome(false);
    int failures = 0;
    for (auto& [t, good] : p.outcomes) failures += !good;
    if (p.state == CircuitState::Closed && failures >= opt_.breaker_failures &&
        double(failures) >= opt_.breaker_failure_rate * double(p.outcomes.size())) {
      set_state(i, CircuitState::Open);
      if (metrics_) metrics_->fallback_activation("circuit_opened_errors");
    }
    return;
  }
  if (probe && p.state == CircuitState::HalfOpen) {
    std::vector<double> g = gaps_ms;
    std::sort(g.begin(), g.end());
    const bool slow = (opt_.sla_ttft_p99_ms > 0 && ttft_ms > opt_.sla_ttft_p99_ms) ||
                      (opt_.sla_itl_p99_ms > 0 && nearest_rank(g, 0.5) > opt_.sla_itl_p99_ms);
    if (slow) {
      set_state(i, CircuitState::Open);
      return;
    }
    if (++p.probe_successes >= opt_.breaker_probes) {
      p.outcomes.clear();
      p.ttft.clear();
      p.itl.clear();
      set_state(i, CircuitState::Closed);
    }
    return;
  }
  if (p.state != CircuitState::Closed) return;
  push_outcome(true);
  if (opt_.sla_ttft_p99_ms > 0) p.ttft.emplace_back(now, ttft_ms);
  if (opt_.sla_itl_p99_ms > 0) {
    for (double g : gaps_ms) p.itl.emplace_back(now, g);
    while (p.itl.size() > kMaxItlSamples) p.itl.pop_front();
  }
  if (metrics_ && i == 0) metrics_->primary_p99(nearest_rank(sorted_values(p.ttft), 0.99) / 1000.0);
  if (breached(p.ttft, opt_.sla_ttft_p99_ms, opt_.sla_min_samples) ||
      breached(p.itl, opt_.sla_itl_p99_ms, opt_.sla_min_samples)) {
    set_state(i, CircuitState::Open);
    if (metrics_) metrics_->fallback_activation("circuit_opened_sla");
  }
}

std::unique_ptr<Execution> Router::begin(const GenRequest& req, bool) {
  auto ex = std::unique_ptr<Execution>(new Execution());
  ex->r_ = this;
  ex->req_ = req;
  ex->t_start_ = ex->t_last_ = ex->t_seg_ = Clock::now();
  bool probe = false;
  const int i = choose(probe);
  if (i >= 0) {
    Primary& p = *ps_[i];
    try {
      ex->ch_ = p.b->start(req);
      ex->cur_ = p.b;
      ex->pi_ = i;
      ex->probe_ = probe;
      ex->served_by_ = p.b->name();
      ex->next_ = continuations(i);
      if (metrics_ && ps_.size() > 1) metrics_->primary_outstanding(p.b->name(), p.outstanding);
      return ex;
    } catch (const ApiError& e) {
      --p.outstanding;
      if (probe) probe_abandoned(i);
      // Client errors, or nowhere else to go: the client gets the primary's answer.
      if (!guarded() || e.status == 400 || e.status == 404 || e.status == 413) throw;
      if (metrics_) metrics_->fallback_activation(e.status == 429 ? "overload" : "unavailable");
    } catch (const std::exception&) {
      // Not a refusal but a fault (tokenizer error, bad_alloc, no thread left): it frees the
      // probe slot, counts against the primary, and the request moves on.
      --p.outstanding;
      if (probe) probe_abandoned(i);
      record(size_t(i), false, false, 0, {});
      if (!guarded()) throw ApiError(500, "server_error", "internal_error", "The server had an error while processing your request.");
      if (metrics_) metrics_->fallback_activation("error");
    }
  } else if (metrics_) {
    metrics_->fallback_activation("circuit_open");
  }
  // Elsewhere, in order; the last refusal goes to the client.
  ex->next_ = continuations(i);
  while (!ex->next_.empty()) {
    auto [b, j] = ex->next_.front();
    ex->next_.pop_front();
    if (j >= 0) ++ps_[j]->outstanding;
    try {
      ex->ch_ = b->start(req);
    } catch (const std::exception& e) {
      if (j >= 0) --ps_[j]->outstanding;
      if (ex->next_.empty()) {
        if (dynamic_cast<const ApiError*>(&e)) throw;
        throw ApiError(500, "server_error", "internal_error", "The server had an error while processing your request.");
      }
      if (metrics_) metrics_->fallback_activation("fallback_refused");
      continue;
    }
    ex->cur_ = b;
    ex->pi_ = j;
    ex->served_by_ = b->name();
    ex->switched_ = j < 0;
    return ex;
  }
  throw ApiError(503, "server_error", "unavailable", "no backend can take the request");
}

Execution::~Execution() {
  if (!finished_ && ch_) ch_->cancel();
  if (pi_ >= 0 && !reported_ && probe_) r_->probe_abandoned(size_t(pi_));
  leave_primary();
}

void Execution::leave_primary() {
  if (pi_ < 0) return;
  auto& p = *r_->ps_[pi_];
  --p.outstanding;
  if (r_->metrics_ && r_->ps_.size() > 1) r_->metrics_->primary_outstanding(p.b->name(), p.outstanding);
  pi_ = -1;
}

void Execution::cancel() {
  if (ch_) ch_->cancel();
}

void Execution::report(Outcome o) {
  if (pi_ < 0 || reported_) return;
  reported_ = true;
  const double ttft = ms_between(t_seg_, t_seg_first_ ? *t_seg_first_ : Clock::now());
  r_->record(size_t(pi_), probe_, o == Outcome::Success, ttft, gaps_ms_);
}

bool Execution::switch_next(const std::string& reason, std::optional<Event>& out) {
  if (!can_switch()) return false;
  ch_->cancel();
  const bool was_primary = pi_ >= 0;
  if (was_primary) {
    report(Outcome::Failure);
    leave_primary();
  }
  if (r_->metrics_) r_->metrics_->fallback_activation(was_primary ? reason : "fallback_" + reason);
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
  while (!next_.empty()) {
    auto [b, j] = next_.front();
    next_.pop_front();
    if (j >= 0) ++r_->ps_[j]->outstanding;
    try {
      ch_ = b->start(cont);
    } catch (const ApiError& e) {
      if (j >= 0) --r_->ps_[j]->outstanding;
      if (can_switch()) continue;
      finished_ = true;
      out = Event::error(e.status, "primary failed (" + reason + ") and the fallback refused: " + e.what());
      return true;
    } catch (const std::exception&) {
      if (j >= 0) --r_->ps_[j]->outstanding;
      if (can_switch()) continue;
      finished_ = true;
      out = Event::error(500, "primary failed (" + reason + ") and the fallback had an internal error");
      return true;
    }
    cur_ = b;
    pi_ = j;
    probe_ = false;
    reported_ = false;
    gaps_ms_.clear();
    t_seg_ = t_last_ = Clock::now();
    t_seg_first_.reset();
    if (text_.empty()) served_by_ = b->name();
    return true;
  }
  return false;
}

std::optional<Event> Execution::next(Clock::time_point wake) {
  for (;;) {
    if (finished_) return Event::error(500, "request already finished");
    Clock::time_point deadline = wake;
    std::optional<Clock::time_point> primary_deadline;
    if (pi_ >= 0 && can_switch()) {
      const auto& o = r_->opt_;
      const int gap = o.token_timeout_ms < 0 ? o.timeout_ms : o.token_timeout_ms;
      if (!t_seg_first_ && o.timeout_ms > 0) primary_deadline = t_seg_ + std::chrono::milliseconds(o.timeout_ms);
      else if (t_seg_first_ && gap > 0) primary_deadline = t_last_ + std::chrono::milliseconds(gap);
      if (primary_deadline) deadline = std::min(deadline, *primary_deadline);
    }
    auto ev = ch_->pop(deadline);
    if (!ev) {
      if (primary_deadline && Clock::now() >= *primary_deadline) {
        std::optional<Event> out;
        switch_next("timeout", out);
        if (out) return out;
        continue;
      }
      return std::nullopt;
    }
    switch (ev->kind) {
      case Event::Text: {
        const auto now = Clock::now();
        // Each token is progress, also one whose text is held back (empty text).
        if (pi_ >= 0 && t_seg_first_ && ev->tokens > 0 && gaps_ms_.size() < kMaxItlSamples) {
          const double g = ms_between(t_last_, now) / ev->tokens;
          for (int k = 0; k < ev->tokens && gaps_ms_.size() < kMaxItlSamples; ++k) gaps_ms_.push_back(g);
        }
        t_last_ = now;
        if (!t_first_) t_first_ = now;
        if (!t_seg_first_) t_seg_first_ = now;
        text_ += ev->text;
        tokens_ += ev->tokens;
        return ev;
      }
      case Event::Done:
        report(Outcome::Success);
        leave_primary();
        finished_ = true;
        if (switched_) ev->usage.completion_tokens = tokens_;
        return ev;
      case Event::Error: {
        std::optional<Event> out;
        if (ev->status != 400 && can_switch() && switch_next("error", out)) {
          if (out) return out;
          continue;
        }
        report(Outcome::Failure);
        leave_primary();
        finished_ = true;
        return ev;
      }
    }
  }
}

}  // namespace samq::serve
