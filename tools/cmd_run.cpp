// samq run: the whole pipeline on one model, in one directory, resumable.
//   analyze (+ hessian) -> plan -> quantize (GPTQ) -> eval, then the same eval of llama.cpp's preset mixtures of
//   equal or larger size (and samq plans at those presets' exact sizes), and DIR/report.md
//   with SVG plots (size vs KLD; the plan's per-layer type map). --sweep compares with every
//   preset: samq's curve (a plan at each preset's size) against all of them.
// Each stage runs the same `samq` subcommand a user would type (so its options, checks and
// progress bars are the CLI's), in a child process of this binary. DIR/run-state.json records,
// per stage, a key (sha256 of its inputs' hashes and options) and the sha256 of each output;
// a re-run skips a stage whose key matches and whose outputs are present and unchanged.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "budget_options.h"
#include "command.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/sha256.h"
#include "device_option.h"
#include "export/source_model.h"
#include "plan/plan.h"
#include "plan/presets.h"
#include "plan/report.h"

namespace samq::cli {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

struct RunArgs {
  std::string model, calib, eval_text, dir, imatrix, sensitivity, hessian;
  BudgetOptions budget;
  std::vector<std::string> keep;
  std::string types, policy = "optimal";
  int64_t calib_tokens = 65536, ctx = 512, eval_bytes = -1, eval_chunks = -1;
  std::string compare = "auto";
  bool no_eval = false, no_gptq = false, sweep = false;
  DeviceOption device;  // passed on to every stage that runs the model
  // Layer streaming (analyze/layer_stream.h), passed to analyze; with `--stream on` or a cap, GPTQ
  // computes its Hessians one layer at a time while quantizing (no hessian.gguf stage).
  std::string stream = "auto", scratch, max_gpu_memory, max_host_memory;
  bool streamed_hessians() const { return stream == "on" || !max_gpu_memory.empty() || !max_host_memory.empty(); }
  std::vector<std::string> memory_args() const {
    std::vector<std::string> v = {"--stream", stream};
    if (!scratch.empty()) v.insert(v.end(), {"--scratch", scratch});
    if (!max_gpu_memory.empty()) v.insert(v.end(), {"--max-gpu-memory", max_gpu_memory});
    if (!max_host_memory.empty()) v.insert(v.end(), {"--max-host-memory", max_host_memory});
    return v;
  }
};

std::string self_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) fail("cannot find the samq binary (/proc/self/exe): {}", ec.message());
  return p.string();
}

// Runs `samq ARGS...` as a child (no shell), inheriting stdout/stderr.
void run_samq(std::vector<std::string> args) {
  args.insert(args.begin(), {self_exe(), "-t", std::to_string(num_threads())});
  std::string shown;
  for (size_t i = 3; i < args.size(); ++i) shown += (i > 3 ? " " : "") + args[i];
  std::fprintf(stderr, "\n== samq %s\n", shown.c_str());
  std::fflush(stderr);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) fail("fork failed");
  if (pid == 0) {
    execv(argv[0], argv.data());
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("stage failed: samq {}", shown);
}

class StageState {
 public:
  explicit StageState(std::string dir) : dir_(std::move(dir)), path_(dir_ + "/run-state.json") {
    if (fs::exists(path_)) {
      try {
        j_ = json::parse(read_file(path_));
      } catch (const json::exception&) {
        j_ = json::object();
      }
    }
    if (!j_.is_object()) j_ = json::object();
  }
  // Runs fn unless the stage's key and outputs match the record.
  void stage(const std::string& name, const std::vector<std::string>& key_parts, const std::vector<std::string>& outputs,
             const std::function<void()>& fn) {
    Sha256 h;
    for (auto& k : key_parts) h.update(k), h.update("\n", 1);
    const std::string key = h.hex();
    if (j_.contains(name) && j_[name].value("key", "") == key) {
      bool ok = true;
      for (auto& o : outputs) {
        const std::string p = dir_ + "/" + o;
        if (!fs::exists(p) || sha256_file_hex(p) != j_[name]["outputs"].value(o, "")) ok = false;
      }
      if (ok) {
        std::fprintf(stderr, "== %s: up to date (reused)\n", name.c_str());
        return;
      }
    }
    fn();
    json outs = json::object();
    for (auto& o : outputs) outs[o] = sha256_file_hex(dir_ + "/" + o);
    j_[name] = {{"key", key}, {"outputs", outs}};
    write_file_atomic(path_, j_.dump(1) + "\n");
  }
  std::string out_sha(const std::string& name, const std::string& o) const {
    if (!j_.contains(name) || !j_[name].contains("outputs")) return "";
    return j_[name]["outputs"].value(o, "");
  }

