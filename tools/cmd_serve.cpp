// samq serve: OpenAI-compatible HTTP server with continuous batching, Prometheus metrics and
// SLA-driven fallback (src/serve/).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <thread>

#include "command.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "serve/backend.h"
#include "serve/engine_generator.h"
#include "serve/fake_generator.h"
#include "serve/fault_injection.h"
#include "serve/metrics.h"
#include "serve/router.h"
#include "serve/server.h"

namespace {

struct ServeArgs {
  std::string model, host = "127.0.0.1", api_key, api_key_file, metrics_auth = "auto", chat_template = "auto", port_file;
  std::vector<std::string> aliases;
  int max_connections = 0;
  int port = 8080, parallel = 4, queue = 16, ctx = 0, http_threads = 0, read_timeout_s = 10, write_timeout_s = 30,
      drain_timeout_ms = 15000;
  size_t max_body = 1 << 20;
  std::string fallback, fallback_url, fallback_model, upstream_model;
  std::vector<std::string> upstreams;
  int fallback_parallel = 0;
  samq::serve::RouterOptions router;
  bool fake = false, faults = false;
  double fake_step_ms = 2.0;
};

std::unique_ptr<samq::serve::Generator> make_generator(const ServeArgs& a, const std::string& path, int slots,
                                                       const std::string& id) {
  using namespace samq::serve;
  if (a.fake) {
    FakeGeneratorOptions o;
    o.model_id = id.empty() ? "fake-" + path : id;
    o.max_sequences = slots;
    o.n_ctx = a.ctx > 0 ? a.ctx : 512;
    o.step_ms = a.fake_step_ms;
    o.per_token_us = 20;
    if (a.chat_template != "auto") o.chat_template = a.chat_template;
    return std::make_unique<FakeGenerator>(o);
  }
  EngineGeneratorOptions o;
  o.path = path;
  o.n_ctx = a.ctx;
  o.max_sequences = slots;
  o.chat_template = a.chat_template;
  o.model_id = id;
  std::fprintf(stderr, "samq serve: loading %s (%d sequence slots)\n", path.c_str(), slots);
  return std::make_unique<EngineGenerator>(o);
}

// A server shares its cores with HTTP threads and, often, other processes. libgomp's default
// spin-waiting at the end of each parallel region then collapses throughput (measured here on
// a loaded 2-core machine: 64 tokens took 49 s spinning, 0.38 s passive). libgomp reads
// OMP_WAIT_POLICY only at start-up, so when it is unset, serve re-executes itself with
// OMP_WAIT_POLICY=passive (set it yourself to choose otherwise).
void ensure_passive_omp_wait() {
  if (std::getenv("OMP_WAIT_POLICY")) return;
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (size_t i = 0; i < all.size();) {
    size_t j = all.find('\0', i);
    if (j == std::string::npos) j = all.size();
    args.push_back(all.substr(i, j - i));
    i = j + 1;
  }
  if (args.empty()) return;
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv.data());
  // exec failed: carry on with the default policy.
}

std::string fallback_names(const std::vector<samq::serve::Backend*>& chain) {
  std::string s;
  for (auto* b : chain) s += (s.empty() ? "" : " then ") + b->name();
  return s.empty() ? "none" : s;
}

// Everything that needs the models: generators, backends, the router. Members are declared in
// dependency order, so destruction stops the schedulers before their generators go.
struct Serving {
  std::unique_ptr<samq::serve::Generator> primary_gen, fb_gen;
  samq::serve::FaultInjectingGenerator* faults = nullptr;
  std::unique_ptr<samq::serve::LocalBackend> primary;
  std::vector<std::unique_ptr<samq::serve::UpstreamBackend>> replicas;  // --upstream: the primaries
  std::string primary_id, chat_template;
  std::unique_ptr<samq::serve::Backend> fallback, upstream;
  std::vector<samq::serve::Backend*> chain;
  std::vector<std::string> extra_ids;
  std::unique_ptr<samq::serve::Router> router;
};

