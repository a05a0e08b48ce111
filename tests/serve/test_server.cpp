// The HTTP layer in process, over the fake generator: OpenAI error objects and statuses
// (400/401/404/413/429+Retry-After/503), SSE framing, served-by header, metrics, drain.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "serve/fake_generator.h"
#include "serve/server.h"

using namespace samq::serve;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {
struct Harness {
  FakeGenerator gen;
  Metrics metrics;
  LocalBackend backend;
  Router router;
  Server server;
  std::thread th;
  int port;
  Harness(FakeGeneratorOptions go, SchedulerOptions so, ServerOptions opt)
      : gen(go), backend(gen, so, &metrics), router(backend, nullptr, {}, &metrics),
        server(with_defaults(opt, go), router, metrics) {
    port = server.bind();
    th = std::thread([this] { server.run(); });
    httplib::Client c("127.0.0.1", port);
    for (int i = 0; i < 200; ++i) {
      if (auto r = c.Get("/ready"); r && r->status == 200) break;
      std::this_thread::sleep_for(10ms);
    }
  }
  static ServerOptions with_defaults(ServerOptions o, const FakeGeneratorOptions& go) {
    o.port = 0;
    o.model_id = go.model_id;
    o.http_threads = 16;
    return o;
  }
  ~Harness() {
    server.shutdown();
    th.join();
  }
  httplib::Client client() {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(10, 0);
    return c;
  }
};

void expect_error(const httplib::Result& r, int status, const std::string& type) {
  ASSERT_TRUE(r) << "no response";
  EXPECT_EQ(r->status, status) << r->body;
  json j = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
  EXPECT_EQ(j["error"]["type"], type) << r->body;
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_TRUE(j["error"].contains("param") && j["error"].contains("code"));
}
}  // namespace

TEST(Server, CompletionAndHeaders) {
  Harness h({}, {2, 2, 512}, {});
  auto c = h.client();
  auto r = c.Post("/v1/completions", R"({"model":"fake-model","prompt":"x","max_tokens":10,"temperature":0})", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("x-samq-served-by"), "fake-model");
  json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["text"], "yz.");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  EXPECT_EQ(j["model"], "fake-model");
}

TEST(Server, StreamingFraming) {
  Harness h({}, {2, 2, 512}, {});
  auto c = h.client();
  auto r = c.Post("/v1/chat/completions",
                  R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":3,"temperature":0,"stream":true,"stream_options":{"include_usage":true}})",
                  "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_NE(r->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  std::vector<std::string> events;
  for (size_t pos = 0; pos < r->body.size();) {
    size_t e = r->body.find("\n\n", pos);
    ASSERT_NE(e, std::string::npos) << "unterminated event";
    events.push_back(r->body.substr(pos, e - pos));
    pos = e + 2;
  }
  ASSERT_GE(events.size(), 5u);
  EXPECT_EQ(events.back(), "data: [DONE]");
  std::string text;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    ASSERT_EQ(events[i].rfind("data: ", 0), 0u);
    json j = json::parse(events[i].substr(6));
    EXPECT_EQ(j["object"], "chat.completion.chunk");
    if (i == 0) {
      EXPECT_EQ(j["choices"][0]["delta"]["role"], "assistant");
    }
    if (!j["choices"].empty() && j["choices"][0]["delta"].contains("content")) text += j["choices"][0]["delta"]["content"];
    if (i + 2 == events.size()) {
      EXPECT_TRUE(j["choices"].empty());
      EXPECT_EQ(j["usage"]["completion_tokens"], 3);
    }
  }
  // chatml prompt ends with "assistant\n": the fake model continues "\n" with "abc".
  EXPECT_EQ(text, "abc");
}