 private:
  std::string dir_, path_;
  json j_;
};

std::string budget_desc(const RunArgs& a) { return a.budget.describe(); }

json read_json(const std::string& p) { return json::parse(read_file(p)); }

// The name shown in the report: the model directory's name or the GGUF file's stem.
std::string model_name(const std::string& model) {
  fs::path p(model);
  if (p.filename().empty()) p = p.parent_path();
  return fs::is_directory(p) ? p.filename().string() : p.stem().string();
}

// Every preset's file size under the sensitivity report's shapes, smallest first.
std::vector<std::pair<int64_t, std::string>> preset_sizes(const std::string& sensitivity) {
  const auto sk = plan::read_sensitivity(sensitivity);
  std::vector<std::pair<int64_t, std::string>> sizes;
  for (auto& p : plan::presets()) {
    plan::PlanOptions o;
    o.policy = std::string("preset:") + p.name;
    sizes.push_back({plan::make_plan(sk, o).file_bytes, p.name});
  }
  std::sort(sizes.begin(), sizes.end());
  return sizes;
}

int run_pipeline(RunArgs a) {
  if (budget_desc(a).empty() && !a.sweep)
    fail("give one budget: --target-bpw, --target-size, --fit-memory or --max-kld (or --sweep)");
  if (a.sweep && a.compare != "auto") fail("--sweep compares with every preset; it does not go with --compare");
  // Each stage opens the device itself (a child process); this one only checks the spec.
  std::fprintf(stderr, "samq run: %s -> %s, %d threads, device %s\n", a.model.c_str(), a.dir.c_str(), num_threads(),
               a.device.preview().c_str());
  const std::vector<std::string> dev = a.device.args();
  fs::create_directories(a.dir);
  fs::create_directories(a.dir + "/compare");
  const std::string D = a.dir;
  auto src = open_source_model(a.model);
  const std::string model_sha = src->identity_sha256();
  if (a.calib.empty() && a.sensitivity.empty()) fail("--calib FILE is required (or --sensitivity FILE)");
  const std::string calib_sha = a.calib.empty() ? "" : sha256_file_hex(a.calib);
  StageState st(D);

  // 1. analyze (or take a finished report)
  if (!a.sensitivity.empty()) {
    st.stage("analyze", {"given/1", sha256_file_hex(a.sensitivity)}, {"sensitivity.json"}, [&] {
      std::fprintf(stderr, "== using the given sensitivity report %s\n", a.sensitivity.c_str());
      write_file_atomic(D + "/sensitivity.json", read_file(a.sensitivity));
    });
  } else {
    st.stage("analyze", {"analyze/1", model_sha, calib_sha, std::to_string(a.calib_tokens), std::to_string(a.ctx)},
             {"sensitivity.json", "imatrix.gguf"}, [&] {
               std::vector<std::string> args = {"analyze", a.model, "--calib", a.calib, "--tokens",
                                                std::to_string(a.calib_tokens), "--ctx", std::to_string(a.ctx), "-o",
                                                D + "/sensitivity.json", "--imatrix-out", D + "/imatrix.gguf", "--plot",
                                                D + "/sensitivity.svg"};
               args.insert(args.end(), dev.begin(), dev.end());
               for (auto& m : a.memory_args()) args.push_back(m);
               run_samq(args);
             });
  }
  const std::string imatrix = !a.imatrix.empty() ? a.imatrix : a.sensitivity.empty() ? D + "/imatrix.gguf" : "";
  const std::string imatrix_sha = imatrix.empty() ? "none" : sha256_file_hex(imatrix);
  const std::string sens_sha = st.out_sha("analyze", "sensitivity.json");
  // --sweep without a budget: samq's main file is its plan at Q4_K_M's size.
  std::string main_label;
  if (a.sweep && budget_desc(a).empty())
    for (auto& [bytes, name] : preset_sizes(D + "/sensitivity.json"))
      if (name == "Q4_K_M") a.budget.target_size = std::to_string(bytes), main_label = "samq @ Q4_K_M size";
  if (main_label.empty()) main_label = "samq " + budget_desc(a);

  // 1b. input Hessians for GPTQ rounding of samq's files (forward passes only, same calibration).
  std::string hessian = a.no_gptq ? "" : a.hessian;
  // Hessians streamed inside each GPTQ quantize (one layer at a time) instead of a file.
  const bool stream_h = !a.no_gptq && hessian.empty() && !a.calib.empty() && a.streamed_hessians();
  if (!a.no_gptq && hessian.empty() && !a.calib.empty() && !stream_h) {
    st.stage("hessian", {"hessian/1", model_sha, calib_sha, std::to_string(a.calib_tokens), std::to_string(a.ctx)},
             {"hessian.gguf"}, [&] {
               std::vector<std::string> args = {"hessian", a.model, "--calib", a.calib, "--tokens",
                                                std::to_string(a.calib_tokens), "--ctx", std::to_string(a.ctx), "-o",
                                                D + "/hessian.gguf"};
               args.insert(args.end(), dev.begin(), dev.end());
               run_samq(args);
             });
    hessian = D + "/hessian.gguf";
  }
  const std::string hessian_sha = stream_h ? "stream:" + calib_sha + ":" + std::to_string(a.calib_tokens) + ":" +
                                                 std::to_string(a.ctx)
                                 : hessian.empty() ? "none" : sha256_file_hex(hessian);

  // 2. plan
  std::vector<std::string> plan_opts = {"--policy", a.policy};
  for (auto& k : a.keep) plan_opts.insert(plan_opts.end(), {"--keep", k});
  if (!a.types.empty()) plan_opts.insert(plan_opts.end(), {"--types", a.types});
  std::string plan_key = "plan/1\n" + sens_sha + "\n" + budget_desc(a);
  for (auto& o : plan_opts) plan_key += "\n" + o;
  st.stage("plan", {plan_key}, {"plan.json", "plan.tensor-types.txt"}, [&] {
    std::vector<std::string> args = {"plan", D + "/sensitivity.json"};
    for (auto& b : a.budget.plan_args(a.ctx)) args.push_back(b);
    for (auto& o : plan_opts) args.push_back(o);
    args.insert(args.end(), {"-o", D + "/plan.json"});
    run_samq(args);
  });
  const plan::Plan main_plan = plan::read_plan(D + "/plan.json");

  // 3. quantize
  // samq's own files use GPTQ when Hessians exist; the llama.cpp presets are quantized as
  // llama-quantize does (importance-weighted rounding only), so they stay faithful baselines.
  auto quantize = [&](const std::string& name, const std::string& plan_rel, const std::string& out_rel, bool gptq) {
    const bool use_h = gptq && (!hessian.empty() || stream_h);
    st.stage(name, {"quantize/2", model_sha, sha256_file_hex(D + "/" + plan_rel), imatrix_sha, use_h ? hessian_sha : "none"},
             {out_rel}, [&] {
               std::vector<std::string> args = {"quantize", a.model, D + "/" + plan_rel, "-o", D + "/" + out_rel};
               if (!imatrix.empty()) args.insert(args.end(), {"--imatrix", imatrix});
               if (use_h && stream_h)
                 args.insert(args.end(), {"--calib", a.calib, "--tokens", std::to_string(a.calib_tokens), "--ctx",
                                          std::to_string(a.ctx)});
               else if (use_h)
                 args.insert(args.end(), {"--hessian", hessian});
               args.insert(args.end(), dev.begin(), dev.end());
               run_samq(args);
             });
  };
  quantize("quantize", "plan.json", "model.gguf", true);

  // Comparison set: llama.cpp presets (same imatrix), and samq plans at each preset's size.
  std::vector<std::string> presets;
  if (a.sweep) {
    for (auto& [bytes, name] : preset_sizes(D + "/sensitivity.json")) presets.push_back(name);
  } else if (a.compare == "auto") {
    // The smallest preset at least as large as samq's file, and the next smaller one.
    const auto sizes = preset_sizes(D + "/sensitivity.json");
    for (size_t i = 0; i < sizes.size(); ++i)
      if (sizes[i].first >= main_plan.file_bytes) {
        if (i > 0) presets.push_back(sizes[i - 1].second);
        presets.push_back(sizes[i].second);
        break;
      }
  } else if (a.compare != "none") {
    std::stringstream ss(a.compare);
    for (std::string x; std::getline(ss, x, ',');)
      if (!x.empty()) {
        if (!plan::find_preset(x)) fail("--compare: unknown preset {}", x);
        presets.push_back(plan::find_preset(x)->name);
      }
  }
  struct Entry {
    std::string label, series, plan_rel, gguf_rel, eval_rel;
  };
  std::vector<Entry> entries = {{main_label, "samq", "plan.json", "model.gguf", "eval.json"}};
  for (auto& p : presets) {
    const std::string base = "compare/" + p;
    st.stage("plan-" + p, {"plan/1", sens_sha, p}, {base + ".plan.json"}, [&] {
      run_samq({"plan", D + "/sensitivity.json", "--policy", "preset:" + p, "-o", D + "/" + base + ".plan.json"});
    });
    quantize("quantize-" + p, base + ".plan.json", base + ".gguf", false);
    entries.push_back({p + " (llama.cpp rules)", "preset", base + ".plan.json", base + ".gguf", base + ".eval.json"});
    const int64_t size = plan::read_plan(D + "/" + base + ".plan.json").file_bytes;
    if (a.budget.target_size == std::to_string(size)) continue;  // samq's main file is this one
    const std::string sb = "compare/samq-at-" + p;
    st.stage("plan-samq-at-" + p, {"plan/1", sens_sha, std::to_string(size), plan_key}, {sb + ".plan.json"}, [&] {
      std::vector<std::string> args = {"plan", D + "/sensitivity.json", "--target-size", std::to_string(size)};
      for (auto& o : plan_opts) args.push_back(o);
      args.insert(args.end(), {"-o", D + "/" + sb + ".plan.json"});
      run_samq(args);
    });
    quantize("quantize-samq-at-" + p, sb + ".plan.json", sb + ".gguf", true);
    entries.push_back({"samq @ " + p + " size", "samq", sb + ".plan.json", sb + ".gguf", sb + ".eval.json"});
  }

  // 4. eval: base logits once, then every file against them.
  std::vector<plan::ReportPoint> pts;
  if (!a.no_eval) {
    if (a.eval_text.empty()) fail("--eval FILE is required (or --no-eval)");
    const std::string eval_sha = sha256_file_hex(a.eval_text);
    std::vector<std::string> eopts = {"--ctx", std::to_string(a.ctx)};
    if (a.eval_bytes >= 0) eopts.insert(eopts.end(), {"--text-bytes", std::to_string(a.eval_bytes)});
    if (a.eval_chunks >= 0) eopts.insert(eopts.end(), {"--chunks", std::to_string(a.eval_chunks)});
    std::string ekey = "eval/1\n" + eval_sha;
    for (auto& o : eopts) ekey += "\n" + o;
    st.stage("eval-base", {ekey, model_sha}, {"base.logits", "eval-base.json"}, [&] {
      std::vector<std::string> args = {"eval", a.model, "--text", a.eval_text, "--save-logits", D + "/base.logits",
                                       "--json", D + "/eval-base.json"};
      args.insert(args.end(), eopts.begin(), eopts.end());
      args.insert(args.end(), dev.begin(), dev.end());
      run_samq(args);
    });
    for (auto& e : entries) {
      st.stage("eval:" + e.gguf_rel, {ekey, sha256_file_hex(D + "/" + e.gguf_rel), st.out_sha("eval-base", "base.logits")},
               {e.eval_rel}, [&] {
                 std::vector<std::string> args = {"eval", D + "/" + e.gguf_rel, "--base-logits", D + "/base.logits",
                                                  "--json", D + "/" + e.eval_rel};
                 args.insert(args.end(), eopts.begin(), eopts.end());
                 args.insert(args.end(), dev.begin(), dev.end());
                 run_samq(args);
               });
      const json ev = read_json(D + "/" + e.eval_rel);
      const plan::Plan pl = plan::read_plan(D + "/" + e.plan_rel);
      plan::ReportPoint pt;
      pt.label = e.label;
      pt.series = e.series;
      pt.file = e.gguf_rel;
      pt.bytes = int64_t(fs::file_size(D + "/" + e.gguf_rel));
      pt.bpw = pl.bpw;
      pt.predicted_kld = pl.dloss_complete ? pl.dloss : -1;
      pt.kld = ev["kld"]["mean"].get<double>();
      pt.kld_p99 = ev["kld"].value("p99", 0.0);
      pt.same_top = ev.value("same_top1_pct", 0.0);
      pt.ppl = ev["perplexity"]["ppl"].get<double>();
      pts.push_back(pt);
    }
  }

  // 5. report
  write_file_atomic(D + "/size-vs-kld.svg", plan::size_vs_kld_svg(pts, model_name(a.model) + ": file size vs KLD to the base model"));
  write_file_atomic(D + "/type-map.svg", plan::type_map_svg(main_plan, model_name(a.model) + ": samq plan, type per tensor (" + budget_desc(a) + ")"));
  std::string md = "# samq run report\n\n";
  md += fmt::format("- model: `{}` (sha256 {})\n", a.model, model_sha.substr(0, 16));
  if (a.sensitivity.empty())
    md += fmt::format("- calibration: `{}` (sha256 {}, {} tokens, ctx {})\n", a.calib, calib_sha.substr(0, 16),
                      a.calib_tokens, a.ctx);
  else
    md += fmt::format("- sensitivity report given: `{}`\n", a.sensitivity);
  md += fmt::format("- importance matrix: `{}`\n- budget: `{}`, policy `{}`\n", imatrix.empty() ? "none" : imatrix,
                    budget_desc(a), a.policy);
  md += stream_h ? std::string("- rounding of samq's files: GPTQ with input Hessians streamed from the calibration "
                               "text, one layer at a time (presets: importance-weighted, as llama-quantize)\n")
        : hessian.empty() ? std::string("- rounding: importance-weighted (no input Hessians)\n")
                        : fmt::format("- rounding of samq's files: GPTQ with the input Hessians `{}` (presets: "
                                      "importance-weighted, as llama-quantize)\n", hessian);
  if (!a.no_eval)
    md += fmt::format("- evaluation: `{}`{}, ctx {}, KLD against the unquantized model\n", a.eval_text,
                      a.eval_bytes >= 0 ? fmt::format(" (first {} bytes)", a.eval_bytes) : "", a.ctx);
  md += fmt::format("\nsamq's file: `model.gguf`, {} bytes, {:.4f} bits/weight, predicted Δloss {:.5f} nats.\n\n",
                    main_plan.file_bytes, main_plan.bpw, main_plan.dloss);
  if (!pts.empty()) {
    md += "| file | bytes | bpw | predicted Δloss | mean KLD | KLD p99 | same top-1 | PPL |\n|---|---|---|---|---|---|---|---|\n";
    for (auto& p : pts)
      md += fmt::format("| {} (`{}`) | {} | {:.4f} | {} | {:.5f} | {:.4f} | {:.2f} % | {:.4f} |\n", p.label, p.file, p.bytes,
                        p.bpw, p.predicted_kld >= 0 ? fmt::format("{:.5f}", p.predicted_kld) : "-", p.kld, p.kld_p99,
                        p.same_top, p.ppl);
    md += "\nKLD ratio samq / preset at no larger size:\n\n";
    for (auto& p : pts) {
      if (p.series != "preset") continue;
      const plan::ReportPoint* best = nullptr;
      for (auto& q : pts)
        if (q.series == "samq" && q.bytes <= p.bytes && (!best || q.kld < best->kld)) best = &q;
      if (best)
        md += fmt::format("- {}: {:.5f} vs {:.5f} → **{:.3f}×** ({} vs {} bytes)\n", p.label, best->kld, p.kld,
                          best->kld / p.kld, best->bytes, p.bytes);
    }
  }
  md += "\n![size vs KLD](size-vs-kld.svg)\n\n![type map](type-map.svg)\n";
  if (fs::exists(D + "/sensitivity.svg")) md += "\n![sensitivity](sensitivity.svg)\n";
  md += "\nstock llama.cpp can apply the same plan: `llama-quantize --imatrix imatrix.gguf --tensor-type-file "
        "plan.tensor-types.txt MODEL-bf16.gguf out.gguf Q4_K_M`\n";
  write_file_atomic(D + "/report.md", md);
  std::fprintf(stderr, "\n== report: %s/report.md\n", D.c_str());
  std::printf("%s", md.c_str());
  return 0;
}

