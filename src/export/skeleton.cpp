#include "export/skeleton.h"

#include "export/quantize_model.h"

namespace samq {

bool llama_quantizable(const SourceTensor& t) {
  const std::string& n = t.name;
  auto ends_with = [&](const char* s) {
    const size_t k = std::char_traits<char>::length(s);
    return n.size() >= k && n.compare(n.size() - k, k, s) == 0;
  };
  if (t.n_dims < 2 || !ends_with("weight") || ends_with("_norm.weight")) return false;
  if (n.find("ffn_gate_inp") != std::string::npos || n == "rope_freqs.weight") return false;
  return true;
}

plan::Sensitivity sensitivity_skeleton(const SourceModel& src, const std::vector<GgmlType>& candidates) {
  plan::Sensitivity s;
  s.path = src.path();
  s.sha256 = "";
  s.model.path = src.path();
  s.model.sha256 = src.identity_sha256();
  const auto& hp = src.hparams();
  s.model.architecture = src.is_gguf() ? "" : "";
  for (const auto& kv : src.metadata())
    if (kv.key() == "general.architecture" && kv.type() == GgufType::STRING) s.model.architecture = kv.get_str();
  s.model.n_layer = int(hp.n_layer);
  s.model.n_head = int(hp.n_head);
  s.model.n_head_kv = int(hp.n_head_kv);
  s.model.head_dim = int(hp.head_dim);
  s.model.n_expert = int(hp.n_expert);
  s.gguf_overhead_bytes = gguf_overhead_bytes(src);
  for (const auto& t : src.tensors()) {
    plan::TensorSensitivity r;
    r.name = t.name;
    r.layer = plan::layer_of(t.name);
    r.kind = plan::kind_of(t.name);
    r.rows = t.rows();
    r.cols = t.cols();
    r.params = t.n_elements();
    r.source_type = std::string(ggml_type_name(t.source_type));
    r.quantizable = llama_quantizable(t);
    if (!r.quantizable) {
      r.candidates.push_back({GgmlType::F32, r.params * 4, 0.0});
    } else {
      for (GgmlType c : candidates)
        if (r.cols % ggml_type_info(c).block_size == 0)
          r.candidates.push_back({c, r.rows * ggml_row_size(c, r.cols), 0.0});
    }
    s.model.n_params += r.params;
    s.tensors.push_back(std::move(r));
  }
  return s;
}

}  // namespace samq
