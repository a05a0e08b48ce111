#include "serve/scheduler.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>

#include "core/error.h"
#include "core/parallel.h"
#include "serve/json_prefix.h"
#include "serve/text_stream.h"

namespace samq::serve {

namespace {
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

struct Scheduler::Job {
  GenRequest req;
  std::vector<int32_t> prompt;
  std::shared_ptr<RequestChannel> ch;
  Clock::time_point t_enqueue;
};

struct Scheduler::Slot {
  std::unique_ptr<Job> job;
  int seq = -1;
  size_t fed = 0;                 // prompt tokens fed so far
  std::vector<int32_t> next;      // the input of the next step
  Sampler sampler;
  TextStream text;
  int n_gen = 0;
  int unsent_tokens = 0;          // generated but not yet reported in a Text event
  Clock::time_point t_last;
  bool done = false;
  std::optional<JsonPrefix> json;         // response_format json_object
  std::vector<LogprobEntry> unsent_lp;    // logprobs of the unsent tokens
  TokenLogprob lp;                        // of the token just sampled
  Slot(std::unique_ptr<Job> j, int s)
      : job(std::move(j)), seq(s), sampler(job->req.sampling), text(job->req.stop) {
    if (job->req.json_object) json.emplace();
  }
};

Scheduler::Scheduler(Generator& gen, SchedulerOptions opt, Metrics* metrics)
    : gen_(gen), opt_(opt), metrics_(metrics), model_(gen.model_id()) {
  if (opt_.parallel < 1) fail("--parallel must be at least 1 (got {})", opt_.parallel);
  if (opt_.parallel > gen.max_sequences())
    fail("--parallel {} exceeds the {} sequences model '{}' was set up for", opt_.parallel,
         gen.max_sequences(), model_);
  if (opt_.queue < 0) fail("--queue must be >= 0 (got {})", opt_.queue);
  if (opt_.prefill_chunk < 1) opt_.prefill_chunk = 512;
  publish_gauges();
  worker_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopping_ && !worker_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

int Scheduler::active() const {
  std::lock_guard lk(mu_);
  return n_active_;
}
int Scheduler::queued() const {
  std::lock_guard lk(mu_);
  return int(queue_.size());
}

std::shared_ptr<RequestChannel> Scheduler::submit(const GenRequest& req) {
  // Refuse before the tokenizer runs: a full server spends nothing on a request it cannot take
  // (checked again below, when the job is queued).
  {
    std::lock_guard lk(mu_);
    if (stopping_) throw ApiError(503, "server_error", "shutting_down", "the server is shutting down");
    const int waiting = int(queue_.size());
    if (n_active_ + waiting >= opt_.parallel + opt_.queue) {
      const int retry = std::max(1, int(std::ceil(avg_request_s_ * (1.0 + waiting) / opt_.parallel)));
      if (metrics_) metrics_->rejected("queue_full");
      throw ApiError(429, "rate_limit_error", "server_overloaded",
                     fmt::format("all {} slots are busy and the queue of {} is full; retry later",
                                 opt_.parallel, opt_.queue), "", retry);
    }
  }
  for (auto& [id, b] : req.sampling.logit_bias)
    if (id < 0 || id >= gen_.n_vocab())
      throw ApiError(400, "invalid_request_error", "invalid_value",
                     fmt::format("Invalid 'logit_bias': token {} is not in this model's vocabulary of {} tokens.", id,
                                 gen_.n_vocab()), "logit_bias");
  auto job = std::make_unique<Job>();
  job->req = req;
  if (req.parts.empty()) {
    job->prompt = gen_.tokenize(req.prompt, req.add_bos);
  } else {
    // The template's skeleton with control tokens, message content as plain text, ids joined.
    for (size_t i = 0; i < req.parts.size(); ++i) {
      auto ids = gen_.tokenize(req.parts[i].text, i == 0 && req.add_bos, req.parts[i].special);
      job->prompt.insert(job->prompt.end(), ids.begin(), ids.end());
    }
  }
  const int n_ctx = gen_.n_ctx();
  const int P = int(job->prompt.size());
  if (P == 0) throw ApiError(400, "invalid_request_error", "invalid_prompt", "the prompt is empty", "prompt");
  if (P >= n_ctx)
    throw ApiError(400, "invalid_request_error", "context_length_exceeded",
                   fmt::format("This model's maximum context length is {} tokens, but the prompt has {} tokens.",
                               n_ctx, P), "prompt");
  if (req.max_tokens > 0 && P + req.max_tokens > n_ctx)
    throw ApiError(400, "invalid_request_error", "context_length_exceeded",
                   fmt::format("This model's maximum context length is {} tokens. However, you requested {} "
                               "tokens ({} in the prompt, {} for the completion).",
                               n_ctx, P + req.max_tokens, P, req.max_tokens), "max_tokens");
  job->ch = std::make_shared<RequestChannel>();
  job->t_enqueue = Clock::now();
  auto ch = job->ch;
  {
    std::lock_guard lk(mu_);
    if (stopping_) throw ApiError(503, "server_error", "shutting_down", "the server is shutting down");
    // Admission: free slots first, then the bounded queue.
    const int waiting = int(queue_.size());
    if (n_active_ + waiting >= opt_.parallel + opt_.queue) {
      const int retry = std::max(1, int(std::ceil(avg_request_s_ * (1.0 + waiting) / opt_.parallel)));
      if (metrics_) metrics_->rejected("queue_full");
      throw ApiError(429, "rate_limit_error", "server_overloaded",
                     fmt::format("all {} slots are busy and the queue of {} is full; retry later",
                                 opt_.parallel, opt_.queue), "", retry);
    }
    queue_.push_back(std::move(job));
    // Count the request as active right away if a slot is free, so concurrent submits see it.
    if (metrics_) metrics_->queue_depth(model_, double(queue_.size()));
  }
  cv_.notify_all();
  return ch;
}

void Scheduler::publish_gauges() {
  if (!metrics_) return;
  int a, q;
  {
    std::lock_guard lk(mu_);
    a = n_active_;
    q = int(queue_.size());
  }
  metrics_->active_slots(model_, a);
  metrics_->queue_depth(model_, q);
  metrics_->kv_cache(model_, double(gen_.kv_bytes_used()), double(gen_.kv_bytes_capacity()));
}

void Scheduler::finish(Slot& s, Event e) {
  if (s.done) return;
  s.done = true;
  if (e.kind == Event::Done) {
    std::string rest = s.text.finish();
    if (!rest.empty() || s.unsent_tokens > 0) {
      Event t;
      t.text = std::move(rest);
      t.tokens = s.unsent_tokens;
      t.logprobs = std::move(s.unsent_lp);
      s.job->ch->push(std::move(t));
    }
    e.usage = {int(s.job->prompt.size()), s.n_gen};
    const double dur = seconds(Clock::now() - s.job->t_enqueue);
    std::lock_guard lk(mu_);
    avg_request_s_ = 0.8 * avg_request_s_ + 0.2 * dur;
  }
  gen_.free_sequence(s.seq);  // before the client hears of it, so a finished request holds nothing
  s.job->ch->push(std::move(e));
}

namespace {
std::mutex& admission_gate() {
  static std::mutex m;
  return m;
}
}  // namespace

Scheduler::AdmissionHold::AdmissionHold() { admission_gate().lock(); }
Scheduler::AdmissionHold::~AdmissionHold() { admission_gate().unlock(); }

void Scheduler::run() {
  std::vector<StepInput> batch;
  std::vector<Slot*> who;
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> sampled;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !slots_.empty() || !queue_.empty(); });
      if (stopping_) break;
      // No admission while a request's choices are being submitted (AdmissionHold): active
      // sequences keep decoding meanwhile; with none active, wait for the hold to end.
      std::unique_lock gate(admission_gate(), std::defer_lock);
      bool admit = true;
      if (!queue_.empty() && !gate.try_lock()) {
        if (slots_.empty()) {
          lk.unlock();
          gate.lock();
          lk.lock();
          if (stopping_) break;
        } else {
          admit = false;
        }
      }
      while (admit && int(slots_.size()) < opt_.parallel && !queue_.empty()) {
        auto job = std::move(queue_.front());
        queue_.pop_front();
        if (job->ch->cancelled()) continue;
        int seq;
        try {
          seq = gen_.create_sequence();
        } catch (const std::exception& e) {
          job->ch->push(Event::error(503, e.what()));
          continue;
        }
        if (metrics_) {
          metrics_->queue_time(model_, seconds(Clock::now() - job->t_enqueue));
          metrics_->prompt_tokens(model_, double(job->prompt.size()));
        }
        slots_.push_back(std::make_unique<Slot>(std::move(job), seq));
      }
      // Drop cancelled requests still queued, so they neither wait nor count.
      std::erase_if(queue_, [](auto& j) { return j->ch->cancelled(); });
      n_active_ = int(slots_.size());
    }
    publish_gauges();

