// Fallback routing and the circuit breaker, with two fake models whose continuations are
// known by hand: a request that the primary abandons mid-way must still produce exactly the
// text one model would have produced alone.
#include <gtest/gtest.h>

#include <thread>

#include "serve/fake_generator.h"
#include "serve/fault_injection.h"
#include "serve/router.h"

using namespace samq::serve;
using namespace std::chrono_literals;

namespace {
GenRequest req(std::string prompt, int max_tokens) {
  GenRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0;
  return r;
}
struct Out {
  std::string text, finish, served_by, current;
  int status = 0;
  bool switched = false;
  Usage usage;
};
Out drive(Router& r, const GenRequest& g, bool stream, const std::function<void(int)>& after_text = {}) {
  auto ex = r.begin(g, stream);
  Out o;
  int n = 0;
  for (int guard = 0; guard < 10000; ++guard) {
    auto e = ex->next(Clock::now() + 50ms);
    if (!e) continue;
    if (e->kind == Event::Text) {
      o.text += e->text;
      if (after_text) after_text(++n);
    } else {
      if (e->kind == Event::Done) o.finish = e->finish_reason, o.usage = e->usage;
      else o.status = e->status, o.finish = e->message;
      break;
    }
  }
  o.served_by = ex->served_by();
  o.current = ex->current();
  o.switched = ex->switched();
  return o;
}
std::string greedy(char last, int n) {
  std::string out;
  int c = last;
  while (int(out.size()) < n && (c = FakeGenerator::next_token(c)) != FakeGenerator::kEos) out += char(c);
  return out;
}

struct Fixture {
  FaultInjectingGenerator prim{std::make_unique<FakeGenerator>(FakeGeneratorOptions{.model_id = "primary", .step_ms = 1})};
  FakeGenerator fb{{.model_id = "fallback", .step_ms = 1}};
  Metrics metrics;
  LocalBackend pb{prim, {4, 8, 512}, &metrics};
  LocalBackend fbb{fb, {4, 8, 512}, &metrics};
};
}  // namespace

TEST(Router, PrimaryServesWhenHealthy) {
  Fixture f;
  Router r(f.pb, &f.fbb, {}, &f.metrics);
  auto o = drive(r, req("a", 10), false);
  EXPECT_EQ(o.text, greedy('a', 10));
  EXPECT_EQ(o.served_by, "primary");
  EXPECT_FALSE(o.switched);
}

TEST(Router, ErrorMidStreamContinuesOnFallback) {
  Fixture f;
  Router r(f.pb, &f.fbb, {}, &f.metrics);
  // The primary starts failing after the third piece of text.
  auto o = drive(r, req("a", 20), true, [&](int n) { if (n == 3) f.prim.set_fail(true); });
  EXPECT_EQ(o.text, greedy('a', 20));  // one uninterrupted answer
  EXPECT_EQ(o.finish, "length");
  EXPECT_EQ(o.usage.completion_tokens, 20);
  EXPECT_TRUE(o.switched);
  EXPECT_EQ(o.served_by, "primary");  // it produced the first token
  EXPECT_EQ(o.current, "fallback");   // and the fallback the last
  EXPECT_NE(f.metrics.render().find("samq_fallback_activations_total{reason=\"error\"} 1"), std::string::npos);
}

TEST(Router, TimeoutMovesToFallback) {
  Fixture f;
  Router r(f.pb, &f.fbb, {.timeout_ms = 100}, &f.metrics);
  f.prim.set_delay_ms(400);
  const auto t0 = Clock::now();
  auto o = drive(r, req("m", 5), true);
  EXPECT_EQ(o.text, greedy('m', 5));
  EXPECT_EQ(o.served_by, "fallback");
  EXPECT_LT(Clock::now() - t0, 2s);
}

TEST(Router, NoFallbackMeansErrorsReachTheClient) {
  Fixture f;
  Router r(f.pb, nullptr, {.timeout_ms = 50}, &f.metrics);
  f.prim.set_fail(true);
  auto o = drive(r, req("a", 5), false);
  EXPECT_EQ(o.status, 500);
}

