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

// Never ends a sequence on its own (after "z." it starts again at "a"): long answers.
class Endless : public FakeGenerator {
 public:
  using FakeGenerator::FakeGenerator;
  bool is_eog(int32_t) const override { return false; }
};

struct Fixture {
  explicit Fixture(bool endless = false)
      : prim(endless ? std::unique_ptr<Generator>(std::make_unique<Endless>(FakeGeneratorOptions{.model_id = "primary", .step_ms = 1}))
                     : std::make_unique<FakeGenerator>(FakeGeneratorOptions{.model_id = "primary", .step_ms = 1})) {}
  FaultInjectingGenerator prim;
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
  o.sla_ttft_p99_ms = 250;
  o.sla_min_samples = 4;
  o.breaker_cooldown_ms = 60000;
  Router r(f.pb, &f.fbb, o, &f.metrics);
  for (int i = 0; i < 4; ++i) drive(r, req("w", 3), false);  // first token after ~1 ms
  EXPECT_EQ(r.state(), CircuitState::Closed);
  EXPECT_LT(r.primary_p99_ms(), 250);
  f.prim.set_delay_ms(300);  // the first token takes >= 300 ms
  drive(r, req("w", 1), false);
  EXPECT_GT(r.primary_p99_ms(), 250);
  EXPECT_EQ(r.state(), CircuitState::Closed) << "one slow sample of five decided alone";
  drive(r, req("w", 1), false);
  EXPECT_EQ(r.state(), CircuitState::Open);
  EXPECT_EQ(drive(r, req("w", 3), false).served_by, "fallback");
  EXPECT_NE(f.metrics.render().find("samq_circuit_state 1"), std::string::npos);
}

// Issue 17 item 3: the breaker trips only on real faults.
TEST(Breaker, HealthyLongNonStreamingRequestsKeepTheCircuitClosed) {
  Fixture f(/*endless=*/true);
  f.prim.set_delay_ms(5);  // 50 tokens take >= 250 ms, each one ~6 ms
  RouterOptions o;
  o.timeout_ms = 100;
  Router r(f.pb, &f.fbb, o, &f.metrics);
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    auto out = drive(r, req("a", 50), /*stream=*/false);
    EXPECT_EQ(out.usage.completion_tokens, 50);
    EXPECT_GT(Clock::now() - t0, 250ms);
    EXPECT_EQ(out.served_by, "primary");
    EXPECT_FALSE(out.switched) << "a request making steady progress was treated as a primary failure";
    EXPECT_EQ(out.current, "primary");
  }
  EXPECT_EQ(r.state(), CircuitState::Closed);
}

TEST(Breaker, PerTokenDeadlineStillCatchesAStalledPrimary) {
  Fixture f;
  RouterOptions o;
  o.timeout_ms = 100;
  Router r(f.pb, &f.fbb, o, &f.metrics);
  // Tokens flow, then the primary stalls (400 ms per step) mid-answer: the rest comes from the fallback.
  auto out = drive(r, req("a", 20), false, [&](int n) { if (n == 3) f.prim.set_delay_ms(400); });
  EXPECT_EQ(out.text, greedy('a', 20));
  EXPECT_TRUE(out.switched);
  EXPECT_EQ(out.current, "fallback");
}

TEST(Breaker, MixedLengthsKeepTheCircuitClosed) {
  Fixture f(/*endless=*/true);
  f.prim.set_delay_ms(3);
  RouterOptions o;
  o.timeout_ms = 100;
  o.sla_ttft_p99_ms = 100;  // end to end, the long ones take 200-320 ms
  o.sla_itl_p99_ms = 100;
  o.sla_min_samples = 4;
  Router r(f.pb, &f.fbb, o, &f.metrics);
  for (int n : {2, 60, 5, 80, 1, 50, 3, 70}) {
    auto out = drive(r, req("a", n), n % 2 == 0);
    EXPECT_FALSE(out.switched) << n;
  }
  EXPECT_EQ(r.state(), CircuitState::Closed);
  EXPECT_LT(r.primary_p99_ms(), 100);
  EXPECT_GT(r.primary_itl_p99_ms(), 0);
}

TEST(Breaker, InterTokenSlaOpensOnSlowTokens) {
  Fixture f;
  RouterOptions o;
  o.sla_itl_p99_ms = 40;
  o.breaker_cooldown_ms = 60000;
  Router r(f.pb, &f.fbb, o, &f.metrics);
  drive(r, req("a", 8), false);
  EXPECT_EQ(r.state(), CircuitState::Closed);
  f.prim.set_delay_ms(60);
  drive(r, req("a", 8), false);
  EXPECT_GT(r.primary_itl_p99_ms(), 40);
  EXPECT_EQ(r.state(), CircuitState::Open);
}

TEST(Breaker, HeldBackStopTextIsNotSilence) {
  Fixture f;
  f.prim.set_delay_ms(30);
  RouterOptions o;
  o.timeout_ms = 100;
  Router r(f.pb, &f.fbb, o, &f.metrics);
  // "bcdefghijkl" could still become the stop string, so ~11 tokens (> 300 ms) show no text.
  GenRequest g = req("a", 16);
  g.stop = {"bcdefghijklX"};
  for (bool stream : {true, false}) {
    auto out = drive(r, g, stream);
    EXPECT_EQ(out.text, greedy('a', 16)) << stream;
    EXPECT_FALSE(out.switched) << "held-back text counted as silence (stream " << stream << ")";
  }
  EXPECT_EQ(r.state(), CircuitState::Closed);
}

