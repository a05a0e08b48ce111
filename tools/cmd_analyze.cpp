// samq analyze MODEL --calib FILE -o sensitivity.json: measures, in nats per token, what
// quantizing each weight tensor to each candidate type costs (analyze/analyze.h), and writes
// sensitivity.json (docs/artifacts.md), optionally the importance matrix in llama.cpp's GGUF
// format and an SVG heat map.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "analyze/analyze.h"
#include "analyze/layer_stream.h"
#include "analyze/measure.h"
#include "eval/perplexity.h"
#include "calibration_options.h"
#include "command.h"
#include "device_option.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "export/source_model.h"
#include "format/gguf.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace samq::cli {
namespace {

struct AnalyzeArgs : CalibrationOptions {
  DeviceOption device;
  std::string out, imatrix_out, plot;
  std::string fisher = "full", labels = "model";
  uint64_t seed = 0x5a3d;
  int64_t loss_from = 0;
  // validation: measured single-tensor KLDs
  std::string stream = "auto", scratch, max_gpu_memory, max_host_memory;
  std::string round_trips = "device";
  std::string measure_text, measure_out;
  int64_t measure_chunks = 64;
  std::vector<std::string> measure_types = {"q2_K", "q4_K"};
};

ModelIdentity identify(const std::string& path, const Model& m) {
  ModelIdentity id;
  id.path = path;
  id.architecture = m.hparams.arch;
  auto src = open_source_model(path);
  id.sha256 = src->identity_sha256();
  GgufWriter w(path + ".samq-analyze-overhead.gguf");  // never written: header size only
  src->write_metadata(w);
  for (const auto& t : src->tensors()) {
    id.tensor_order.push_back(t.name);
    id.source_types[t.name] = std::string(ggml_type_name(t.source_type));
    w.add_tensor_info(t.name, GgmlType::F32, std::span<const int64_t>(t.ne, t.n_dims));
  }
  id.gguf_overhead_bytes = int64_t(w.header_bytes());
  return id;
}

void measure(const AnalyzeArgs& a, Model& m, const Tokenizer& tok, const AnalysisResult& r);

int run_analyze(const AnalyzeArgs& a) {
  if (a.fisher != "full" && a.fisher != "factored") fail("--fisher must be full or factored, not '{}'", a.fisher);
  if (a.labels != "model" && a.labels != "empirical") fail("--labels must be model or empirical, not '{}'", a.labels);
  const Backend be = a.device.resolve();
  const StreamMode mode = parse_stream_mode(a.stream);
  MemoryCaps caps;
  caps.gpu = parse_memory_size(a.max_gpu_memory, "--max-gpu-memory");
  caps.host = parse_memory_size(a.max_host_memory, "--max-host-memory");
  // Layers are prepared (uploaded) later: all at once in memory, or one at a time when streamed.
  auto m = Model::load(a.model, *be.ops, /*prepare_layers=*/false);
  const Tokenizer tok = model_tokenizer(a.model, *m);
  const Calibration calib = load_calibration(a.calib, tok, a.ctx, a.tokens);
  std::fprintf(stderr, "samq analyze: %s (%s, %lld layers), %zu chunks of %lld tokens from %s (%lld tokens in the file), %d threads, device %s\n",
               a.model.c_str(), m->hparams.arch.c_str(), (long long)m->hparams.n_layer, calib.chunks.size(),
               (long long)a.ctx, a.calib.c_str(), (long long)calib.n_text_tokens, num_threads(),
               be.device.c_str());
  const ModelIdentity id = identify(a.model, *m);
  AnalyzeOptions opt;
  opt.full = a.fisher == "full";
  opt.labels = a.labels == "model" ? kModelLabels : kEmpirical;
  opt.seed = a.seed;
  opt.loss_from = a.loss_from;
  const bool on_host = be.ops->host_memory();
  if (a.round_trips != "device" && a.round_trips != "cpu")
    fail("--round-trips must be device or cpu, not '{}'", a.round_trips);
  opt.predict_device = on_host || a.round_trips == "cpu" ? -1 : a.device.cuda_index();
  if (!on_host && caps.gpu == 0) caps.gpu = be.ops->memory_info().free;  // what the device has now
  const AnalysisMemoryPlan plan = plan_analysis_memory(*m, on_host, int64_t(calib.chunks.size()), a.ctx, opt.full, caps,
                                                       mode, a.scratch, opt.predict_device >= 0);
  std::fprintf(stderr, "samq analyze: %s", plan.text().c_str());
  AnalysisResult r;
  if (plan.streamed) {
    StreamOptions so;
    if (plan.scratch) so.scratch_dir = a.scratch;
    r = analyze_model_streamed(*m, *be.grad, calib, id, opt, so);
  } else {
    m->prepare_weights(*be.ops);
    r = analyze_model(*m, *be.grad, calib, id, opt);
  }
  const Ops::MemoryInfo dev = be.ops->memory_info(), host = cpu_ops().memory_info();
  r.doc["memory"] = {{"plan", plan.streamed ? (plan.scratch ? "streamed, checkpoints on disk" : "streamed") : "in-memory"},
                     {"estimated_device_bytes", on_host ? 0 : plan.chosen.device},
                     {"estimated_host_bytes", on_host ? plan.chosen.host + plan.chosen.device : plan.chosen.host},
                     {"peak_device_bytes", on_host ? 0 : dev.peak_used},
                     {"peak_host_rss_bytes", host.peak_used}};
  std::fprintf(stderr, "samq analyze: peak memory: device %s, host RSS %s\n",
               on_host ? "-" : format_bytes(dev.peak_used).c_str(), format_bytes(host.peak_used).c_str());
  // The importance matrix is named in sensitivity.json (absolute path and sha256; null with
  // --imatrix-out none), so `samq quantize` finds it through plan.json -> sensitivity.json by default.
  // Default: beside the report (sensitivity.json -> sensitivity.imatrix.gguf); "none" writes none.
  const std::string imatrix_out = a.imatrix_out == "none" ? ""
                                  : !a.imatrix_out.empty()
                                      ? a.imatrix_out
                                      : std::filesystem::path(a.out).replace_extension("").string() + ".imatrix.gguf";
  if (!imatrix_out.empty()) {
    write_imatrix_gguf(imatrix_out, r.imatrix);
    std::fprintf(stderr, "samq analyze: wrote importance matrix %s (%zu tensors)\n", imatrix_out.c_str(),
                 r.imatrix.entries.size());
    r.doc["imatrix"] = {{"path", std::filesystem::absolute(imatrix_out).string()},
                        {"sha256", sha256_file_hex(imatrix_out)}};
  } else {
    r.doc["imatrix"] = nullptr;
  }
  write_file_atomic(a.out, r.doc.dump(1) + "\n");
  if (r.predict_seconds > 0)
    std::fprintf(stderr, "samq analyze: predictions (quantizer round trips) %.1f s; the pass waited %.1f s for them\n",
                 r.predict_seconds, r.predict_wait_seconds);
  std::fprintf(stderr, "samq analyze: %.1f s, %.0f tokens/s, mean loss %.4f nats; wrote %s\n", r.seconds,
               r.tokens_per_second, r.mean_loss, a.out.c_str());
  if (!a.plot.empty()) {
    write_file_atomic(a.plot, sensitivity_svg(r.doc));
    std::fprintf(stderr, "samq analyze: wrote heat map %s\n", a.plot.c_str());
  }
  if (!a.measure_out.empty()) {
    if (plan.streamed) m->prepare_weights(*be.ops);  // measuring replaces tensors of every layer
    measure(a, *m, tok, r);
  }
  return 0;
}

// Replaces each quantizable tensor alone by its round trip through each --measure-types type
// (with this run's importance matrix, as `samq quantize --imatrix` would) and measures the
// mean KLD against the unquantized model on --measure-text, as `samq eval` does.
void measure(const AnalyzeArgs& a, Model& m, const Tokenizer& tok, const AnalysisResult& r) {
  if (a.measure_text.empty()) fail("--measure-out needs --measure-text");
  std::vector<GgmlType> types;
  for (const auto& t : a.measure_types) {
    auto ty = ggml_type_from_name(t);
    if (!ty) fail("--measure-types: unknown type '{}'", t);
    types.push_back(*ty);
  }
  const std::string text = read_file(a.measure_text);
  const auto toks = tokenize_eval_text(tok, text);
  std::vector<std::vector<int32_t>> chunks;
  for (int64_t c = 0; c < a.measure_chunks && (c + 1) * a.ctx <= int64_t(toks.size()); ++c)
    chunks.push_back(eval_chunk_tokens(toks, a.ctx, c, tok.bos()));
  if (chunks.empty()) fail("{}: shorter than one context of {} tokens", a.measure_text, a.ctx);
  SingleTensorKld meas(m, *m.ops, chunks);
  nlohmann::json out;
  out["schema"] = "samq.measured-kld/1";
  out["model"] = r.doc["model"];
  out["calibration"] = r.doc["calibration"];
  out["eval"] = {{"file", a.measure_text}, {"sha256", sha256_hex(text.data(), text.size())}, {"ctx", a.ctx},
                 {"chunks", chunks.size()}, {"scored_tokens", meas.n_scored()}, {"base_nll", meas.base_nll()}};
  nlohmann::json rows = nlohmann::json::array();
  std::vector<std::string> names;
  for (const auto& t : r.doc["tensors"])
    if (t["quantizable"].get<bool>()) names.push_back(t["name"]);
  Progress bar("measure", int64_t(names.size() * types.size()), "runs");
  for (const auto& name : names)
    for (GgmlType ty : types) {
      const std::vector<float> im = r.imatrix.mean(name);
      const auto res = meas.measure(name, ty, im.empty() ? nullptr : im.data());
      rows.push_back({{"name", name}, {"type", std::string(ggml_type_name(ty))}, {"kld", res.kld_mean},
                      {"dnll", res.dnll}, {"same_top_pct", res.same_top_pct}});
      bar.add(1);
    }
  bar.finish();
  out["measurements"] = rows;
  write_file_atomic(a.measure_out, out.dump(1) + "\n");
  std::fprintf(stderr, "samq analyze: wrote measured KLDs %s\n", a.measure_out.c_str());
}

std::function<int()> setup(CLI::App& sub) {
  auto a = std::make_shared<AnalyzeArgs>();
  a->declare(sub);
  a->device.declare(sub);
  sub.add_option("-o,--output", a->out, "Output sensitivity.json")->required();
  sub.add_option("--fisher", a->fisher, "Fisher form: full (exact diagonal) or factored (rows x columns)")
      ->capture_default_str();
  sub.add_option("--labels", a->labels, "Fisher labels: model (sampled from the model) or empirical (text)")
      ->capture_default_str();
  sub.add_option("--stream", a->stream,
                 "auto: layer-streamed when the in-memory pass does not fit the memory caps; on; off")
      ->capture_default_str();
  sub.add_option("--scratch", a->scratch, "Directory for the streamed pass's residual checkpoints when host memory is short");
  sub.add_option("--max-gpu-memory", a->max_gpu_memory, "Device memory cap, e.g. 80GB (default: free device memory)");
  sub.add_option("--max-host-memory", a->max_host_memory, "Host memory cap, e.g. 64GB (default: none)");
  sub.add_option("--round-trips", a->round_trips,
                 "Where the candidates' quantizer round trips run: device (the GPU of --device, same bytes as "
                 "the CPU's quantizer) or cpu")
      ->capture_default_str();
  sub.add_option("--imatrix-out", a->imatrix_out, "Where to write the importance matrix (llama.cpp GGUF imatrix format; samq quantize finds it "
                 "through sensitivity.json). Default: beside -o, NAME.imatrix.gguf; 'none': not written");
  sub.add_option("--plot", a->plot, "Also write an SVG heat map of predicted Δloss at Q4_K");
  sub.add_option("--seed", a->seed, "Seed of the model-label sampling")->capture_default_str();
  sub.add_option("--loss-from", a->loss_from, "Score positions >= this in each chunk")->capture_default_str();
  sub.add_option("--measure-text", a->measure_text,
                 "Validation: text on which to measure each tensor's real KLD when quantized alone");
  sub.add_option("--measure-out", a->measure_out, "Validation: write the measured per-tensor KLDs (JSON)");
  sub.add_option("--measure-chunks", a->measure_chunks, "Validation: chunks of --measure-text")->capture_default_str();
  sub.add_option("--measure-types", a->measure_types, "Validation: types to measure")->capture_default_str();
  return [a] { return run_analyze(*a); };
}

}  // namespace

SAMQ_COMMAND(analyze, 30, "Measure per-tensor sensitivity to each quantization type -> sensitivity.json", setup);

}  // namespace samq::cli
