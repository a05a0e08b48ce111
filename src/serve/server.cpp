#include "serve/server.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "serve/http_guard.h"
#include "serve/openai_api.h"

namespace samq::serve {

using nlohmann::json;

namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump_json(j), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  if (e.retry_after_s > 0) res.set_header("Retry-After", std::to_string(e.retry_after_s));
  send_json(res, e.status, error_object(e));
}

void send_error(httplib::Response& res, int status, const std::string& code, const std::string& msg) {
  send_json(res, status, error_object(status, "", code, msg));
}

std::string route_label(const httplib::Request& req) {
  static const char* known[] = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health",
                                "/ready", "/metrics", "/internal/fault"};
  for (const char* k : known)
    if (req.path == k) return k;
  if (req.path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  return "other";
}

// Equal strings in time that depends only on their lengths, not on where they differ.
bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    diff |= static_cast<unsigned char>((i < a.size() ? a[i] : 0) ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

// "Bearer KEY" with the scheme in any case (RFC 7235); nullopt for another scheme.
std::optional<std::string> bearer_token(const std::string& h) {
  if (h.size() < 7) return std::nullopt;
  for (size_t i = 0; i < 6; ++i)
    if (std::tolower(static_cast<unsigned char>(h[i])) != "bearer"[i]) return std::nullopt;
  if (h[6] != ' ' && h[6] != '\t') return std::nullopt;
  size_t b = h.find_first_not_of(" \t", 6), e = h.find_last_not_of(" \t");
  if (b == std::string::npos) return std::string();
  return h.substr(b, e - b + 1);
}

std::string media_type(const std::string& content_type) {
  std::string t = content_type.substr(0, content_type.find(';'));
  t.erase(0, std::min(t.size(), t.find_first_not_of(" \t")));
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.pop_back();
  for (auto& c : t) c = char(std::tolower(static_cast<unsigned char>(c)));
  return t;
}

// Decrements the in-flight count when the last holder (handler or streaming provider) lets go.
struct InFlight {
  std::atomic<int>& n;
  explicit InFlight(std::atomic<int>& c) : n(c) { ++n; }
  ~InFlight() { --n; }
};

}  // namespace

namespace {
// Memory housekeeping while serving: every 10 s, glibc's malloc_trim hands the free pages of every
// thread's arena back to the OS. With 64+ HTTP threads each arena keeps the high-water mark of its
// own requests, which reads as RSS creeping up under a long mixed load (bench/serve_soak.mjs)
// although nothing leaks.
class MemoryTrimmer {
 public:
  MemoryTrimmer()
      : thread_([this] {
          std::unique_lock lk(mu_);
          while (!cv_.wait_for(lk, std::chrono::seconds(10), [this] { return stop_; })) {
#if defined(__GLIBC__)
            malloc_trim(0);
#endif
          }
        }) {}
  ~MemoryTrimmer() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // last: starts after the members it uses
};
}  // namespace

struct Server::Impl {
  GuardedHttpServer svr;
  std::atomic<bool> cancel_all{false};
  std::mutex shutdown_mu;
  bool bound = false;
};

Server::Server(ServerOptions opt, Router& router, Metrics& metrics)
    : impl_(std::make_unique<Impl>()), opt_(std::move(opt)), metrics_(metrics) {
  install_routes();
  router_.store(&router, std::memory_order_release);
}

Server::Server(ServerOptions opt, Metrics& metrics)
    : impl_(std::make_unique<Impl>()), opt_(std::move(opt)), metrics_(metrics) {
  install_routes();
}

void Server::set_ready(Router& router, const ModelFacts& f) {
  // Written before the release store; handlers read them after an acquire load of router_.
  opt_.model_id = f.model_id;
  opt_.chat_template = f.chat_template;
  opt_.model_adds_bos = f.model_adds_bos;
  opt_.extra_model_ids = f.extra_model_ids;
  opt_.aliases = f.aliases;
  opt_.fault_target = f.fault_target;
  router_.store(&router, std::memory_order_release);
}

Server::~Server() = default;