TEST(Server, ErrorObjects) {
  ServerOptions o;
  o.api_key = "k";
  o.max_body_bytes = 1000;
  Harness h({}, {1, 1, 512}, o);
  auto c = h.client();
  httplib::Headers auth = {{"Authorization", "Bearer k"}};
  expect_error(c.Post("/v1/completions", R"({"prompt":"x"})", "application/json"), 401, "invalid_request_error");
  expect_error(c.Post("/v1/completions", {{"Authorization", "Bearer no"}}, R"({"prompt":"x"})", "application/json"), 401,
               "invalid_request_error");
  expect_error(c.Post("/v1/completions", auth, "{nope", "application/json"), 400, "invalid_request_error");
  expect_error(c.Post("/v1/completions", auth, R"({"prompt":"x","top_p":"high"})", "application/json"), 400,
               "invalid_request_error");
  expect_error(c.Post("/v1/completions", auth, R"([1,2])", "application/json"), 400, "invalid_request_error");
  expect_error(c.Post("/v1/completions", auth, std::string(5000, ' '), "application/json"), 413, "invalid_request_error");
  expect_error(c.Get("/v1/nothing", auth), 404, "invalid_request_error");
  expect_error(c.Get("/v1/models/other", auth), 404, "invalid_request_error");
  auto m = c.Get("/v1/models", auth);
  ASSERT_TRUE(m);
  EXPECT_EQ(json::parse(m->body)["data"][0]["id"], "fake-model");
  EXPECT_EQ(c.Get("/health")->status, 200);  // no key needed
}

TEST(Server, OverloadGets429WithRetryAfter) {
  Harness h({.step_ms = 20}, {1, 0, 512}, {});
  std::thread busy([&] {
    auto c = h.client();
    c.Post("/v1/completions", R"({"prompt":"a","max_tokens":60,"temperature":0})", "application/json");
  });
  std::this_thread::sleep_for(250ms);
  auto c = h.client();
  auto r = c.Post("/v1/completions", R"({"prompt":"a","max_tokens":2})", "application/json");
  expect_error(r, 429, "rate_limit_error");
  EXPECT_FALSE(r->get_header_value("Retry-After").empty());
  busy.join();
  EXPECT_NE(h.metrics.render().find("samq_rejected_requests_total{reason=\"queue_full\"} 1"), std::string::npos);
}

TEST(Server, DrainFinishesInFlightAndRefusesNew) {
  Harness h({.step_ms = 20}, {2, 2, 512}, {});
  std::string body;
  std::thread inflight([&] {
    auto c = h.client();
    auto r = c.Post("/v1/completions", R"({"prompt":"a","max_tokens":25,"temperature":0})", "application/json");
    if (r) body = r->body;
  });
  std::this_thread::sleep_for(150ms);
  std::thread drain([&] { h.server.shutdown(); });
  std::this_thread::sleep_for(30ms);
  EXPECT_TRUE(h.server.draining());
  auto c = h.client();
  if (auto r = c.Get("/ready")) {
    EXPECT_EQ(r->status, 503);
  }
  if (auto r = c.Post("/v1/completions", R"({"prompt":"a"})", "application/json")) {
    EXPECT_EQ(r->status, 503);
  }
  inflight.join();
  drain.join();
  json j = json::parse(body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << body;
  EXPECT_EQ(j["choices"][0]["text"], "bcdefghijklmnopqrstuvwxyz");
}

TEST(Server, NotReadyUntilTheModelIsSet) {
  Metrics metrics;
  ServerOptions o;
  o.port = 0;
  o.http_threads = 8;
  Server server(o, metrics);
  const int port = server.bind();
  std::thread th([&] { server.run(); });
  httplib::Client c("127.0.0.1", port);
  auto h = c.Get("/health");
  for (int i = 0; i < 200 && !h; ++i) {
    std::this_thread::sleep_for(10ms);
    h = c.Get("/health");
  }
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  expect_error(c.Get("/ready"), 503, "server_error");
  auto r = c.Post("/v1/completions", R"({"prompt":"x"})", "application/json");
  expect_error(r, 503, "server_error");
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  expect_error(c.Post("/internal/fault", R"({"fail":true})", "application/json"), 404, "invalid_request_error");

  FakeGenerator gen({.model_id = "late"});
  LocalBackend backend(gen, {1, 1, 512}, &metrics);
  Router router(backend, nullptr, {}, &metrics);
  Server::ModelFacts facts;
  facts.model_id = "late";
  server.set_ready(router, facts);
  EXPECT_EQ(c.Get("/ready")->status, 200);
  r = c.Post("/v1/completions", R"({"prompt":"y","temperature":0})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(json::parse(r->body)["choices"][0]["text"], "z.");
  server.shutdown();
  th.join();
}