std::unique_ptr<Serving> load_serving(const ServeArgs& a, samq::serve::Metrics& metrics) {
  using namespace samq::serve;
  auto sv = std::make_unique<Serving>();
  std::vector<Backend*> primaries;
  const int upstream_timeout = a.router.timeout_ms > 0 ? a.router.timeout_ms : 10000;
  if (!a.upstreams.empty()) {
    // OpenAI-compatible servers (llama-server with CUDA, other samq serve processes) are the
    // primaries; each has its own client pool and its own breaker in the router.
    for (const auto& url : a.upstreams) {
      sv->replicas.push_back(std::make_unique<UpstreamBackend>(url, a.upstream_model, upstream_timeout, "",
                                                               std::max(1, a.parallel), a.parallel + a.queue));
      primaries.push_back(sv->replicas.back().get());
    }
    sv->primary_id = !a.aliases.empty() ? a.aliases.front() : !a.upstream_model.empty() ? a.upstream_model : "upstream";
    sv->chat_template = a.chat_template == "auto" ? "chatml" : a.chat_template;
  } else {
    sv->primary_gen = make_generator(a, a.model.empty() ? "primary" : a.model, a.parallel,
                                      a.aliases.empty() ? std::string() : a.aliases.front());
    if (a.faults) {
      auto f = std::make_unique<FaultInjectingGenerator>(std::move(sv->primary_gen));
      sv->faults = f.get();
      sv->primary_gen = std::move(f);
      std::fprintf(stderr, "samq serve: WARNING: fault injection enabled (POST /internal/fault) — for tests only\n");
    }
    SchedulerOptions so;
    so.parallel = a.parallel;
    so.queue = a.queue;
    sv->primary = std::make_unique<LocalBackend>(*sv->primary_gen, so, &metrics);
    primaries.push_back(sv->primary.get());
    sv->primary_id = sv->primary_gen->model_id();
    sv->chat_template = sv->primary_gen->chat_template();
  }
  // Fallback chain: the in-process model first, then the upstream server.
  if (!a.fallback.empty()) {
    const int slots = a.fallback_parallel > 0 ? a.fallback_parallel : a.parallel;
    sv->fb_gen = make_generator(a, a.fallback, slots, "");
    if (sv->fb_gen->model_id() == sv->primary_id)
      samq::fail("--fallback names a model with the same id '{}' as the primary; give the primary an --alias",
                 sv->fb_gen->model_id());
    SchedulerOptions fo;
    fo.parallel = slots;
    fo.queue = a.queue;
    sv->fallback = std::make_unique<LocalBackend>(*sv->fb_gen, fo, &metrics);
    sv->extra_ids.push_back(sv->fb_gen->model_id());
    sv->chain.push_back(sv->fallback.get());
  }
  if (!a.fallback_url.empty()) {
    // A fixed pool: as many client threads as requests the server admits at once, no more.
    sv->upstream = std::make_unique<UpstreamBackend>(a.fallback_url, a.fallback_model, upstream_timeout, "",
                                                     std::max(1, a.parallel), a.parallel + a.queue);
    sv->chain.push_back(sv->upstream.get());
  }
  sv->router = std::make_unique<Router>(primaries, sv->chain, a.router, &metrics);
  return sv;
}

