// serve/backend.h — something that serves a GenRequest: the in-process engine behind a
// Scheduler (LocalBackend), or any OpenAI-compatible server over HTTP (UpstreamBackend,
// e.g. llama-server running the higher-precision model). The Router (serve/router.h) picks one.
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <vector>
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

// Streams /v1/completions from `url` (http://host:port[/v1]) on a fixed pool of `workers`
// client threads (started with the backend) and a queue of `queue` requests; beyond that,
// start() refuses with 429, so a burst never spawns threads. Upstream HTTP errors become Error
// events; an exception in a worker becomes an Error event, never a dead process.
class UpstreamBackend : public Backend {
 public:
  UpstreamBackend(const std::string& url, std::string model, int timeout_ms, std::string api_key = "",
                  int workers = 8, int queue = 64);
  ~UpstreamBackend() override;
  std::string name() const override { return "upstream:" + host_ + ":" + std::to_string(port_); }
  std::shared_ptr<RequestChannel> start(const GenRequest& req) override;

 private:
  void run(GenRequest req, std::shared_ptr<RequestChannel> ch);
  void work();
  std::string host_, prefix_, model_, api_key_;
  int port_ = 80;
  int timeout_ms_;
  size_t max_queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<std::pair<GenRequest, std::shared_ptr<RequestChannel>>> jobs_;
  std::vector<std::thread> threads_;
};

}  // namespace samq::serve