int Server::bind() {
  if (impl_->bound) return port_;
  if (opt_.port == 0) {
    port_ = impl_->svr.bind_to_any_port(opt_.host);
    if (port_ < 0) fail("cannot listen on {}: no free port", opt_.host);
  } else {
    if (!impl_->svr.bind_to_port(opt_.host, opt_.port))
      fail("cannot listen on {}:{} (in use, or not an address of this machine)", opt_.host, opt_.port);
    port_ = opt_.port;
  }
  impl_->bound = true;
  return port_;
}

void Server::run() {
  bind();
  if (draining_) return;
  const MemoryTrimmer trimmer;
  ready_ = true;
  impl_->svr.listen_after_bind();
  ready_ = false;
}

void Server::shutdown() {
  std::lock_guard lk(impl_->shutdown_mu);
  if (draining_.exchange(true)) return;
  ready_ = false;
  const auto deadline = Clock::now() + std::chrono::milliseconds(opt_.drain_timeout_ms);
  while (in_flight_ > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  impl_->cancel_all = true;  // whatever is left is cut short
  const auto hard = Clock::now() + std::chrono::seconds(2);
  while (in_flight_ > 0 && Clock::now() < hard) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  impl_->svr.stop();
}

void Server::install_routes() {
  auto& svr = impl_->svr;
  // Workers: one per slot and queue entry of both backends would be the most generation can
  // use; plus room for health checks, metrics scrapes and clients being refused.
  int threads = opt_.http_threads;
  if (threads <= 0) threads = 64;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  svr.set_payload_max_length(opt_.max_body_bytes);
  HttpLimits& lim = svr.limits();
  lim.max_request_line = opt_.max_request_line;
  lim.max_header_bytes = opt_.max_header_bytes;
  lim.max_headers = opt_.max_headers;
  lim.max_body_bytes = opt_.max_body_bytes;
  lim.request_timeout_ms = opt_.read_timeout_s * 1000;
  lim.write_timeout_ms = opt_.write_timeout_s * 1000;
  // Each connection holds a worker while it is served, so the cap stays 4 below the pool: a few
  // workers are always free to answer (or refuse) the next connection, e.g. a health check
  // while clients trickle their heads.
  const int ceiling = std::max(1, threads - 4);
  lim.max_connections = opt_.max_connections > 0 ? std::min(opt_.max_connections, ceiling) : ceiling;
  svr.set_reject_hook([this](int status, const std::string& reason) {
    metrics_.request("front", status, "none");
    if (status == 503) metrics_.rejected(reason);
  });
  svr.set_read_timeout(opt_.read_timeout_s, 0);
  svr.set_write_timeout(opt_.write_timeout_s, 0);
  svr.set_keep_alive_timeout(5);
  svr.set_keep_alive_max_count(1000);

  svr.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // our own handlers already wrote an error object
    if (res.status == 404)
      send_error(res, 404, "unknown_url",
                 "Unknown request URL: " + req.method + " " + req.path.substr(0, 200) + ". Please check the URL.");
    else if (res.status == 413)
      send_error(res, 413, "request_too_large",
                 fmt::format("Request body too large: the limit is {} bytes (--max-body-bytes).", opt_.max_body_bytes));
    else if (res.status == 400)
      send_error(res, 400, "bad_request",
                 "The request could not be read: malformed HTTP, or the client sent it too slowly (--read-timeout-s).");
    else
      send_error(res, res.status, "", std::string("HTTP error ") + std::to_string(res.status));
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    // The exception's text stays in the server: it may name files, hosts or internals.
    try {
      std::rethrow_exception(ep);
    } catch (const ApiError& e) {
      return send_error(res, e);
    } catch (...) {
    }
    res.headers.clear();
    send_error(res, 500, "internal_error", "The server had an error while processing your request.");
  });
  svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    std::string model = res.get_header_value("x-samq-served-by");
    metrics_.request(route_label(req), res.status, model.empty() ? "none" : model);
  });

  auto authorized = [this](const httplib::Request& req, httplib::Response& res) {
    if (opt_.api_key.empty()) return true;
    const std::string h = req.get_header_value("Authorization");
    const auto token = bearer_token(h);
    if (constant_time_equal(token.value_or(std::string()), opt_.api_key) && token) return true;
    send_json(res, 401,
              error_object(401, "invalid_request_error", "invalid_api_key",
                           h.empty() ? "You didn't provide an API key. Provide it in the Authorization header (Bearer KEY)."
                                     : "Incorrect API key provided."));
    return false;
  };

  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) { send_json(res, 200, {{"status", "ok"}}); });
  svr.Get("/ready", [this](const httplib::Request&, httplib::Response& res) {
    if (ready_ && !draining_ && router_.load(std::memory_order_acquire)) send_json(res, 200, {{"status", "ready"}});
    else send_json(res, 503, error_object(503, "server_error", draining_ ? "draining" : "not_ready",
                                          draining_ ? "The server is shutting down." : "The model is still loading."));
  });
  auto metrics_allowed = [this, authorized](const httplib::Request& req, httplib::Response& res) {
    if (opt_.metrics_auth == "none") return true;
    if (opt_.metrics_auth == "key" && opt_.api_key.empty()) {
      send_error(res, 403, "forbidden", "/metrics needs the API key (--metrics-auth key), and none is set.");
      return false;
    }
    return authorized(req, res);
  };
  svr.Get("/metrics", [this, metrics_allowed](const httplib::Request& req, httplib::Response& res) {
    if (!metrics_allowed(req, res)) return;
    metrics_.http_connections(impl_->svr.open_connections(), impl_->svr.limits().max_connections);
    res.set_content(metrics_.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  auto model_obj = [](const std::string& id) {
    return json{{"id", id}, {"object", "model"}, {"created", 0}, {"owned_by", "samq"}};
  };
  auto loading = [this](httplib::Response& res) {
    if (router_.load(std::memory_order_acquire)) return false;
    send_error(res, 503, "model_loading", "The model is still loading; retry shortly.");
    res.set_header("Retry-After", "1");
    return true;
  };
  svr.Get("/v1/models", [this, authorized, model_obj, loading](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res) || loading(res)) return;
    json data = json::array({model_obj(opt_.model_id)});
    for (auto& m : opt_.extra_model_ids) data.push_back(model_obj(m));
    send_json(res, 200, {{"object", "list"}, {"data", data}});
  });
  // GET /v1/models/{id}: a prefix match (cpp-httplib's std::regex recursion grows with the path).
  auto model_by_id = [this, authorized, model_obj, loading](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res) || loading(res)) return;
    const std::string id = req.path.substr(std::string_view("/v1/models/").size());
    if (id.empty() || id.size() > 256)
      return send_error(res, 404, "model_not_found", "The model does not exist.");
    if (id == opt_.model_id || std::find(opt_.extra_model_ids.begin(), opt_.extra_model_ids.end(), id) != opt_.extra_model_ids.end() ||
        std::find(opt_.aliases.begin(), opt_.aliases.end(), id) != opt_.aliases.end())
      return send_json(res, 200, model_obj(id));
    send_json(res, 404, error_object(404, "invalid_request_error", "model_not_found",
                                     "The model '" + id + "' does not exist.", "model"));
  };
  // Browsers send cross-origin "simple" POSTs (text/plain, form types) without a CORS preflight:
  // such a request must not reach the API. Non-browser clients send no Origin.
  svr.set_pre_routing_handler([model_by_id](const httplib::Request& req, httplib::Response& res) {
    if (req.method == "POST" && req.has_header("Origin") &&
        media_type(req.get_header_value("Content-Type")) != "application/json") {
      send_error(res, 415, "unsupported_media_type",
                 "A request with an Origin header must have 'Content-Type: application/json'.");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.method == "GET" && req.path.rfind("/v1/models/", 0) == 0) {
      model_by_id(req, res);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  {
    svr.Post("/internal/fault", [this, authorized](const httplib::Request& req, httplib::Response& res) {
      Router* router = router_.load(std::memory_order_acquire);
      if (!router || !opt_.fault_target)  // TEST ONLY, and only with --enable-fault-injection
        return send_error(res, 404, "unknown_url", "Unknown request URL: POST /internal/fault. Please check the URL.");
      if (!authorized(req, res)) return;
      json j = json::parse(req.body, nullptr, false);
      const char* shape = "expected {\"fail\": bool, \"delay_ms\": int in [0, 10000]}";
      if (!j.is_object()) return send_error(res, 400, "invalid_json", shape);
      if (j.contains("fail") && !j["fail"].is_boolean()) return send_json(res, 400, error_object(400, "", "invalid_value", shape, "fail"));
      if (j.contains("delay_ms") && (!j["delay_ms"].is_number_integer() || j["delay_ms"].get<int64_t>() < 0 ||
                                     j["delay_ms"].get<int64_t>() > 10000))
        return send_json(res, 400, error_object(400, "", "invalid_value", shape, "delay_ms"));
      if (j.contains("fail")) opt_.fault_target->set_fail(j["fail"].get<bool>());
      if (j.contains("delay_ms")) opt_.fault_target->set_delay_ms(int(j["delay_ms"].get<int64_t>()));
      send_json(res, 200, {{"fail", opt_.fault_target->failing()}, {"delay_ms", opt_.fault_target->delay_ms()},
                           {"circuit", circuit_state_name(router->state())}});
    });
  }

  auto generate = [this, authorized, loading](const httplib::Request& req, httplib::Response& res, ApiKind kind) {
    if (!authorized(req, res)) return;
    if (draining_ || impl_->cancel_all) {
      metrics_.rejected("draining");
      return send_error(res, 503, "shutting_down", "The server is shutting down.");
    }
    if (loading(res)) return;
    Router& router = *router_.load(std::memory_order_acquire);
    auto guard = std::make_shared<InFlight>(in_flight_);
    ApiRequest ar;
    std::vector<std::unique_ptr<Execution>> exs;
    std::vector<std::optional<Event>> firsts;
    const auto t0 = Clock::now();
    try {
      ar = kind == ApiKind::Chat ? parse_chat_request(req.body, opt_.chat_template, opt_.model_adds_bos)
                                 : parse_completion_request(req.body, opt_.model_adds_bos);
      if (!ar.model.empty() && ar.model != opt_.model_id &&
          std::find(opt_.extra_model_ids.begin(), opt_.extra_model_ids.end(), ar.model) == opt_.extra_model_ids.end() &&
          std::find(opt_.aliases.begin(), opt_.aliases.end(), ar.model) == opt_.aliases.end())
        throw ApiError(404, "invalid_request_error", "model_not_found",
                       "The model '" + ar.model.substr(0, 256) + "' does not exist.", "model");
      // n choices: n requests (seeded ones with seed + index, so choices differ yet repeat),
      // admitted together (Scheduler::AdmissionHold).
      {
        Scheduler::AdmissionHold hold;
        for (int i = 0; i < ar.n; ++i) {
          GenRequest g = ar.gen;
          if (g.sampling.seed && i > 0) g.sampling.seed = *g.sampling.seed + uint64_t(i);
          exs.push_back(router.begin(g, ar.stream));
        }
      }
      // Wait for the first event of each choice here, so errors before any token get their own
      // status and x-samq-served-by names who really produced the answer.
      // A client that leaves while queued or in prefill frees its place within ~100 ms.
      firsts.resize(exs.size());
      for (size_t i = 0; i < exs.size(); ++i) {
        while (!firsts[i] && !impl_->cancel_all) {
          if (current_client_gone()) {
            for (auto& e : exs) e->cancel();
            metrics_.rejected("client_gone");
            res.status = 499;  // nginx's "client closed request"; nobody reads it
            return;
          }
          firsts[i] = exs[i]->next(Clock::now() + std::chrono::milliseconds(100));
        }
        if (!firsts[i]) throw ApiError(503, "server_error", "shutting_down", "The server is shutting down.");
        if (firsts[i]->kind == Event::Error) break;
      }
    } catch (const ApiError& e) {
      return send_error(res, e);
    } catch (const std::exception&) {
      // Tokenizer errors, bad_alloc, system_error (no thread left): an error object, no internals.
      return send_error(res, 500, "internal_error", "The server had an error while processing your request.");
    }
    res.set_header("x-samq-served-by", exs[0]->served_by());
    for (auto& first : firsts) {
      if (!first || first->kind != Event::Error) continue;
      for (auto& e : exs) e->cancel();
      const int st = first->status == 429 ? 429 : first->status == 400 ? 400 : first->status == 503 ? 503 : 500;
      if (st == 429) res.set_header("Retry-After", "1");
      return send_json(res, st, error_object(st, "", st == 500 ? "engine_error" : "", first->message));
    }
    struct State {
      std::shared_ptr<InFlight> guard;
      ApiRequest ar;
      std::vector<std::unique_ptr<Execution>> exs;
      std::vector<std::optional<Event>> pending;
      std::vector<ChoiceResult> results;
      std::vector<bool> finished;
      std::vector<size_t> offset;                  // streaming: text sent per choice
      std::vector<std::vector<LogprobEntry>> lp;   // streaming: logprobs not yet sent
      size_t n_finished = 0, rr = 0;
      Usage usage;
      ResponseMeta meta;
      Clock::time_point t0, last_beat;
      void cancel_all() {
        for (auto& e : exs) e->cancel();
      }
    };
    auto st = std::make_shared<State>();
    const size_t n = exs.size();
    st->guard = guard;
    st->ar = std::move(ar);
    st->exs = std::move(exs);
    st->pending = std::move(firsts);
    st->results.resize(n);
    st->finished.assign(n, false);
    st->offset.assign(n, 0);
    st->lp.resize(n);
    st->meta = {new_request_id(kind), st->ar.model.empty() ? opt_.model_id : st->ar.model, unix_now()};
    st->t0 = st->last_beat = t0;
    auto* cancel_all = &impl_->cancel_all;
    auto* metrics = &metrics_;
    const std::string route = kind == ApiKind::Chat ? "/v1/chat/completions" : "/v1/completions";

    // The next event of any unfinished choice (round robin); nullopt when the client went away
    // or the server cuts requests short.
    auto next_event = [st, cancel_all](httplib::DataSink& sink, bool heartbeat) -> std::optional<std::pair<size_t, Event>> {
      const size_t n = st->exs.size();
      for (size_t i = 0; i < n; ++i)
        if (st->pending[i]) {
          Event e = std::move(*st->pending[i]);
          st->pending[i].reset();
          return std::make_pair(i, std::move(e));
        }
      const auto wait = std::chrono::milliseconds(n == 1 ? 250 : 10);
      for (;;) {
        if (*cancel_all || !sink.is_writable()) {
          st->cancel_all();
          return std::nullopt;
        }
        for (size_t k = 0; k < n; ++k) {
          const size_t i = (st->rr + k) % n;
          if (st->finished[i]) continue;
          if (auto e = st->exs[i]->next(Clock::now() + wait)) {
            st->rr = i + 1;
            return std::make_pair(i, std::move(*e));
          }
        }
        // JSON allows leading whitespace: a space now and then lets a vanished client show.
        if (heartbeat && Clock::now() - st->last_beat >= std::chrono::milliseconds(250)) {
          st->last_beat = Clock::now();
          if (!sink.write(" ", 1)) {
            st->cancel_all();
            return std::nullopt;
          }
        }
      }
    };
    auto add_usage = [](State& s, const Event& ev) {
      if (s.usage.prompt_tokens == 0) s.usage.prompt_tokens = ev.usage.prompt_tokens;  // one prompt
      s.usage.completion_tokens += ev.usage.completion_tokens;
    };

    if (st->ar.stream) {
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider("text/event-stream", [st, next_event, metrics, route, add_usage](size_t, httplib::DataSink& sink) {
       try {
        auto send = [&](const json& j) {
          const std::string s = "data: " + dump_json(j) + "\n\n";
          return sink.write(s.data(), s.size());
        };
        const size_t n = st->exs.size();
        st->meta.fingerprint = "samq:" + st->exs[0]->current();
        if (st->ar.kind == ApiKind::Chat)
          for (size_t i = 0; i < n; ++i)
            if (!send(stream_chunk(st->ar, st->meta, "", "", true, int(i)))) return false;
        for (;;) {
          auto got = next_event(sink, false);
          if (!got) return false;
          auto& [i, ev] = *got;
          st->meta.fingerprint = "samq:" + st->exs[i]->current();
          if (ev.kind == Event::Text) {
            auto& lp = st->lp[i];
            lp.insert(lp.end(), std::make_move_iterator(ev.logprobs.begin()), std::make_move_iterator(ev.logprobs.end()));
            if (ev.text.empty()) continue;  // a token held back: its logprobs go with the text
            if (!send(stream_chunk(st->ar, st->meta, ev.text, "", false, int(i), &lp, st->offset[i]))) {
              st->cancel_all();
              return false;
            }
            st->offset[i] += ev.text.size();
            lp.clear();
          } else if (ev.kind == Event::Done) {
            add_usage(*st, ev);
            st->finished[i] = true;
            ++st->n_finished;
            send(stream_chunk(st->ar, st->meta, "", ev.finish_reason, false, int(i),
                              st->lp[i].empty() ? nullptr : &st->lp[i], st->offset[i]));
            if (st->n_finished < n) continue;
            metrics->request_duration(route, st->exs[0]->served_by(), std::chrono::duration<double>(Clock::now() - st->t0).count());
            if (st->ar.include_usage) send(usage_chunk(st->ar, st->meta, st->usage));
            static const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
            return true;
          } else {
            st->cancel_all();
            send(error_object(ev.status, "", "engine_error", ev.message));
            sink.done();
            return true;
          }
        }
       } catch (...) {
        // Whatever threw (bad_alloc, a backend's bug): one SSE error event, then the end.
        st->cancel_all();
        const std::string s = "data: " + dump_json(error_object(500, "", "internal_error",
                                                    "The server had an error while processing your request.")) + "\n\n";
        sink.write(s.data(), s.size());
        sink.done();
        return true;
       }
      });
    } else {
      res.set_chunked_content_provider("application/json", [st, next_event, metrics, route, add_usage](size_t, httplib::DataSink& sink) {
       try {
        for (;;) {
          auto got = next_event(sink, true);
          if (!got) return false;
          auto& [i, ev] = *got;
          st->meta.fingerprint = "samq:" + st->exs[i]->current();
          ChoiceResult& c = st->results[i];
          if (ev.kind == Event::Text) {
            c.text += ev.text;
            c.logprobs.insert(c.logprobs.end(), std::make_move_iterator(ev.logprobs.begin()),
                              std::make_move_iterator(ev.logprobs.end()));
            continue;
          }
          json body;
          if (ev.kind == Event::Done) {
            add_usage(*st, ev);
            c.finish_reason = ev.finish_reason;
            st->finished[i] = true;
            if (++st->n_finished < st->exs.size()) continue;
            metrics->request_duration(route, st->exs[0]->served_by(), std::chrono::duration<double>(Clock::now() - st->t0).count());
            body = completion_response(st->ar, st->meta, st->results, st->usage);
          } else {
            // Only possible without a fallback, after the first token: the 200 is already sent.
            st->cancel_all();
            body = error_object(ev.status, "", "engine_error", ev.message);
          }
          const std::string s = dump_json(body);
          sink.write(s.data(), s.size());
          sink.done();
          return true;
        }
       } catch (...) {
        st->cancel_all();
        const std::string s = dump_json(error_object(500, "", "internal_error",
                                                     "The server had an error while processing your request."));
        sink.write(s.data(), s.size());
        sink.done();
        return true;
       }
      });
    }
  };
  svr.Post("/v1/completions", [generate](const httplib::Request& req, httplib::Response& res) {
    generate(req, res, ApiKind::Completion);
  });
  svr.Post("/v1/chat/completions", [generate](const httplib::Request& req, httplib::Response& res) {
    generate(req, res, ApiKind::Chat);
  });
}

}  // namespace samq::serve