TEST(Router, BreakerOpensOnErrorsAndRecoversThroughProbes) {
  Fixture f;
  Router r(f.pb, &f.fbb, {.breaker_failures = 2, .breaker_cooldown_ms = 200, .breaker_probes = 2}, &f.metrics);
  f.prim.set_fail(true);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(drive(r, req("a", 3), false).text, "bcd");
  EXPECT_EQ(r.state(), CircuitState::Open);
  auto o = drive(r, req("a", 3), false);
  EXPECT_EQ(o.served_by, "fallback");  // straight to the fallback while open
  f.prim.set_fail(false);
  std::this_thread::sleep_for(250ms);
  o = drive(r, req("a", 3), false);  // probe 1
  EXPECT_EQ(o.served_by, "primary");
  EXPECT_EQ(r.state(), CircuitState::HalfOpen);
  drive(r, req("a", 3), false);  // probe 2
  EXPECT_EQ(r.state(), CircuitState::Closed);
}

TEST(Router, FailedProbeReopens) {
  Fixture f;
  Router r(f.pb, &f.fbb, {.breaker_failures = 1, .breaker_cooldown_ms = 100}, &f.metrics);
  f.prim.set_fail(true);
  drive(r, req("a", 3), false);
  EXPECT_EQ(r.state(), CircuitState::Open);
  std::this_thread::sleep_for(150ms);
  auto o = drive(r, req("a", 3), false);  // the probe fails, the fallback finishes it
  EXPECT_EQ(o.text, "bcd");
  EXPECT_EQ(r.state(), CircuitState::Open);
}

TEST(Router, SlaP99OpensTheCircuit) {
  Fixture f;
  RouterOptions o;
  o.sla_p99_ms = 250;
  o.sla_min_samples = 4;
  o.breaker_cooldown_ms = 60000;
  Router r(f.pb, &f.fbb, o, &f.metrics);
  for (int i = 0; i < 4; ++i) drive(r, req("w", 3), false);  // ~4 steps of 1 ms
  EXPECT_EQ(r.state(), CircuitState::Closed);
  EXPECT_LT(r.primary_p99_ms(), 250);
  f.prim.set_delay_ms(100);  // 4 steps → >= 400 ms per request
  drive(r, req("w", 3), false);
  EXPECT_GT(r.primary_p99_ms(), 250);
  EXPECT_EQ(r.state(), CircuitState::Open);
  EXPECT_EQ(drive(r, req("w", 3), false).served_by, "fallback");
  EXPECT_NE(f.metrics.render().find("samq_circuit_state 1"), std::string::npos);
}

TEST(Router, ChainMovesToTheNextFallback) {
  Fixture f;
  FaultInjectingGenerator second{std::make_unique<FakeGenerator>(FakeGeneratorOptions{.model_id = "second", .step_ms = 1})};
  LocalBackend sb{second, {2, 2, 512}, &f.metrics};
  // The primary and the first fallback both fail: the second one answers.
  FaultInjectingGenerator first{std::make_unique<FakeGenerator>(FakeGeneratorOptions{.model_id = "first", .step_ms = 1})};
  LocalBackend fb1{first, {2, 2, 512}, &f.metrics};
  Router r(f.pb, std::vector<Backend*>{&fb1, &sb}, {}, &f.metrics);
  f.prim.set_fail(true);
  first.set_fail(true);
  auto o = drive(r, req("p", 6), false);
  EXPECT_EQ(o.text, greedy('p', 6));
  EXPECT_EQ(o.served_by, "second");
  // Mid-stream: the primary fails after 2 pieces, the first fallback after 2 more.
  f.prim.set_fail(false);
  first.set_fail(false);
  int n = 0;
  o = drive(r, req("a", 12), true, [&](int k) {
    n = k;
    if (k == 2) f.prim.set_fail(true);
    if (k == 4) first.set_fail(true);
  });
  EXPECT_EQ(o.text, greedy('a', 12));
  EXPECT_EQ(o.current, "second");
  EXPECT_GE(n, 6);
}
