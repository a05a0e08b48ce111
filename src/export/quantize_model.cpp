#include "export/quantize_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "format/gguf.h"
#include "quant/gptq.h"
#include "quant/quantize.h"
#if SAMQ_HAVE_CUDA
#include "backend/cuda/gptq_cuda.h"
#endif

namespace samq {

const std::vector<float>* ImportanceMatrix::find(const std::string& name) const {
  auto it = values.find(name);
  return it == values.end() ? nullptr : &it->second;
}

ImportanceMatrix load_importance_matrix(const std::string& path) {
  ImportanceMatrix im;
  im.path = path;
  im.sha256 = sha256_file_hex(path);
  const GgufFile f = GgufFile::open(path);
  for (const char* k : {"imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"})
    if (!f.find(k)) fail("{}: not a GGUF imatrix: key {} is missing", path, k);
  const std::string suffix = ".in_sum2";
  for (const auto& t : f.tensors()) {
    if (t.name.size() <= suffix.size() || t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string base = t.name.substr(0, t.name.size() - suffix.size());
    const GgufTensorInfo* c = f.find_tensor(base + ".counts");
    if (!c) fail("{}: tensor {} has no matching {}.counts", path, t.name, base);
    if (t.type != GgmlType::F32 || c->type != GgmlType::F32) fail("{}: tensor {} or its counts is not F32", path, t.name);
    const int64_t ne0 = t.ne[0], n_mat = t.ne[1];
    if (c->n_elements() != n_mat) fail("{}: {}.counts has {} values, expected {}", path, base, c->n_elements(), n_mat);
    std::vector<float> v(size_t(ne0 * n_mat));
    const float* sums = reinterpret_cast<const float*>(t.data);
    const float* counts = reinterpret_cast<const float*>(c->data);
    for (int64_t j = 0; j < n_mat; ++j) {
      const float cnt = std::round(counts[j]);
      for (int64_t i = 0; i < ne0; ++i) {
        const float x = cnt > 0 ? sums[j * ne0 + i] / cnt : 1.0f;
        if (!std::isfinite(x)) fail("{}: tensor {} has a non-finite value at column {}", path, t.name, i);
        v[size_t(j * ne0 + i)] = x;
      }
    }
    im.values.emplace(base, std::move(v));
  }
  if (im.values.empty()) fail("{}: no *.in_sum2 tensors", path);
  return im;
}

HessianFile::HessianFile(HessianFile&&) noexcept = default;
HessianFile& HessianFile::operator=(HessianFile&&) noexcept = default;
HessianFile::~HessianFile() = default;

HessianFile HessianFile::open(const std::string& path) {
  HessianFile h;
  h.path_ = path;
  h.file_ = std::make_unique<GgufFile>(GgufFile::open(path));
  const GgufFile& f = *h.file_;
  if (f.get_str("general.type", "") != "samq.hessian")
    fail("{}: general.type is not \"samq.hessian\" (write one with samq hessian)", path);
  h.sha256_ = sha256_file_hex(path);
  const std::string suf = ".hessian";
  for (const auto& t : f.tensors()) {
    if (t.type != GgmlType::F32) fail("{}: tensor {} is not F32", path, t.name);
    if (t.name.size() > suf.size() && t.name.compare(t.name.size() - suf.size(), suf.size(), suf) == 0) {
      const std::string base = t.name.substr(0, t.name.size() - suf.size());
      if (t.ne[0] != t.ne[1] || t.n_dims != 2) fail("{}: tensor {} is not square: {}", path, t.name, t.shape_string());
      const GgufTensorInfo* c = f.find_tensor(base + ".counts");
      if (!c || c->n_elements() != 1) fail("{}: tensor {} has no {}.counts of one value", path, t.name, base);
      h.entry_of_[base] = base;
    }
  }
  for (const auto& a : f.get_arr_str("samq.hessian.aliases", {})) {
    const auto eq = a.find('=');
    if (eq == std::string::npos) fail("{}: samq.hessian.aliases entry '{}' is not weight=entry", path, a);
    const std::string target = a.substr(eq + 1);
    if (!h.entry_of_.count(target)) fail("{}: alias '{}' names a missing entry {}", path, a, target);
    h.entry_of_[a.substr(0, eq)] = target;
  }
  if (h.entry_of_.empty()) fail("{}: no *.hessian tensors", path);
  return h;
}

int64_t HessianFile::cols(const std::string& weight) const {
  auto it = entry_of_.find(weight);
  if (it == entry_of_.end()) return 0;
  return file_->find_tensor(it->second + ".hessian")->ne[0];
}

std::vector<float> HessianFile::mean(const std::string& weight) const {
  auto it = entry_of_.find(weight);
  if (it == entry_of_.end()) return {};
  const GgufTensorInfo* t = file_->find_tensor(it->second + ".hessian");
  const GgufTensorInfo* c = file_->find_tensor(it->second + ".counts");
  const float cnt = *reinterpret_cast<const float*>(c->data);
  if (!(cnt > 0)) fail("{}: {}.counts is {}", path_, it->second, cnt);
  const float* d = reinterpret_cast<const float*>(t->data);
  std::vector<float> v(size_t(t->n_elements()));
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = d[i] / cnt;
    if (!std::isfinite(v[i])) fail("{}: tensor {}.hessian has a non-finite value at {}", path_, it->second, i);
  }
  return v;
}

namespace {
void add_source_metadata(GgufWriter& w, const SourceModel& src) {
  for (const auto& v : src.metadata())
    if (!plan::is_replaced_key(v.key())) w.set(v.key(), v);
}

void add_tensor_infos(GgufWriter& w, const SourceModel& src, const std::vector<GgmlType>& types) {
  for (size_t i = 0; i < src.tensors().size(); ++i) {
    const auto& t = src.tensors()[i];
    w.add_tensor_info(t.name, types[i], std::span<const int64_t>(t.ne, t.n_dims));
  }
}
}  // namespace

int64_t gguf_overhead_bytes(const SourceModel& src) {
  GgufWriter w("/dev/null/never-written");  // header_bytes() only; nothing is opened
  add_source_metadata(w, src);
  std::vector<GgmlType> types(src.tensors().size(), GgmlType::F32);
  add_tensor_infos(w, src, types);
  return int64_t(w.header_bytes());
}

QuantizeResult quantize_model(const SourceModel& src, const plan::Plan& plan, const std::string& out_path,
                              const QuantizeOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto& st = src.tensors();
  if (plan.tensors.size() != st.size())
    fail("plan has {} tensors but the model {} has {}", plan.tensors.size(), src.path(), st.size());
  std::vector<GgmlType> types(st.size());
  for (size_t i = 0; i < st.size(); ++i) {
    const auto& pt = plan.tensors[i];
    if (pt.name != st[i].name)
      fail("plan tensor #{} is {} but the model's tensor #{} is {} (plan made for another model?)", i, pt.name, i,
           st[i].name);
    if (!quant_supported(pt.type)) fail("plan: tensor {}: type {} cannot be written", pt.name, ggml_type_name(pt.type));
    const auto& info = ggml_type_info(pt.type);
    if (st[i].cols() % info.block_size != 0)
      fail("plan: tensor {}: rows of {} elements cannot be {}", pt.name, st[i].cols(), info.name);
    const int64_t bytes = st[i].rows() * ggml_row_size(pt.type, st[i].cols());
    if (bytes != pt.bytes) fail("plan: tensor {}: {} bytes, but its shape at {} gives {}", pt.name, pt.bytes, info.name, bytes);
    types[i] = pt.type;
  }
  ImportanceMatrix im;
  if (!opt.imatrix_path.empty()) im = load_importance_matrix(opt.imatrix_path);
  std::optional<HessianFile> file;
  HessianSource* hf = opt.hessians;
  if (hf || !opt.hessian_path.empty()) {
#if !SAMQ_HAVE_CUDA
    // Before anything is written: GPTQ would need a GPU this build cannot use.
    if (opt.gptq_device >= 0) fail("GPTQ on cuda:{}: samq was built without CUDA", opt.gptq_device);
#endif
    if (!hf) hf = &file.emplace(HessianFile::open(opt.hessian_path));
  }

  GgufWriter w(out_path);
  add_source_metadata(w, src);
  // Updated in place (order and size kept) when the source has them, as u32 like llama-quantize.
  if (const GgufValue* v = w.find("general.file_type"); v && v->type() == GgufType::UINT32)
    w.set_u32("general.file_type", uint32_t(plan.ftype));
  if (const GgufValue* v = w.find("general.quantization_version"); v && v->type() == GgufType::UINT32)
    w.set_u32("general.quantization_version", 2);
  for (const auto& kv : plan::plan_metadata(plan, im.sha256, hf ? hf->sha256() : std::string())) {
    if (kv.is_string) w.set_str(kv.key, kv.str);
    else w.set_u32(kv.key, kv.u32);
  }
  add_tensor_infos(w, src, types);
  QuantizeResult r;
  r.header_bytes = int64_t(w.header_bytes());
  r.predicted_bytes = plan.file_bytes;
  w.write_header();

  int64_t total = 0;
  for (const auto& t : st) total += t.n_elements();
  std::optional<Progress> bar;
  if (opt.progress) bar.emplace("quantize", total, "weights");
  std::vector<float> f32;
  std::vector<uint8_t> q;
  // The Hessian source's preferred order (a streamed one computes each layer once), file order
  // on ties; the writer puts each tensor at its offset.
  std::vector<size_t> order(st.size());
  for (size_t i = 0; i < st.size(); ++i) order[i] = i;
  if (hf)
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return hf->pass_order(st[a].name) < hf->pass_order(st[b].name); });
  for (const size_t i : order) {
    const auto& t = st[i];
    const size_t bytes = size_t(plan.tensors[i].bytes);
    const uint8_t* raw = src.raw_data(i);
    if (raw && t.source_type == types[i]) {
      w.write_tensor_data(i, raw, bytes);  // already in the target type: copy as is
    } else {
      f32.resize(size_t(t.n_elements()));
      src.read_f32(i, f32.data());
      for (size_t k = 0; k < f32.size(); ++k)
        if (!std::isfinite(f32[k])) fail("{}: tensor {} has a non-finite value at element {}", src.path(), t.name, k);
      const std::vector<float>* imp = nullptr;
      if (types[i] != GgmlType::F32 && types[i] != GgmlType::F16 && types[i] != GgmlType::BF16) {
        imp = im.find(t.name);
        // ne[0] * ne[2] values: one importance vector per expert of a 3-D tensor (llama-quantize's rule)
        if (imp && int64_t(imp->size()) != t.cols() * t.ne[2]) {
          if (t.name != "token_embd.weight")
            fail("{}: imatrix entry {} has {} values, the tensor needs {} ({} columns x {} matrices)", im.path, t.name,
                 imp->size(), t.cols() * t.ne[2], t.cols(), t.ne[2]);
          imp = nullptr;
        }
        if (imp) ++r.n_with_imatrix;
      }
      q.resize(bytes);
      size_t n = 0;
      // Matrix by matrix (one for dense tensors): a stacked expert tensor's experts each with their
      // own Hessian entry "<name>.<expert>" (analyze/hessian.h, hessian_expert_name) or, for an
      // expert without one, their own slice of the importance matrix.
      const int64_t n_mat = t.ne[2] * t.ne[3], mat_rows = t.rows() / n_mat;
      const size_t mat_bytes = size_t(mat_rows * ggml_row_size(types[i], t.cols()));
      bool used_hessian = false;
      for (int64_t e = 0; e < n_mat; ++e) {
        const std::string hname = n_mat > 1 ? t.name + "." + std::to_string(e) : t.name;
        const float* src_e = f32.data() + e * mat_rows * t.cols();
        uint8_t* dst_e = q.data() + size_t(e) * mat_bytes;
        std::vector<float> H;  // empty: no Hessian (a streamed source has none for an unrouted expert)
        if (hf && gptq_supported(types[i]) && hf->has(hname)) {
          if (hf->cols(hname) != t.cols())
            fail("{}: Hessian of {} is {}x{}, the tensor has {} columns", hf->path(), hname, hf->cols(hname),
                 hf->cols(hname), t.cols());
          H = hf->mean(hname);
        }
        if (!H.empty()) {
          GptqOptions go;
          go.damp = opt.gptq_damp;
          const auto tg = std::chrono::steady_clock::now();
          if (opt.gptq_device >= 0) {
#if SAMQ_HAVE_CUDA
            GptqCudaTimings tm;
            GptqCudaConfig cfg;
            cfg.timings = &tm;
            n += gptq_quantize_tensor_cuda(types[i], src_e, dst_e, mat_rows, t.cols(), H.data(), go, opt.gptq_device,
                                           cfg);
            r.gptq_inverse_seconds += tm.inverse;
            r.gptq_transfer_seconds += tm.h_upload + tm.w_upload;
            r.gptq_host_step_seconds += tm.host_steps;
#else
            fail("GPTQ on cuda:{}: samq was built without CUDA", opt.gptq_device);
#endif
          } else {
            n += gptq_quantize_tensor(types[i], src_e, dst_e, mat_rows, t.cols(), H.data(), go);
          }
          r.gptq_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - tg).count();
          used_hessian = true;
        } else {
          n += quantize_tensor(types[i], src_e, dst_e, mat_rows, t.cols(), imp ? imp->data() + e * t.cols() : nullptr);
        }
      }
      if (used_hessian) ++r.n_with_hessian;
      if (n != bytes) fail("tensor {}: quantizer wrote {} bytes, expected {}", t.name, n, bytes);
      w.write_tensor_data(i, q.data(), bytes);
    }
    if (bar) bar->add(t.n_elements());
  }
  if (bar) bar->finish();
  r.file_bytes = int64_t(w.file_bytes());
  w.finish();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace samq
