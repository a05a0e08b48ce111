// `samq analyze` library (analyze/analyze.h).
#include "analyze/analyze.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <map>
#include <optional>

#include "core/error.h"
#include "core/progress.h"
#include "model/tensor_names.h"

namespace samq {

int default_signal(const AnalyzeOptions& opt) {
  if (opt.full) return opt.labels == kModelLabels ? kFisherModelFull : kFisherEmpFull;
  return opt.labels == kModelLabels ? kFisherModelFact : kFisherEmpFact;
}


nlohmann::json tensor_json(const Model& m, const SensitivityAccumulator& acc, const TensorStats& s,
                           const ModelIdentity& id, const AnalyzeOptions& opt) {
  using nlohmann::json;
  const int sig = default_signal(opt);
  const std::string& name = s.name;
  const Tensor* t = m.find(name);
  if (!t) fail("sensitivity: tensor {} is not in the loaded model", name);
  const auto parts = parse_gguf_name(name);
  json jt;
  jt["name"] = name;
  jt["layer"] = parts.layer;
  jt["kind"] = parts.kind;
  jt["shape"] = {t->rows, t->cols};
  jt["params"] = t->n_elements();
  auto st = id.source_types.find(name);
  jt["source_type"] = st != id.source_types.end() ? st->second : std::string(ggml_type_name(t->type));
  jt["grad_norm"] = s.grad_norm_sum;
  jt["fisher_trace"] = acc.fisher_trace(s, opt.labels);
  const bool quantizable = t->rows > 1 && !keeps_f32(name, t->rows > 1 ? 2 : 1);
  jt["quantizable"] = quantizable;
  if (s.n_mat > 1) {
    // Stacked experts: calibration rows routed to each; unrouted ones carry the routed mean (fisher.h).
    json unrouted = json::array();
    for (int64_t e = 0; e < s.n_mat; ++e)
      if (s.mat_rows_seen[size_t(e)] == 0) unrouted.push_back(e);
    jt["experts"] = {{"count", s.n_mat}, {"routed_rows", s.mat_rows_seen}, {"unrouted", unrouted}};
  }
  json cands = json::object();
  if (!quantizable) {
    cands["f32"] = {{"bytes", t->n_elements() * 4}, {"dloss", 0.0}};
  } else {
    const std::vector<float> w = m.tensor_f32(*t);
    const std::vector<float> qim = imatrix_collects(name) ? acc.imatrix(s) : std::vector<float>{};
    const auto preds =
        predict_tensor(acc, s, w.data(), qim.empty() ? nullptr : qim.data(), candidate_types(t->cols),
                       opt.predict_device);
    for (const auto& p : preds) {
      json sj = json::object();
      for (int k = 0; k < kNumSignals; ++k) sj[predict_signal_name(k)] = p.dloss[k];
      cands[std::string(ggml_type_name(p.type))] = {{"bytes", p.bytes}, {"dloss", p.dloss[sig]}, {"signals", sj}};
    }
  }
  jt["candidates"] = cands;
  return jt;
}

namespace {

// The document around the tensors' entries (in file order; `entry` makes or finds each).
nlohmann::json assemble(const Model& m, const SensitivityAccumulator& acc, const Calibration& calib,
                        const ModelIdentity& id, const AnalyzeOptions& opt,
                        const std::function<nlohmann::json(const std::string&)>& entry) {
  using nlohmann::json;
  const int sig = default_signal(opt);
  json doc;
  doc["schema"] = "samq.sensitivity/1";
  doc["samq_version"] = "0.1.0";
  int64_t n_params = 0;
  for_each_tensor(m.weights, [&](const Tensor& t) { n_params += t.n_elements(); });
  doc["model"] = {{"path", id.path.empty() ? m.path : id.path},
                  {"sha256", id.sha256},
                  {"architecture", id.architecture.empty() ? m.hparams.arch : id.architecture},
                  {"n_layer", m.hparams.n_layer},
                  {"n_params", n_params},
                  {"n_head", m.hparams.n_head},
                  {"n_head_kv", m.hparams.n_head_kv},
                  {"head_dim", m.hparams.head_dim},
                  {"n_embd", m.hparams.n_embd},
                  {"n_ff", m.hparams.n_ff},
                  {"n_vocab", m.hparams.n_vocab}};
  if (m.hparams.is_moe()) {
    doc["model"]["n_expert"] = m.hparams.n_expert;
    doc["model"]["n_expert_used"] = m.hparams.n_expert_used;
  }
  doc["calibration"] = {{"file", calib.path},
                        {"sha256", calib.sha256},
                        {"bytes", calib.bytes},
                        {"tokens", acc.n_tokens()},
                        {"scored_tokens", acc.n_loss_tokens()},
                        {"ctx", calib.ctx},
                        {"chunks", acc.n_chunks()},
                        {"mean_loss", acc.mean_loss()},
                        {"fisher", opt.labels == kModelLabels ? "model" : "empirical"},
                        {"fisher_form", opt.full ? "full" : "factored"},
                        {"dloss_signal", predict_signal_name(sig)},
                        {"seed", opt.seed},
                        {"loss_from", opt.loss_from}};
  doc["gguf_overhead_bytes"] = id.gguf_overhead_bytes;
  // tensors in file order (the caller's, else the model's visitor order)
  std::vector<std::string> order = id.tensor_order;
  if (order.empty())
    for_each_tensor(m.weights, [&](const Tensor& t) { order.push_back(t.name); });
  json tensors = json::array();
  std::map<int, std::map<std::string, double>> layer_sum;
  for (const std::string& name : order) {
    json jt = entry(name);
    for (const char* tn : {"q4_K", "q2_K"})
      if (jt["candidates"].contains(tn))
        layer_sum[jt["layer"].get<int>()][std::string("dloss_") + tn] += jt["candidates"][tn]["dloss"].get<double>();
    tensors.push_back(std::move(jt));
  }
  doc["tensors"] = tensors;
  json layers = json::array();
  for (auto& [l, sums] : layer_sum) {
    json jl = {{"layer", l}};
    for (auto& [k, v] : sums) jl[k] = v;
    layers.push_back(jl);
  }
  doc["layers"] = layers;
  return doc;
}

// The importance matrix of the analysed tokens (the linear weights' column sums).
Imatrix imatrix_of(const SensitivityAccumulator& acc, const Calibration& calib) {
  Imatrix im;
  for (const auto& s : acc.stats()) {
    if (!imatrix_collects(s.name) || s.col_sq.empty()) continue;
    ImatrixEntry e;
    e.name = s.name;
    e.sum2 = s.col_sq;
    e.count = double(s.n_rows_seen);
    if (s.n_mat > 1) {  // the measured per-expert data (filled experts have none: zeros, count 0)
      e.counts = s.mat_rows_seen;
      for (int64_t j = 0; j < s.n_mat; ++j)
        if (s.mat_rows_seen[size_t(j)] == 0)
          std::fill(e.sum2.begin() + j * s.cols, e.sum2.begin() + (j + 1) * s.cols, 0.0);
    }
    im.entries.push_back(std::move(e));
  }
  std::sort(im.entries.begin(), im.entries.end(), [](auto& a, auto& b) { return a.name < b.name; });
  im.datasets = {calib.path};
  im.chunk_count = uint32_t(calib.chunks.size());
  im.chunk_size = uint32_t(calib.ctx);
  return im;
}

}  // namespace

nlohmann::json sensitivity_json(const Model& m, const SensitivityAccumulator& acc, const Calibration& calib,
                                const ModelIdentity& id, const AnalyzeOptions& opt, bool progress) {
  std::optional<Progress> bar;
  int64_t n_tensors = 0;
  for_each_tensor(m.weights, [&](const Tensor&) { ++n_tensors; });
  if (progress) bar.emplace("predict", n_tensors, "tensors");
  return assemble(m, acc, calib, id, opt, [&](const std::string& name) {
    const TensorStats* s = acc.find(name);
    if (!s) fail("sensitivity: tensor {} is not in the loaded model", name);
    auto jt = tensor_json(m, acc, *s, id, opt);
    if (bar) bar->add(1);
    return jt;
  });
}

AnalysisResult analyze_model_streamed(Model& m, const BackwardOps& bops, const Calibration& calib,
                                      const ModelIdentity& id, const AnalyzeOptions& opt, const StreamOptions& so_in) {
  FisherOptions fo;
  fo.full = opt.full;
  fo.seed = opt.seed;
  fo.loss_from = opt.loss_from;
  SensitivityAccumulator acc(m, bops, fo, /*streamed=*/true);
  std::map<std::string, nlohmann::json> entries;
  StreamOptions so = so_in;
  so.progress = opt.progress;
  // On a device backend the predictions (CPU round trips of every candidate type) run on a
  // worker thread while the device computes the next layers; at most one layer's statistics
  // wait. On the CPU backend they run inline (both would share the same cores).
  const bool async = !bops.ops().host_memory();
  std::mutex mu;
  std::condition_variable cv;
  std::deque<TensorStats> queue;
  int64_t queued_bytes = 0;
  // One layer's Fisher rows (f32, two label kinds), the host memory plan's "Fisher diagonals of
  // one layer/head on the host"; a single larger job (the head, the embedding) may still wait alone.
  const int64_t max_queued = [&] {
    std::map<int, int64_t> params;
    for_each_tensor(m.weights, [&](const Tensor& t) {
      const int l = parse_gguf_name(t.name).layer;
      if (l >= 0) params[l] += t.n_elements();
    });
    int64_t layer = 1;
    for (const auto& [l, n] : params) layer = std::max(layer, n);
    return 2 * 4 * layer;
  }();
  bool finished = false;
  double predict_s = 0, wait_s = 0;  // under mu
  std::exception_ptr worker_error;
  auto stats_bytes = [](const TensorStats& s) { return int64_t(s.g2[0].size() + s.g2[1].size()) * 4; };
  std::thread worker;
  if (async)
    worker = std::thread([&] {
      for (;;) {
        TensorStats s;
        {
          std::unique_lock<std::mutex> lk(mu);
          cv.wait(lk, [&] { return finished || !queue.empty(); });
          if (queue.empty()) return;
          s = std::move(queue.front());
          queue.pop_front();
        }
        try {
          if (!worker_error) {
            const auto tp = std::chrono::steady_clock::now();
            nlohmann::json jt = tensor_json(m, acc, s, id, opt);
            std::lock_guard<std::mutex> lk(mu);
            predict_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - tp).count();
            entries[s.name] = std::move(jt);
          }
        } catch (...) {
          std::lock_guard<std::mutex> lk(mu);
          worker_error = std::current_exception();
        }
        {
          std::lock_guard<std::mutex> lk(mu);
          queued_bytes -= stats_bytes(s);
        }
        cv.notify_all();
      }
    });
  so.on_tensor_done = [&](TensorStats& s) {
    if (!async) {
      const auto tp = std::chrono::steady_clock::now();
      entries[s.name] = tensor_json(m, acc, s, id, opt);
      predict_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - tp).count();
      return;
    }
    // The Fisher rows move to the job; the sums (imatrix, factored Fisher) stay for the report.
    std::vector<float> g0 = std::move(s.g2[0]), g1 = std::move(s.g2[1]);
    TensorStats job = s;
    job.g2[0] = std::move(g0);
    job.g2[1] = std::move(g1);
    std::unique_lock<std::mutex> lk(mu);
    const auto tw = std::chrono::steady_clock::now();
    cv.wait(lk, [&] { return queued_bytes == 0 || queued_bytes + stats_bytes(job) <= max_queued || worker_error; });
    wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - tw).count();
    queued_bytes += stats_bytes(job);
    queue.push_back(std::move(job));
    cv.notify_all();
  };
  auto join = [&] {
    if (!worker.joinable()) return;
    {
      std::lock_guard<std::mutex> lk(mu);
      finished = true;
    }
    cv.notify_all();
    worker.join();
  };
  const auto t0 = std::chrono::steady_clock::now();
  try {
    acc.run_streamed(m, calib.chunks, so);
  } catch (...) {
    join();
    throw;
  }
  const auto t_join = std::chrono::steady_clock::now();
  join();
  wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_join).count();
  if (worker_error) std::rethrow_exception(worker_error);
  AnalysisResult r;
  r.predict_seconds = predict_s;
  r.predict_wait_seconds = async ? wait_s : 0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_second = r.seconds > 0 ? double(acc.n_tokens()) / r.seconds : 0;
  r.mean_loss = acc.mean_loss();
  r.doc = assemble(m, acc, calib, id, opt, [&](const std::string& name) {
    auto it = entries.find(name);
    if (it == entries.end()) fail("sensitivity: tensor {} is not in the loaded model", name);
    return std::move(it->second);
  });
  r.doc["calibration"]["seconds"] = r.seconds;
  r.doc["calibration"]["tokens_per_second"] = r.tokens_per_second;
  r.doc["calibration"]["streamed"] = true;
  r.doc["calibration"]["predict_seconds"] = r.predict_seconds;
  r.doc["calibration"]["predict_wait_seconds"] = r.predict_wait_seconds;
  r.doc["device"] = bops.ops().device();
  r.imatrix = imatrix_of(acc, calib);
  return r;
}