int run_serve(const ServeArgs& a) {
  using namespace samq::serve;
  ensure_passive_omp_wait();
  if (!a.fake && a.model.empty() && a.upstreams.empty())
    samq::fail("a MODEL (.gguf or HF directory) or --upstream URL is required (or --fake-model for tests)");
  if (!a.upstreams.empty() && (!a.model.empty() || a.fake || a.faults))
    samq::fail("--upstream replaces the in-process primary: give no MODEL, --fake-model or --enable-fault-injection with it");
  if (a.chat_template != "auto" && a.chat_template != "llama3" && a.chat_template != "chatml")
    samq::fail("--chat-template '{}': expected auto, llama3 or chatml", a.chat_template);

  // Block the shutdown signals in every thread; one thread waits for them below.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  // The key: --api-key-file, else --api-key (visible in the process list), else $SAMQ_API_KEY.
  std::string key = a.api_key;
  if (!a.api_key_file.empty()) {
    std::ifstream f(a.api_key_file);
    if (!f) samq::fail("--api-key-file '{}': cannot read it", a.api_key_file);
    std::getline(f, key);
    while (!key.empty() && (key.back() == '\r' || key.back() == ' ' || key.back() == '\t')) key.pop_back();
    if (key.empty()) samq::fail("--api-key-file '{}': the first line is empty", a.api_key_file);
  } else if (const char* env = std::getenv("SAMQ_API_KEY"); env && *env && key.empty()) {
    key = env;
  }
  if (a.faults && key.empty())
    std::fprintf(stderr, "samq serve: WARNING: --enable-fault-injection without an API key: anyone who can reach the port can inject faults\n");

  Metrics metrics;
  ServerOptions opt;
  opt.host = a.host;
  opt.port = a.port;
  opt.api_key = key;
  opt.metrics_auth = a.metrics_auth;
  // Idle threads are cheap; slow clients hold one each until --read-timeout-s.
  opt.http_threads = a.http_threads > 0 ? a.http_threads : std::max(2 * (a.parallel + a.queue) + 16, 128);
  opt.max_body_bytes = a.max_body;
  opt.max_connections = a.max_connections;
  opt.read_timeout_s = a.read_timeout_s;
  opt.write_timeout_s = a.write_timeout_s;
  opt.drain_timeout_ms = a.drain_timeout_ms;
  // Listen first (/health 200, /ready 503 while loading), then load the models.
  Server server(opt, metrics);
  const int port = server.bind();
  if (!a.port_file.empty()) samq::write_file_atomic(a.port_file, std::to_string(port) + "\n");
  std::fprintf(stderr, "samq serve: listening on http://%s:%d, loading...\n", a.host.c_str(), port);
  std::thread http([&] { server.run(); });

  std::atomic<bool> done{false};
  std::thread sig([&] {
    timespec ts{0, 200 * 1000 * 1000};
    while (!done) {
      const int s = sigtimedwait(&sigs, nullptr, &ts);
      if (s == SIGTERM || s == SIGINT) {
        std::fprintf(stderr, "samq serve: %s: draining %d request(s), then exiting\n",
                     s == SIGTERM ? "SIGTERM" : "SIGINT", server.in_flight());
        server.shutdown();
        return;
      }
    }
  });
  auto stop_threads = [&] {
    server.shutdown();
    http.join();
    done = true;
    sig.join();
  };

  std::unique_ptr<Serving> sv;
  try {
    sv = load_serving(a, metrics);
  } catch (...) {
    stop_threads();
    throw;
  }
  Server::ModelFacts facts;
  facts.model_id = sv->primary_id;
  facts.chat_template = sv->chat_template;
  // An upstream tokenizes the rendered prompt itself and adds its BOS: the template must not.
  facts.model_adds_bos = sv->primary_gen ? sv->primary_gen->add_bos() : true;
  facts.extra_model_ids = sv->extra_ids;
  if (a.aliases.size() > 1) facts.aliases.assign(a.aliases.begin() + 1, a.aliases.end());
  facts.fault_target = sv->faults;
  server.set_ready(*sv->router, facts);
  if (!server.draining())
    std::fprintf(stderr, "samq serve: %s ready on http://%s:%d (primary %s, parallel %d, queue %d, ctx %d, chat template %s, fallback %s)\n",
               facts.model_id.c_str(), a.host.c_str(), port,
               sv->replicas.empty() ? "in-process" : (std::to_string(sv->replicas.size()) + " upstream(s)").c_str(),
               a.parallel, a.queue, sv->primary_gen ? sv->primary_gen->n_ctx() : 0,
               facts.chat_template.c_str(), fallback_names(sv->chain).c_str());
  http.join();
  done = true;
  sig.join();
  if (sv->primary) sv->primary->scheduler().stop();
  std::fprintf(stderr, "samq serve: stopped\n");
  return 0;
}

