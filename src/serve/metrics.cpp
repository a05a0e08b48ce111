#include "serve/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace samq::serve {

using prometheus::Counter;
using prometheus::Gauge;
using prometheus::Histogram;

namespace {
// Latency buckets in seconds, 1 ms .. 60 s.
const Histogram::BucketBoundaries kLatency = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                              0.5,   1.0,    2.5,   5.0,  10.0,  30.0, 60.0};
}  // namespace

struct Metrics::Impl {
  std::shared_ptr<prometheus::Registry> reg = std::make_shared<prometheus::Registry>();
  prometheus::Family<Counter>& requests = prometheus::BuildCounter()
      .Name("samq_requests_total").Help("HTTP requests by route, status and serving model").Register(*reg);
  prometheus::Family<Histogram>& ttft = prometheus::BuildHistogram()
      .Name("samq_time_to_first_token_seconds").Help("Time from admission to the first generated token").Register(*reg);
  prometheus::Family<Histogram>& itl = prometheus::BuildHistogram()
      .Name("samq_inter_token_latency_seconds").Help("Time between consecutive generated tokens").Register(*reg);
  prometheus::Family<Histogram>& e2e = prometheus::BuildHistogram()
      .Name("samq_request_duration_seconds").Help("End-to-end latency of generation requests").Register(*reg);
  prometheus::Family<Histogram>& queue = prometheus::BuildHistogram()
      .Name("samq_queue_time_seconds").Help("Time a request waited for a slot").Register(*reg);
  prometheus::Family<Counter>& prompt = prometheus::BuildCounter()
      .Name("samq_prompt_tokens_total").Help("Prompt tokens processed").Register(*reg);
  prometheus::Family<Counter>& gen = prometheus::BuildCounter()
      .Name("samq_generated_tokens_total").Help("Tokens generated").Register(*reg);
  prometheus::Family<Gauge>& active = prometheus::BuildGauge()
      .Name("samq_active_slots").Help("Slots decoding now").Register(*reg);
  prometheus::Family<Gauge>& depth = prometheus::BuildGauge()
      .Name("samq_queue_depth").Help("Requests waiting for a slot").Register(*reg);
  prometheus::Family<Gauge>& kv_used = prometheus::BuildGauge()
      .Name("samq_kv_cache_used_bytes").Help("KV cache bytes holding live tokens").Register(*reg);
  prometheus::Family<Gauge>& kv_cap = prometheus::BuildGauge()
      .Name("samq_kv_cache_capacity_bytes").Help("KV cache bytes allocated").Register(*reg);
  prometheus::Family<Counter>& fallback = prometheus::BuildCounter()
      .Name("samq_fallback_activations_total").Help("Requests (or their rest) sent to the fallback, by reason").Register(*reg);
  prometheus::Family<Gauge>& conns = prometheus::BuildGauge()
      .Name("samq_http_connections").Help("HTTP connections: open now, and the cap (--max-connections)").Register(*reg);
  prometheus::Family<Gauge>& circuit = prometheus::BuildGauge()
      .Name("samq_circuit_state").Help("Primary circuit breaker: 0 closed, 1 open, 2 half-open").Register(*reg);
  prometheus::Family<Gauge>& p99 = prometheus::BuildGauge()
      .Name("samq_primary_p99_latency_seconds").Help("Rolling p99 latency of the primary that the SLA watches").Register(*reg);
  prometheus::Family<Gauge>& pcircuit = prometheus::BuildGauge()
      .Name("samq_primary_circuit_state").Help("Circuit breaker of each primary replica: 0 closed, 1 open, 2 half-open").Register(*reg);
  prometheus::Family<Gauge>& poutstanding = prometheus::BuildGauge()
      .Name("samq_primary_outstanding_requests").Help("Requests in flight on each primary replica").Register(*reg);
  prometheus::Family<Counter>& rejected = prometheus::BuildCounter()
      .Name("samq_rejected_requests_total").Help("Requests refused before generation, by reason").Register(*reg);
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) { impl_->circuit.Add({}).Set(0); }
Metrics::~Metrics() = default;

void Metrics::request(const std::string& route, int status, const std::string& model) {
  impl_->requests.Add({{"route", route}, {"status", std::to_string(status)}, {"model", model}}).Increment();
}
void Metrics::time_to_first_token(const std::string& model, double s) {
  impl_->ttft.Add({{"model", model}}, kLatency).Observe(s);
}
void Metrics::inter_token_latency(const std::string& model, double s) {
  impl_->itl.Add({{"model", model}}, kLatency).Observe(s);
}
void Metrics::request_duration(const std::string& route, const std::string& model, double s) {
  impl_->e2e.Add({{"route", route}, {"model", model}}, kLatency).Observe(s);
}
void Metrics::queue_time(const std::string& model, double s) {
  impl_->queue.Add({{"model", model}}, kLatency).Observe(s);
}
void Metrics::prompt_tokens(const std::string& model, double n) { impl_->prompt.Add({{"model", model}}).Increment(n); }
void Metrics::generated_tokens(const std::string& model, double n) { impl_->gen.Add({{"model", model}}).Increment(n); }
void Metrics::active_slots(const std::string& model, double n) { impl_->active.Add({{"model", model}}).Set(n); }
void Metrics::queue_depth(const std::string& model, double n) { impl_->depth.Add({{"model", model}}).Set(n); }
void Metrics::kv_cache(const std::string& model, double used, double cap) {
  impl_->kv_used.Add({{"model", model}}).Set(used);
  impl_->kv_cap.Add({{"model", model}}).Set(cap);
}
void Metrics::fallback_activation(const std::string& reason) { impl_->fallback.Add({{"reason", reason}}).Increment(); }
void Metrics::http_connections(double open, double limit) {
  impl_->conns.Add({{"kind", "open"}}).Set(open);
  impl_->conns.Add({{"kind", "limit"}}).Set(limit);
}
void Metrics::circuit_state(int state) { impl_->circuit.Add({}).Set(state); }
void Metrics::primary_p99(double s) { impl_->p99.Add({}).Set(s); }
void Metrics::primary_circuit_state(const std::string& b, int state) { impl_->pcircuit.Add({{"backend", b}}).Set(state); }
void Metrics::primary_outstanding(const std::string& b, double n) { impl_->poutstanding.Add({{"backend", b}}).Set(n); }
void Metrics::rejected(const std::string& reason) { impl_->rejected.Add({{"reason", reason}}).Increment(); }

std::string Metrics::render() const {
  return prometheus::TextSerializer().Serialize(impl_->reg->Collect());
}

}  // namespace samq::serve
