// serve/server.h — the HTTP front: OpenAI routes over cpp-httplib, SSE streaming, auth,
// OpenAI error objects, /health, /ready, /metrics, graceful drain.
//
// cpp-httplib 0.11.4 has a fixed worker pool with an unbounded accept queue, no payload cap for
// chunked bodies, unbounded header parsing and gzip inflation, so every connection first goes
// through serve/http_guard.h (bounded head, body and connection count, 411/413/414/415/431),
// the pool size covers every slot, queue entry and a few probes, and admission control is
// our own (429 from the scheduler). Auth compares keys in constant time; a browser's
// cross-origin POST (an Origin header) must be application/json, so no simple CORS request
// can reach the API.
// Every response to a generation request carries x-samq-served-by.
#pragma once
#include <atomic>
#include <memory>
#include <string>

#include "serve/fault_injection.h"
#include "serve/metrics.h"
#include "serve/router.h"

namespace httplib {
class Server;
}

namespace samq::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                    // 0: pick a free port (see bound_port())
  std::string api_key;                // empty: no auth
  // Who may read /metrics: "auto" (the API key when one is set), "key" (the API key; with no
  // key set: nobody), "none" (anyone).
  std::string metrics_auth = "auto";
  int http_threads = 0;               // 0: derived from slots and queue
  size_t max_body_bytes = 1 << 20;
  // Front limits (serve/http_guard.h): request line, whole head, header count, connections
  // (0, or more than http_threads - 4: http_threads - 4). read_timeout_s bounds the whole
  // request (head and body together); write_timeout_s the total time a response may wait for
  // its client to read (a slow SSE reader is dropped and its request cancelled).
  size_t max_request_line = 8192, max_header_bytes = 16384, max_headers = 64;
  int max_connections = 0;
  int read_timeout_s = 10, write_timeout_s = 30;
  int drain_timeout_ms = 15000;
  std::string chat_template = "chatml";
  bool model_adds_bos = true;
  std::string model_id;               // name in /v1/models
  std::vector<std::string> extra_model_ids;  // e.g. the in-process fallback
  // More names a request's "model" may use for the primary (--alias repeated). Any other
  // non-empty name gets 404 model_not_found.
  std::vector<std::string> aliases;
  // TEST ONLY: POST /internal/fault {"fail": bool, "delay_ms": int} on this generator.
  FaultInjectingGenerator* fault_target = nullptr;
};

class Server {
 public:
  Server(ServerOptions opt, Router& router, Metrics& metrics);
  // Without a router yet: /health answers, /ready and the API say 503 until set_ready(), so a
  // big model can load while the port is already open.
  Server(ServerOptions opt, Metrics& metrics);
  // The model is loaded: facts for the API (chat template, ids) and the router to use.
  struct ModelFacts {
    std::string model_id, chat_template = "chatml";
    bool model_adds_bos = true;
    std::vector<std::string> extra_model_ids, aliases;
    FaultInjectingGenerator* fault_target = nullptr;
  };
  void set_ready(Router& router, const ModelFacts& facts);
  ~Server();
  // Binds, then serves until shutdown() has drained. Throws samq::Error if it cannot bind.
  void run();
  // Binds without serving yet (run() then serves); returns the port.
  int bind();
  int bound_port() const { return port_; }
  // Stop accepting generation requests (503, /ready 503), wait for the ones in flight up to
  // drain_timeout_ms, cancel the rest, stop the listener. Safe from any thread, once or more.
  void shutdown();
  bool draining() const { return draining_; }
  int in_flight() const { return in_flight_; }

 private:
  void install_routes();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ServerOptions opt_;
  std::atomic<Router*> router_{nullptr};
  Metrics& metrics_;
  std::atomic<bool> draining_{false}, ready_{false};
  std::atomic<int> in_flight_{0};
  int port_ = -1;
};

}  // namespace samq::serve