std::function<int()> setup(CLI::App& sub) {
  auto a = std::make_shared<ServeArgs>();
  sub.add_option("model", a->model, "Primary model: a .gguf file or an HF directory");
  sub.add_option("--host", a->host, "Address to listen on")->capture_default_str();
  sub.add_option("--port", a->port, "Port (0: any free port, see --port-file)")->capture_default_str();
  sub.add_option("--port-file", a->port_file, "Write the bound port to this file once listening");
  sub.add_option("--api-key", a->api_key,
                 "Require 'Authorization: Bearer KEY' on /v1/* (visible in the process list: prefer --api-key-file or $SAMQ_API_KEY)");
  sub.add_option("--api-key-file", a->api_key_file, "Read the API key from the first line of this file");
  sub.add_option("--metrics-auth", a->metrics_auth,
                 "Who may read /metrics: auto (the API key when one is set), key, none")
      ->check(CLI::IsMember({"auto", "key", "none"}))->capture_default_str();
  sub.add_option("--alias", a->aliases,
                 "Model id shown by /v1/models (default: the file name); repeat it for more names that requests may "
                 "use. A request naming another model gets 404, as OpenAI answers");
  sub.add_option("--parallel", a->parallel, "Slots decoding together (continuous batching)")->capture_default_str();
  sub.add_option("--queue", a->queue, "Requests that may wait for a slot; beyond that, 429")->capture_default_str();
  sub.add_option("-c,--ctx-size", a->ctx, "Context per sequence (0: the model's, at most 4096)")->capture_default_str();
  sub.add_option("--chat-template", a->chat_template, "auto | llama3 | chatml")->capture_default_str();
  sub.add_option("--fallback", a->fallback, "Fallback model loaded in this process (e.g. the Q8_0 or BF16 file)");
  sub.add_option("--fallback-parallel", a->fallback_parallel, "Slots of the in-process fallback (default: --parallel)");
  sub.add_option("--fallback-url", a->fallback_url, "Fallback OpenAI-compatible server, e.g. http://127.0.0.1:8081 (after --fallback MODEL when both are given)");
  sub.add_option("--fallback-model", a->fallback_model, "Model name sent to --fallback-url");
  sub.add_option("--upstream", a->upstreams,
                 "Primary OpenAI-compatible server instead of an in-process MODEL (e.g. llama-server with CUDA): "
                 "http://HOST:PORT[/v1]. Repeat it for replicas, balanced by fewest outstanding requests, each with "
                 "its own breaker; samq adds the fallback, the breakers and the metrics. Chat requests are rendered "
                 "with --chat-template (auto: chatml) and sent to /v1/completions");
  sub.add_option("--upstream-model", a->upstream_model, "Model name sent to --upstream (default: none)");
  sub.add_option("--timeout-ms", a->router.timeout_ms,
                 "Continue elsewhere (another replica, the fallback) when a primary gives no first token for this "
                 "long; 0: off")->capture_default_str();
  sub.add_option("--token-timeout-ms", a->router.token_timeout_ms,
                 "... or no next token for this long after the previous one (default: --timeout-ms; 0: off). "
                 "Both apply to streaming and non-streaming requests: steady progress never times out");
  sub.add_option("--sla-p99-ms,--sla-ttft-p99-ms", a->router.sla_ttft_p99_ms,
                 "Open the circuit when the primary's rolling p99 time to first token exceeds this; 0: off")
      ->capture_default_str();
  sub.add_option("--sla-itl-p99-ms", a->router.sla_itl_p99_ms,
                 "Open the circuit when the primary's rolling p99 inter-token latency exceeds this; 0: off")
      ->capture_default_str();
  sub.add_option("--sla-window-s", a->router.sla_window_s, "Rolling window of the SLA and of the failure rate (seconds)")
      ->capture_default_str();
  sub.add_option("--sla-min-samples", a->router.sla_min_samples,
                 "Samples in the window before the SLA is judged (below 100, the p90 must breach too)")
      ->capture_default_str();
  sub.add_option("--breaker-failures", a->router.breaker_failures,
                 "Failures (errors, missed deadlines) in the window that open the circuit...")
      ->capture_default_str();
  sub.add_option("--breaker-failure-rate", a->router.breaker_failure_rate,
                 "... when they are at least this share of the window's outcomes")->capture_default_str();
  sub.add_option("--breaker-window", a->router.breaker_window, "Outcomes per primary in the failure window")
      ->capture_default_str();
  sub.add_option("--breaker-cooldown-ms", a->router.breaker_cooldown_ms, "Open time before half-open probes")
      ->capture_default_str();
  sub.add_option("--breaker-probes", a->router.breaker_probes, "Good probes that close the circuit again")->capture_default_str();
  sub.add_option("--max-body-bytes", a->max_body, "Largest request body; beyond it, 413")->capture_default_str();
  sub.add_option("--read-timeout-s", a->read_timeout_s,
                 "Each request's head and body must arrive within this long of its first byte; else 408")
      ->capture_default_str();
  sub.add_option("--write-timeout-s", a->write_timeout_s,
                 "A response may wait this long in all for its client to read (a slow streaming reader is "
                 "dropped and its request cancelled)")->capture_default_str();
  sub.add_option("--max-connections", a->max_connections,
                 "Connections served at once; beyond, 503 (default and most: --http-threads - 4)");
  sub.add_option("--http-threads", a->http_threads, "HTTP worker threads (default: max(2*(parallel+queue)+16, 128))");
  sub.add_option("--drain-timeout-ms", a->drain_timeout_ms, "On SIGTERM, wait this long for requests in flight")
      ->capture_default_str();
  sub.add_flag("--fake-model", a->fake,
               "TEST ONLY: serve a deterministic fake model instead of a real one (no MODEL needed)");
  sub.add_option("--fake-step-ms", a->fake_step_ms, "TEST ONLY: time per step of --fake-model")->capture_default_str();
  sub.add_flag("--enable-fault-injection", a->faults,
               "TEST ONLY: POST /internal/fault {\"fail\": bool, \"delay_ms\": N} makes the primary fail or slow down");
  return [a] { return run_serve(*a); };
}

}  // namespace

SAMQ_COMMAND(serve, 90, "Serve a model over an OpenAI-compatible HTTP API, with fallback and metrics", setup);