TEST(Breaker, OneSlowSampleAmongFewDoesNotDecideAlone) {
  Fixture f;
  RouterOptions o;
  o.sla_ttft_p99_ms = 150;
  o.sla_min_samples = 4;
  o.breaker_cooldown_ms = 60000;
  Router r(f.pb, &f.fbb, o, &f.metrics);
  for (int i = 0; i < 20; ++i) drive(r, req("a", 2), false);
  f.prim.set_delay_ms(250);
  drive(r, req("a", 1), false);  // one slow first token of 21: the p99, but only that
  EXPECT_GT(r.primary_p99_ms(), 150);
  EXPECT_EQ(r.state(), CircuitState::Closed);
  drive(r, req("a", 1), false);
  drive(r, req("a", 1), false);  // 3 of 23 (13%): a real slowdown
  EXPECT_EQ(r.state(), CircuitState::Open);
}

TEST(Breaker, AlternatingFailuresOpenTheCircuit) {
  Fixture f;
  RouterOptions o;
  o.breaker_failures = 3;
  o.breaker_cooldown_ms = 60000;
  Router r(f.pb, &f.fbb, o, &f.metrics);
  for (int i = 0; i < 8 && r.state() == CircuitState::Closed; ++i) {
    f.prim.set_fail(i % 2 == 0);
    EXPECT_EQ(drive(r, req("a", 3), false).text, "bcd");
  }
  EXPECT_EQ(r.state(), CircuitState::Open) << "fail, ok, fail, ok...: never 3 in a row, but half fail";
}

TEST(Breaker, RareFailuresAmongManySuccessesKeepItClosed) {
  Fixture f;
  RouterOptions o;
  o.breaker_failures = 3;
  Router r(f.pb, &f.fbb, o, &f.metrics);
  for (int i = 0; i < 20; ++i) {
    f.prim.set_fail(i % 5 == 0);  // 20%
    drive(r, req("a", 2), false);
  }
  EXPECT_EQ(r.state(), CircuitState::Closed);
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

// Issue 17 item 10: several primaries (replicas), balanced by fewest outstanding requests, each
// with its own breaker.
TEST(Replicas, FewestOutstandingAndOneBreakerEach) {
  Metrics metrics;
  FaultInjectingGenerator ga{std::make_unique<FakeGenerator>(FakeGeneratorOptions{.model_id = "A", .step_ms = 1})};
  FaultInjectingGenerator gb{std::make_unique<FakeGenerator>(FakeGeneratorOptions{.model_id = "B", .step_ms = 1})};
  FakeGenerator gf{{.model_id = "fallback", .step_ms = 1}};
  LocalBackend a{ga, {4, 8, 512}, &metrics}, b{gb, {4, 8, 512}, &metrics}, fb{gf, {4, 8, 512}, &metrics};
  RouterOptions o;
  o.breaker_failures = 2;
  o.breaker_cooldown_ms = 60000;
  Router r(std::vector<Backend*>{&a, &b}, std::vector<Backend*>{&fb}, o, &metrics);
  // Four requests held open: two on each replica.
  ga.set_delay_ms(50);
  gb.set_delay_ms(50);
  std::vector<std::unique_ptr<Execution>> held;
  for (int i = 0; i < 4; ++i) held.push_back(r.begin(req("a", 20)));
  EXPECT_EQ(r.outstanding(0), 2);
  EXPECT_EQ(r.outstanding(1), 2);
  // B is busier now: the next one goes to A.
  held.pop_back();  // a request on B leaves (cancelled)
  held.pop_back();  // and one on A
  held.push_back(r.begin(req("a", 20)));
  held.push_back(r.begin(req("a", 20)));
  EXPECT_EQ(r.outstanding(0) + r.outstanding(1), 4);
  EXPECT_EQ(r.outstanding(0), r.outstanding(1));
  held.clear();
  EXPECT_EQ(r.outstanding(0) + r.outstanding(1), 0);
  ga.set_delay_ms(0);
  gb.set_delay_ms(0);
  // A fails: its requests finish on B, A's circuit opens, B's stays closed, and new requests go
  // to B, not to the fallback.
  ga.set_fail(true);
  for (int i = 0; i < 6; ++i) {
    auto out = drive(r, req("m", 5), false);
    EXPECT_EQ(out.text, greedy('m', 5));
    EXPECT_NE(out.current, "fallback");
  }
  EXPECT_EQ(r.state(0), CircuitState::Open);
  EXPECT_EQ(r.state(1), CircuitState::Closed);
  auto out = drive(r, req("m", 5), true);
  EXPECT_EQ(out.served_by, "B");
  EXPECT_FALSE(out.switched);
  const std::string m = metrics.render();
  EXPECT_NE(m.find("samq_primary_circuit_state{backend=\"A\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("samq_primary_circuit_state{backend=\"B\"} 0"), std::string::npos) << m;
  // Mid-answer, B fails too: the rest comes from the fallback, one uninterrupted answer.
  out = drive(r, req("a", 20), true, [&](int n) { if (n == 3) gb.set_fail(true); });
  EXPECT_EQ(out.text, greedy('a', 20));
  EXPECT_EQ(out.current, "fallback");
}
