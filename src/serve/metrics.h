// serve/metrics.h — the server's Prometheus metrics (prometheus-cpp core registry, rendered in
// the text exposition format by GET /metrics). All methods are thread-safe.
//
//   samq_requests_total{route,status,model}             counter
//   samq_time_to_first_token_seconds{model}             histogram
//   samq_inter_token_latency_seconds{model}             histogram
//   samq_request_duration_seconds{route,model}          histogram (end to end)
//   samq_queue_time_seconds{model}                      histogram
//   samq_prompt_tokens_total{model}                     counter
//   samq_generated_tokens_total{model}                  counter
//   samq_active_slots{model}, samq_queue_depth{model}   gauges
//   samq_kv_cache_used_bytes{model}, samq_kv_cache_capacity_bytes{model}  gauges
//   samq_fallback_activations_total{reason}             counter (error, timeout, sla, circuit_open)
//   samq_circuit_state                                  gauge (0 closed, 1 open, 2 half-open)
//   samq_primary_p99_latency_seconds                    gauge (the SLA's rolling TTFT p99, first primary)
//   samq_primary_circuit_state{backend}                 gauge, per primary replica (as samq_circuit_state)
//   samq_primary_outstanding_requests{backend}          gauge, per primary replica (least-outstanding balancing)
//   samq_rejected_requests_total{reason}                counter (queue_full, draining, too_large...)
//   samq_http_connections{kind="open"|"limit"}          gauge (the front's connection cap)
#pragma once
#include <memory>
#include <string>

namespace prometheus {
class Registry;
}

namespace samq::serve {

class Metrics {
 public:
  Metrics();
  ~Metrics();
  void request(const std::string& route, int status, const std::string& model);
  void time_to_first_token(const std::string& model, double s);
  void inter_token_latency(const std::string& model, double s);
  void request_duration(const std::string& route, const std::string& model, double s);
  void queue_time(const std::string& model, double s);
  void prompt_tokens(const std::string& model, double n);
  void generated_tokens(const std::string& model, double n);
  void active_slots(const std::string& model, double n);
  void queue_depth(const std::string& model, double n);
  void kv_cache(const std::string& model, double used_bytes, double capacity_bytes);
  void fallback_activation(const std::string& reason);
  void circuit_state(int state);
  void http_connections(double open, double limit);
  void primary_p99(double seconds);
  void primary_circuit_state(const std::string& backend, int state);
  void primary_outstanding(const std::string& backend, double n);
  void rejected(const std::string& reason);

  std::string render() const;  // Prometheus text format

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace samq::serve
