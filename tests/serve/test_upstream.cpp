// UpstreamBackend against a real HTTP server (samq's own Server over the fake generator, on a
// loopback port): SSE parsing, stop sequences applied locally, errors when the upstream is
// down or refuses.
#include <gtest/gtest.h>

#include <thread>

#include "core/error.h"
#include "serve/fake_generator.h"
#include "serve/server.h"

using namespace samq::serve;
using namespace std::chrono_literals;

namespace {
struct Upstream {
  FakeGenerator gen{{.model_id = "up", .step_ms = 1}};
  Metrics metrics;
  LocalBackend backend{gen, {2, 0, 512}, &metrics};
  Router router{backend, nullptr, {}, &metrics};
  Server server{make_opt(), router, metrics};
  std::thread th;
  int port;
  static ServerOptions make_opt() {
    ServerOptions o;
    o.port = 0;
    o.model_id = "up";
    o.http_threads = 8;
    return o;
  }
  Upstream() {
    port = server.bind();
    th = std::thread([this] { server.run(); });
    std::this_thread::sleep_for(50ms);
  }
  ~Upstream() {
    server.shutdown();
    th.join();
  }
};
struct Got {
  std::string text, finish;
  int status = 0, completion_tokens = 0;
};
Got collect(RequestChannel& ch) {
  Got g;
  for (;;) {
    auto e = ch.pop(Clock::now() + 10s);
    if (!e) { g.status = -1; return g; }
    if (e->kind == Event::Text) g.text += e->text;
    else if (e->kind == Event::Done) { g.finish = e->finish_reason; g.completion_tokens = e->usage.completion_tokens; return g; }
    else { g.status = e->status; g.finish = e->message; return g; }
  }
}
GenRequest req(std::string p, int n, std::vector<std::string> stop = {}) {
  GenRequest r;
  r.prompt = std::move(p);
  r.max_tokens = n;
  r.sampling.temperature = 0;
  r.stop = std::move(stop);
  return r;
}
}  // namespace

TEST(Upstream, StreamsTheUpstreamAnswer) {
  Upstream up;
  UpstreamBackend b("http://127.0.0.1:" + std::to_string(up.port) + "/v1", "up", 5000);
  auto g = collect(*b.start(req("k", 8)));
  EXPECT_EQ(g.status, 0) << g.finish;
  EXPECT_EQ(g.text, "lmnopqrs");
  EXPECT_EQ(g.finish, "length");
  EXPECT_EQ(g.completion_tokens, 8);
  // Five stop sequences: OpenAI takes four, the fifth is applied here.
  g = collect(*b.start(req("a", 20, {"zz1", "zz2", "zz3", "zz4", "fg"})));
  EXPECT_EQ(g.text, "bcde");
  EXPECT_EQ(g.finish, "stop");
  EXPECT_EQ(b.name(), "upstream:127.0.0.1:" + std::to_string(up.port));
}

TEST(Upstream, ErrorsBecomeErrorEvents) {
  int dead_port;
  {
    Upstream up;
    dead_port = up.port;
    UpstreamBackend b("http://127.0.0.1:" + std::to_string(up.port), "", 5000);
    // The upstream's own 400 (prompt longer than its context) comes back as an error event.
    auto g = collect(*b.start(req(std::string(600, 'a'), 4)));
    EXPECT_EQ(g.status, 502);
    EXPECT_NE(g.finish.find("400"), std::string::npos) << g.finish;
  }
  UpstreamBackend gone("http://127.0.0.1:" + std::to_string(dead_port), "", 1000);
  auto g = collect(*gone.start(req("a", 4)));
  EXPECT_EQ(g.status, 502);
  EXPECT_THROW(UpstreamBackend("ftp://x", "", 1000), samq::Error);
}
