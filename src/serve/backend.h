// serve/backend.h — something that serves a GenRequest: the in-process engine behind a
// Scheduler (LocalBackend), or any OpenAI-compatible server over HTTP (UpstreamBackend,
// e.g. llama-server running the higher-precision model). The Router (serve/router.h) picks one.
#pragma once
#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "serve/request.h"
#include "serve/scheduler.h"

namespace samq::serve {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // x-samq-served-by and the metrics' model label
  // Starts the request; throws ApiError when it cannot be taken (400, 429, 503).
  virtual std::shared_ptr<RequestChannel> start(const GenRequest& req) = 0;
};

class LocalBackend : public Backend {
 public:
  LocalBackend(Generator& gen, SchedulerOptions opt, Metrics* metrics)
      : gen_(gen), sched_(gen, opt, metrics) {}
  std::string name() const override { return gen_.model_id(); }
  std::shared_ptr<RequestChannel> start(const GenRequest& req) override { return sched_.submit(req); }
  Scheduler& scheduler() { return sched_; }
  Generator& generator() { return gen_; }

 private:
  Generator& gen_;
  Scheduler sched_;
};

// Streams /v1/completions from `url` (http://host:port[/v1]); one client thread per request,
// joined at destruction. Upstream HTTP errors become Error events with the upstream status.
class UpstreamBackend : public Backend {
 public:
  UpstreamBackend(const std::string& url, std::string model, int timeout_ms, std::string api_key = "");
  ~UpstreamBackend() override;
  std::string name() const override { return "upstream:" + host_ + ":" + std::to_string(port_); }
  std::shared_ptr<RequestChannel> start(const GenRequest& req) override;

 private:
  void run(GenRequest req, std::shared_ptr<RequestChannel> ch);
  std::string host_, prefix_, model_, api_key_;
  int port_ = 80;
  int timeout_ms_;
  std::mutex mu_;
  struct Worker {
    std::thread t;
    std::shared_ptr<std::atomic<bool>> finished;
  };
  std::list<Worker> threads_;
};

}  // namespace samq::serve