AnalysisResult analyze_model(const Model& m, const BackwardOps& bops, const Calibration& calib,
                             const ModelIdentity& id, const AnalyzeOptions& opt) {
  FisherOptions fo;
  fo.full = opt.full;
  fo.seed = opt.seed;
  fo.loss_from = opt.loss_from;
  SensitivityAccumulator acc(m, bops, fo);
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::optional<Progress> bar;
    if (opt.progress) bar.emplace("analyze", calib.n_tokens(), "tok");
    for (size_t c = 0; c < calib.chunks.size(); ++c) {
      acc.add_chunk(calib.chunks[c], int64_t(c));
      if (bar) bar->add(calib.ctx);
    }
    if (bar) bar->finish();
  }
  AnalysisResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_second = r.seconds > 0 ? double(acc.n_tokens()) / r.seconds : 0;
  r.mean_loss = acc.mean_loss();
  r.doc = sensitivity_json(m, acc, calib, id, opt, opt.progress);
  r.doc["calibration"]["seconds"] = r.seconds;
  r.doc["calibration"]["tokens_per_second"] = r.tokens_per_second;
  r.doc["device"] = bops.ops().device();
  r.doc["calibration"]["streamed"] = false;
  r.imatrix = imatrix_of(acc, calib);
  return r;
}

}  // namespace samq
