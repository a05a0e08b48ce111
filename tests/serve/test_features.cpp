// Issue 17 item 9: logprobs/top_logprobs, n > 1, response_format json_object, presence and
// frequency penalties, logit_bias — the sampler against values computed here by hand, the JSON
// check against the grammar, and the HTTP shapes over the fake model.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <thread>

#include "serve/fake_generator.h"
#include "serve/json_prefix.h"
#include "serve/router.h"
#include "serve/sampler.h"
#include "serve/server.h"

using namespace samq::serve;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {
SamplingParams greedy() {
  SamplingParams p;
  p.temperature = 0;
  return p;
}
}  // namespace

TEST(Penalties, PresenceAndFrequencyFollowOpenAIsFormula) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f};
  SamplingParams p = greedy();
  p.presence_penalty = 1.5f;
  Sampler s(p);
  EXPECT_EQ(s.sample(logits), 0);
  s.accept(0);  // 2 - 1.5 = 0.5 < 1
  EXPECT_EQ(s.sample(logits), 1);
  SamplingParams f = greedy();
  f.frequency_penalty = 0.6f;
  Sampler t(f);
  t.accept(0);  // 2 - 0.6 = 1.4 > 1
  EXPECT_EQ(t.sample(logits), 0);
  t.accept(0);  // 2 - 1.2 = 0.8 < 1
  EXPECT_EQ(t.sample(logits), 1);
  SamplingParams neg = greedy();
  neg.presence_penalty = -1.5f;  // negative: repetition encouraged
  Sampler u(neg);
  u.accept(2);  // 0 + 1.5 = 1.5 < 2
  EXPECT_EQ(u.sample(logits), 0);
  u.accept(2);  // presence counts once
  EXPECT_EQ(u.sample(logits), 0);
}

TEST(LogitBias, AddsToTheLogits) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f};
  SamplingParams p = greedy();
  p.logit_bias = {{2, 5.0f}};
  EXPECT_EQ(Sampler(p).sample(logits), 2);
  p.logit_bias = {{0, -100.0f}};
  EXPECT_EQ(Sampler(p).sample(logits), 1);
  // Sampling with temperature: a -100 bias removes the token in practice.
  SamplingParams q;
  q.seed = 3;
  q.logit_bias = {{0, -100.0f}, {1, -100.0f}};
  Sampler s(q);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(s.sample(logits), 2);
}

TEST(Logprobs, AreTheLogSoftmaxOfTheAdjustedLogits) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f, -1.0f};
  SamplingParams p = greedy();
  p.logprobs = true;
  p.top_logprobs = 3;
  p.logit_bias = {{3, 4.0f}};  // -1 + 4 = 3: now the best
  Sampler s(p);
  TokenLogprob lp;
  const int32_t tok = s.sample(logits, {}, &lp);
  EXPECT_EQ(tok, 3);
  const double z = std::exp(2.0) + std::exp(1.0) + std::exp(0.0) + std::exp(3.0);
  EXPECT_NEAR(lp.logprob, 3.0 - std::log(z), 1e-5);
  ASSERT_EQ(lp.top.size(), 3u);
  EXPECT_EQ(lp.top[0].first, 3);
  EXPECT_EQ(lp.top[1].first, 0);
  EXPECT_EQ(lp.top[2].first, 1);
  EXPECT_NEAR(lp.top[2].second, 1.0 - std::log(z), 1e-5);
}

TEST(JsonObject, PrefixCheckFollowsTheGrammar) {
  for (const char* ok : {"{}", " {\"a\": [1, -2.5e+3, true, null, {\"b\": \"x\\u00e9\\n\"}]}", "{\"k\":0}", "{\"a\":{}}"}) {
    JsonPrefix j;
    EXPECT_TRUE(j.feed(ok)) << ok;
    EXPECT_TRUE(j.complete()) << ok;
  }
  for (const char* partial : {"{", "{\"a\"", "{\"a\": [1,", "{\"a\": tr", "{\"a\": -", "{\"a\": \"\\u00"}) {
    JsonPrefix j;
    EXPECT_TRUE(j.feed(partial)) << partial;
    EXPECT_FALSE(j.complete()) << partial;
  }
  for (const char* bad : {"[1]", "\"x\"", "{a", "{\"a\" 1", "{\"a\": 01", "{\"a\": tru3", "{\"a\": [1,]", "{}x", "{} ",
                          "{\"a\": \"\x01\"", "{\"a\": \"\\q\"", "{\"a\": 1.}", "{,}"}) {
    JsonPrefix j;
    EXPECT_FALSE(j.feed(bad)) << bad;
  }
  JsonPrefix j;
  EXPECT_TRUE(j.feed("{"));
  EXPECT_FALSE(j.feed(std::string(JsonPrefix::max_ws + 1, ' ')));  // no endless whitespace
  EXPECT_TRUE(j.feed("\"k\""));  // a refused piece left the state as it was
}

namespace {
struct Http {
  FakeGenerator gen;
  Metrics metrics;
  LocalBackend backend;
  Router router;
  Server server;
  std::thread th;
  int port;
  explicit Http(FakeGeneratorOptions o)
      : gen(o), backend(gen, {8, 8, 512}, &metrics), router(backend, nullptr, {}, &metrics), server(opt(), router, metrics) {
    port = server.bind();
    th = std::thread([this] { server.run(); });
    httplib::Client c("127.0.0.1", port);
    for (int i = 0; i < 200; ++i) {
      if (auto r = c.Get("/ready"); r && r->status == 200) break;
      std::this_thread::sleep_for(10ms);
    }
  }
  static ServerOptions opt() {
    ServerOptions o;
    o.port = 0;
    o.model_id = "m";
    o.http_threads = 16;
    return o;
  }
  ~Http() {
    server.shutdown();
    th.join();
  }
  json post(const std::string& path, const json& body, int* status = nullptr) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(20, 0);
    auto r = c.Post(path, body.dump(), "application/json");
    if (!r) return json();
    if (status) *status = r->status;
    return json::parse(r->body, nullptr, false);
  }
};
}  // namespace