std::function<int()> setup(CLI::App& sub) {
  auto a = std::make_shared<RunArgs>();
  sub.add_option("model", a->model, "Model: HF directory or GGUF (F32/F16/BF16)")->required();
  sub.add_option("--calib", a->calib, "Calibration text for samq analyze")->check(CLI::ExistingFile);
  sub.add_option("--eval", a->eval_text, "Evaluation text (KLD against the unquantized model)")->check(CLI::ExistingFile);
  sub.add_option("-o,--output", a->dir, "Output directory (re-running reuses its finished stages)")->required();
  a->budget.declare(sub, "Budget: memory for weights + KV cache (at --ctx) + compute buffers, as llama.cpp sizes them on CPU with its defaults");
  sub.add_option("--policy", a->policy, "Planner policy (optimal, threshold, preset:NAME)")->capture_default_str();
  sub.add_option("--types", a->types, "Candidate types allowed (comma-separated)");
  sub.add_option("--keep", a->keep, "Pin tensors: REGEX=TYPE (repeatable)");
  sub.add_option("--imatrix", a->imatrix, "Quantize with this imatrix instead of the one samq analyze writes")
      ->check(CLI::ExistingFile);
  sub.add_option("--sensitivity", a->sensitivity,
                 "Skip the analysis: plan from this sensitivity.json (quantize with --imatrix if given)")
      ->check(CLI::ExistingFile);
  sub.add_option("--calib-tokens", a->calib_tokens, "Calibration tokens for samq analyze")->capture_default_str();
  sub.add_option("--ctx", a->ctx, "Context for analysis and evaluation")->capture_default_str();
  sub.add_option("--eval-bytes", a->eval_bytes, "Evaluate on the first N bytes of --eval");
  sub.add_option("--eval-chunks", a->eval_chunks, "Evaluate at most N chunks");
  sub.add_option("--compare", a->compare,
                 "llama.cpp presets to compare (comma-separated, 'auto': the nearest at least as large and the next "
                 "smaller, 'none')")
      ->capture_default_str();
  sub.add_option("--hessian", a->hessian, "Input Hessians (samq hessian) for GPTQ instead of computing them from --calib")
      ->check(CLI::ExistingFile);
  sub.add_option("--stream", a->stream,
                 "Layer streaming of analyze (auto|on|off); 'on' or a memory cap also streams GPTQ's Hessians")
      ->capture_default_str();
  sub.add_option("--scratch", a->scratch, "Directory for streamed residual checkpoints (analyze --scratch)");
  sub.add_option("--max-gpu-memory", a->max_gpu_memory, "Device memory cap for analyze, e.g. 24GB");
  sub.add_option("--max-host-memory", a->max_host_memory, "Host memory cap for analyze, e.g. 64GB");
  sub.add_flag("--sweep", a->sweep,
               "Compare with every llama.cpp preset: plan, quantize and evaluate samq at each preset's size too "
               "(samq's curve against all presets); without a budget samq's main file is its plan at Q4_K_M's size");
  sub.add_flag("--no-gptq", a->no_gptq, "Round with the importance matrix only (no input Hessians, no GPTQ)");
  sub.add_flag("--no-eval", a->no_eval, "Stop after quantizing (no evaluation)");
  a->device.declare(sub, "Where the stages run (passed to analyze, hessian, quantize and eval)");
  return [a] { return run_pipeline(*a); };
}
}  // namespace

SAMQ_COMMAND(run, 5, "The whole pipeline: analyze -> plan -> quantize -> eval vs llama.cpp presets -> report.md", setup);

}  // namespace samq::cli
