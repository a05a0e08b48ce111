// serve/scheduler.h — continuous batching over one Generator.
//
// `parallel` slots decode together: each step of the worker thread appends one sampled token
// to every active sequence, plus (a chunk of) the prompt of each request that just got a slot,
// in one Generator::step. Requests beyond the free slots wait in a bounded FIFO queue; beyond
// that, submit() refuses with 429 (and a Retry-After estimate). A cancelled request (client gone,
// timeout) is dropped from the queue or frees its slot before the next step. A failing step
// fails only the requests in that batch.
#pragma once
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "serve/generator.h"
#include "serve/metrics.h"
#include "serve/request.h"

namespace samq::serve {

struct SchedulerOptions {
  int parallel = 4;            // slots decoding at once
  int queue = 16;              // waiting requests beyond the slots
  int prefill_chunk = 512;     // prompt tokens per sequence per step
};

class Scheduler {
 public:
  Scheduler(Generator& gen, SchedulerOptions opt, Metrics* metrics = nullptr);
  ~Scheduler();  // stops the worker; pending requests get an error event

  // Tokenizes and queues the request. Throws ApiError: 400 when the prompt does not fit the
  // context, 429 when the queue is full, 503 after stop().
  std::shared_ptr<RequestChannel> submit(const GenRequest& req);
  // While one lives, no scheduler admits queued requests: the n choices of one API request are
  // submitted under it, so they enter the batch in the same step every time. The batch's shape
  // changes the engine's float rounding, so this is what makes seeded choices repeat.
  class AdmissionHold {
   public:
    AdmissionHold();
    ~AdmissionHold();
    AdmissionHold(const AdmissionHold&) = delete;
    AdmissionHold& operator=(const AdmissionHold&) = delete;
  };

  void stop();
  int active() const;
  int queued() const;
  Generator& generator() { return gen_; }

 private:
  struct Job;
  struct Slot;
  void run();
  void finish(Slot& s, Event e);
  void publish_gauges();

  Generator& gen_;
  SchedulerOptions opt_;
  Metrics* metrics_;
  std::string model_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  std::vector<std::unique_ptr<Slot>> slots_;  // active only
  int n_active_ = 0;
  bool stopping_ = false;
  double avg_request_s_ = 1.0;  // for Retry-After
  std::thread worker_;
};

}  // namespace samq::serve