TEST(Features, LogprobsNAndJsonObjectOverHttp) {
  Http h({.step_ms = 1, .margin = 3.0f});
  // logprobs: the greedy token is the most likely one; its logprob as computed here.
  json r = h.post("/v1/completions", {{"prompt", "a"}, {"max_tokens", 5}, {"temperature", 0}, {"logprobs", 2}});
  ASSERT_TRUE(r.contains("choices")) << r.dump();
  auto lp = r["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 5u) << r.dump();
  std::string joined;
  const double expect = 3.0 - std::log(std::exp(3.0) + (FakeGenerator::kVocab - 1));
  for (size_t k = 0; k < 5; ++k) {
    joined += lp["tokens"][k].get<std::string>();
    EXPECT_NEAR(lp["token_logprobs"][k].get<double>(), expect, 1e-4);
    ASSERT_EQ(lp["top_logprobs"][k].size(), 2u);
    EXPECT_NEAR(lp["top_logprobs"][k][lp["tokens"][k].get<std::string>()].get<double>(), expect, 1e-4);
  }
  EXPECT_EQ(joined, r["choices"][0]["text"].get<std::string>());
  EXPECT_EQ(joined, "bcdef");
  // chat logprobs, streamed and not.
  json chat = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 4}, {"temperature", 0},
               {"logprobs", true}, {"top_logprobs", 1}};
  r = h.post("/v1/chat/completions", chat);
  ASSERT_EQ(r["choices"][0]["logprobs"]["content"].size(), 4u) << r.dump();
  EXPECT_EQ(r["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 1u);
  // n = 3, greedy: three equal choices, indexed, usage summed.
  r = h.post("/v1/completions", {{"prompt", "k"}, {"max_tokens", 4}, {"temperature", 0}, {"n", 3}});
  ASSERT_EQ(r["choices"].size(), 3u) << r.dump();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r["choices"][i]["index"], i);
    EXPECT_EQ(r["choices"][i]["text"], "lmno");
  }
  EXPECT_EQ(r["usage"]["completion_tokens"], 12);
  // n = 3, sampled with a seed: the choices differ from one another, and repeat.
  json sampled = {{"prompt", "k"}, {"max_tokens", 12}, {"temperature", 2}, {"seed", 5}, {"n", 3}};
  Http flat({.step_ms = 1, .margin = 0.0f});  // every token equally likely
  json a = flat.post("/v1/completions", sampled), b = flat.post("/v1/completions", sampled);
  ASSERT_EQ(a["choices"].size(), 3u);
  EXPECT_NE(a["choices"][0]["text"], a["choices"][1]["text"]);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a["choices"][i]["text"], b["choices"][i]["text"]);
  // Streaming n = 2: chunks carry their choice's index; each choice ends once.
  httplib::Client c("127.0.0.1", h.port);
  auto s = c.Post("/v1/completions", json{{"prompt", "k"}, {"max_tokens", 3}, {"temperature", 0}, {"n", 2}, {"stream", true}}.dump(),
                  "application/json");
  ASSERT_TRUE(s);
  std::string text[2];
  int finishes[2] = {0, 0};
  for (size_t pos = 0; (pos = s->body.find("data: {", pos)) != std::string::npos; ++pos) {
    json ch = json::parse(s->body.substr(pos + 6, s->body.find("\n\n", pos) - pos - 6));
    const int i = ch["choices"][0]["index"];
    text[i] += ch["choices"][0]["text"].get<std::string>();
    finishes[i] += !ch["choices"][0]["finish_reason"].is_null();
  }
  EXPECT_EQ(text[0], "lmn");
  EXPECT_EQ(text[1], "lmn");
  EXPECT_EQ(finishes[0], 1);
  EXPECT_EQ(finishes[1], 1);
  // response_format json_object: the fake model would say "lmno..."; the answer is JSON.
  for (Http* server : {&h, &flat}) {
    r = server->post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "k"}}}}, {"max_tokens", 200},
                                        {"temperature", 1}, {"seed", 1}, {"response_format", {{"type", "json_object"}}}});
    ASSERT_TRUE(r.contains("choices")) << r.dump();
    const std::string content = r["choices"][0]["message"]["content"];
    JsonPrefix j;
    EXPECT_TRUE(j.feed(content)) << content;
    if (r["choices"][0]["finish_reason"] == "stop") {
      EXPECT_TRUE(j.complete()) << content;
      json parsed = json::parse(content, nullptr, false);
      EXPECT_TRUE(parsed.is_object()) << content;
    }
  }
  // logit_bias: +100 on 'x' makes every token 'x'; an id outside the vocabulary is a 400.
  r = h.post("/v1/completions", {{"prompt", "a"}, {"max_tokens", 4}, {"temperature", 0}, {"logit_bias", {{"120", 100}}}});
  EXPECT_EQ(r["choices"][0]["text"], "xxxx") << r.dump();
  int st = 0;
  r = h.post("/v1/completions", {{"prompt", "a"}, {"logit_bias", {{"99999", 1}}}}, &st);
  EXPECT_EQ(st, 400);
  EXPECT_EQ(r["error"]["param"], "logit_bias");
  // An unknown field is named.
  r = h.post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "k"}}}}, {"guided_json", 1}}, &st);
  EXPECT_EQ(st, 400);
  EXPECT_EQ(r["error"]["param"], "guided_json");
}