    batch.clear();
    who.clear();
    for (auto& sp : slots_) {
      Slot& s = *sp;
      if (s.job->ch->cancelled()) {
        s.done = true;
        gen_.free_sequence(s.seq);
        continue;
      }
      StepInput in;
      in.seq = s.seq;
      if (s.fed < s.job->prompt.size()) {
        const size_t n = std::min(s.job->prompt.size() - s.fed, size_t(opt_.prefill_chunk));
        in.tokens.assign(s.job->prompt.begin() + s.fed, s.job->prompt.begin() + s.fed + n);
        s.fed += n;
      } else {
        in.tokens = s.next;
      }
      batch.push_back(std::move(in));
      who.push_back(&s);
    }
    if (!batch.empty()) try {
      bool ok = true;
      try {
        gen_.step(batch, logits);
      } catch (const std::exception& e) {
        ok = false;
        for (Slot* s : who) {
          finish(*s, Event::error(500, e.what()));
        }
      }
      const auto now = Clock::now();
      // Sampling is independent per slot (each has its own generator): spread it over the
      // engine's threads, which are idle between steps (8 slots x 8k-vocab softmax in double
      // took ~1 ms a step, 10 % of a loaded 2-core server's step).
      sampled.resize(who.size());
      if (ok)
        parallel_for(int64_t(who.size()), 1, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) {
            Slot& s = *who[i];
            if (s.fed < s.job->prompt.size()) continue;
            std::function<bool(int32_t)> allowed;
            if (s.json)  // only tokens that keep the answer a prefix of a JSON object
              allowed = [&](int32_t id) {
                if (gen_.is_eog(id)) return false;
                const std::string piece = gen_.token_to_piece(id);
                return !piece.empty() && s.json->accepts(piece);
              };
            sampled[i] = s.sampler.sample(logits[i], allowed, s.job->req.sampling.logprobs ? &s.lp : nullptr);
          }
        });
      for (size_t i = 0; ok && i < who.size(); ++i) {
        Slot& s = *who[i];
        if (s.fed < s.job->prompt.size()) continue;  // prompt not complete yet
        const int32_t tok = sampled[i];
        if (tok < 0) {  // the JSON constraint allows no token of this vocabulary
          finish(s, Event::error(500, "no token continues the JSON object"));
          continue;
        }
        if (metrics_) {
          if (s.n_gen == 0) metrics_->time_to_first_token(model_, seconds(now - s.job->t_enqueue));
          else metrics_->inter_token_latency(model_, seconds(now - s.t_last));
        }
        s.t_last = now;
        if (gen_.is_eog(tok)) {
          finish(s, Event::done("stop"));
          continue;
        }
        ++s.n_gen;
        ++s.unsent_tokens;
        s.sampler.accept(tok);
        if (metrics_) metrics_->generated_tokens(model_, 1);
        const std::string piece = gen_.token_to_piece(tok);
        if (s.job->req.sampling.logprobs) {
          LogprobEntry le{piece, s.lp.logprob, {}};
          for (auto& [id, l] : s.lp.top) le.top.emplace_back(gen_.token_to_piece(id), l);
          s.unsent_lp.push_back(std::move(le));
        }
        if (s.json) s.json->feed(piece);
        // Every token is an event, also one whose text is held back (a possible stop string,
        // an incomplete UTF-8 character): the router sees progress, not silence.
        std::string out = s.text.push(piece);
        if (!out.empty() || !s.text.stopped()) {
          Event t;
          t.text = std::move(out);
          t.tokens = s.unsent_tokens;
          t.logprobs = std::move(s.unsent_lp);
          s.unsent_lp.clear();
          s.unsent_tokens = 0;
          s.job->ch->push(std::move(t));
        }
        const int len = int(s.job->prompt.size()) + s.n_gen;
        if (s.text.stopped() || (s.json && s.json->complete())) finish(s, Event::done("stop"));
        else if (s.job->req.max_tokens > 0 && s.n_gen >= s.job->req.max_tokens)
          finish(s, Event::done("length"));
        else if (len >= gen_.n_ctx()) finish(s, Event::done("length"));
        else s.next.assign(1, tok);
      }
    } catch (...) {
      // Sampling, detokenizing or an allocation failed: these requests end with an error, the
      // worker (and the process) carries on.
      for (Slot* s : who) {
        try {
          finish(*s, Event::error(500, "internal error while generating"));
        } catch (...) {
          s->done = true;
        }
      }
    }
    {
      std::lock_guard lk(mu_);
      std::erase_if(slots_, [](auto& s) { return s->done; });
      n_active_ = int(slots_.size());
    }
    publish_gauges();
  }
  // Shutting down: everything not finished gets an error.
  std::deque<std::unique_ptr<Job>> rest;
  {
    std::lock_guard lk(mu_);
    rest.swap(queue_);
  }
  for (auto& sp : slots_) {
    finish(*sp, Event::error(503, "the server is shutting down"));
  }
  slots_.clear();
  for (auto& j : rest) {
    j->ch->push(Event::error(503, "the server is shutting down"));
  }
  std::lock_guard lk(mu_);
  n_active_ = 0;
}

}  // namespace samq::serve
