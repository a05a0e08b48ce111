// Continuous batching over the fake generator, whose greedy continuation is known by hand
// (serve/fake_generator.h): after a letter the next letter, after 'z' a '.', then EOS.
#include <gtest/gtest.h>

#include <thread>

#include "serve/fake_generator.h"
#include "serve/fault_injection.h"
#include "serve/scheduler.h"

using namespace samq::serve;
using namespace std::chrono_literals;

namespace {
GenRequest req(std::string prompt, int max_tokens, std::vector<std::string> stop = {}) {
  GenRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0;
  r.stop = std::move(stop);
  return r;
}
struct Result {
  std::string text, finish;
  Usage usage;
  int status = 0;
};
Result collect(RequestChannel& ch) {
  Result r;
  for (;;) {
    auto e = ch.pop(Clock::now() + 10s);
    if (!e) { r.status = -1; return r; }
    if (e->kind == Event::Text) r.text += e->text;
    else if (e->kind == Event::Done) { r.finish = e->finish_reason; r.usage = e->usage; return r; }
    else { r.status = e->status; r.finish = e->message; return r; }
  }
}
// Hand-derived greedy continuation of the fake model.
std::string expected(char last, int max_tokens) {
  std::string out;
  int c = last;
  while (int(out.size()) < max_tokens) {
    c = FakeGenerator::next_token(c);
    if (c == FakeGenerator::kEos) break;
    out += char(c);
  }
  return out;
}
}  // namespace

TEST(Scheduler, GreedyContinuationAndFinishReasons) {
  FakeGenerator gen;
  Scheduler s(gen, {2, 4, 512});
  auto r = collect(*s.submit(req("x", 10)));
  EXPECT_EQ(r.text, "yz.");
  EXPECT_EQ(r.finish, "stop");
  EXPECT_EQ(r.usage.prompt_tokens, 2);  // BOS + 'x'
  EXPECT_EQ(r.usage.completion_tokens, 3);
  r = collect(*s.submit(req("a", 5)));
  EXPECT_EQ(r.text, expected('a', 5));
  EXPECT_EQ(r.finish, "length");
  r = collect(*s.submit(req("a", 20, {"fgh"})));
  EXPECT_EQ(r.text, "bcde");
  EXPECT_EQ(r.finish, "stop");
}

TEST(Scheduler, ContextLimits) {
  FakeGenerator gen({.n_ctx = 16});
  Scheduler s(gen, {2, 4, 4});
  EXPECT_THROW(s.submit(req(std::string(20, 'a'), 1)), ApiError);
  try {
    s.submit(req("abcdefghij", 10));
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "context_length_exceeded");
  }
  // max_tokens <= 0: generation stops when the context is full (prompt chunked by 4).
  auto r = collect(*s.submit(req("bbbbbbbbbbb", 0)));  // 12 tokens with BOS
  EXPECT_EQ(r.finish, "length");
  EXPECT_EQ(r.usage.prompt_tokens + r.usage.completion_tokens, 16);
  EXPECT_EQ(r.text, expected('b', 4));
}

TEST(Scheduler, RequestsDecodeTogether) {
  FakeGenerator gen({.max_sequences = 4, .step_ms = 2});
  Scheduler s(gen, {4, 8, 512});
  std::vector<std::shared_ptr<RequestChannel>> chs;
  for (int i = 0; i < 8; ++i) chs.push_back(s.submit(req(std::string(1, char('a' + i)), 12)));
  for (int i = 0; i < 8; ++i) {
    auto r = collect(*chs[i]);
    EXPECT_EQ(r.text, expected(char('a' + i), 12)) << i;
  }
  EXPECT_EQ(gen.max_batch_seen(), 4);
  // 8 requests of 13 steps each on 4 slots: far fewer steps than one at a time (8*13).
  EXPECT_LT(gen.steps(), 8 * 13 / 2 + 4);
  EXPECT_EQ(gen.live_sequences(), 0);
}

TEST(Scheduler, BoundedQueueRefusesWith429) {
  FakeGenerator gen({.step_ms = 5});
  Scheduler s(gen, {1, 2, 512});
  std::vector<std::shared_ptr<RequestChannel>> ok;
  int refused = 0;
  for (int i = 0; i < 6; ++i) {
    try {
      ok.push_back(s.submit(req("a", 20)));
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 429);
      EXPECT_GE(e.retry_after_s, 1);
      ++refused;
    }
  }
  EXPECT_EQ(int(ok.size()), 3);  // 1 slot + 2 queued
  EXPECT_EQ(refused, 3);
  for (auto& c : ok) EXPECT_EQ(collect(*c).text, expected('a', 20));
}

TEST(Scheduler, CancelFreesTheSlot) {
  FakeGenerator gen({.n_ctx = 4096, .step_ms = 2});
  Scheduler s(gen, {1, 1, 512});
  auto a = s.submit(req(std::string(1, '#'), 0));  // '#' -> 'a'...'z' '.' EOS: ends by itself
  auto b = s.submit(req("y", 5));                  // waits for the slot
  auto first = a->pop(Clock::now() + 5s);
  ASSERT_TRUE(first);
  a->cancel();
  auto r = collect(*b);
  EXPECT_EQ(r.text, "z.");
  for (int i = 0; i < 100 && gen.live_sequences() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(gen.live_sequences(), 0);
}

TEST(Scheduler, FailingStepFailsOnlyThatBatch) {
  auto inner = std::make_unique<FakeGenerator>();
  FaultInjectingGenerator gen(std::move(inner));
  Scheduler s(gen, {2, 2, 512});
  gen.set_fail(true);
  auto r = collect(*s.submit(req("a", 5)));
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.finish.find("injected fault"), std::string::npos);
  gen.set_fail(false);
  EXPECT_EQ(collect(*s.submit(req("a", 5))).text, "bcdef");
}

TEST(Scheduler, StopFailsPendingWith503) {
  FakeGenerator gen({.step_ms = 5});
  auto s = std::make_unique<Scheduler>(gen, SchedulerOptions{1, 4, 512});
  auto a = s->submit(req("a", 0));
  auto b = s->submit(req("a", 0));
  s->stop();
  auto ra = collect(*a), rb = collect(*b);
  EXPECT_TRUE(ra.status == 503 || ra.finish == "stop");
  EXPECT_EQ(rb.status, 503);
  EXPECT_THROW(s->submit(req("a", 1)), ApiError);
}
