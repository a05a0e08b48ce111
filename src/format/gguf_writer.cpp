// GGUF writer: header first, then each tensor's bytes streamed in tensor-info order, every
// tensor (the last included) zero-padded to the alignment, as llama.cpp's gguf_write does.
// Output goes to "<path>.tmp.<pid>" and is renamed onto <path> only by finish().
#include <cstring>

#include "core/atomic_file.h"
#include "core/error.h"
#include "format/gguf.h"

namespace samq {

namespace {

void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void put_u64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
void put_str(std::string& out, const std::string& s) {
  put_u64(out, s.size());
  out.append(s);
}

void check_alignment_value(const std::string& path, const GgufValue& v) {
  if (v.type() != GgufType::UINT32)
    fail("{}: general.alignment must be a u32 (llama.cpp aborts otherwise), got {}", path,
         gguf_type_name(v.type()));
  const uint32_t a = v.get_u32();
  if (a == 0 || (a & (a - 1)) != 0) fail("{}: general.alignment = {} is not a power of two", path, a);
}

}  // namespace

GgufWriter::GgufWriter(std::string path) : path_(std::move(path)) {}

GgufWriter::~GgufWriter() = default;  // an uncommitted AtomicFile removes its temp file

void GgufWriter::set(std::string key, GgufValue v) {
  if (header_written_) fail("{}: cannot set '{}' after the header was written", path_, key);
  if (key.empty()) fail("{}: empty metadata key", path_);
  if (key == "general.alignment") check_alignment_value(path_, v);
  if (v.is_array() && v.elem_type() == GgufType::ARRAY) fail("{}: key '{}': nested arrays are not allowed", path_, key);
  v.set_key(key);
  for (auto& kv : kv_) {
    if (kv.key() == key) {
      kv = std::move(v);
      return;
    }
  }
  kv_.push_back(std::move(v));
}

void GgufWriter::copy_kv(const GgufFile& src) {
  for (const auto& v : src.kv()) set(v.key(), v);
}

bool GgufWriter::remove(std::string_view key) {
  if (header_written_) fail("{}: cannot remove '{}' after the header was written", path_, key);
  for (auto it = kv_.begin(); it != kv_.end(); ++it) {
    if (it->key() == key) {
      kv_.erase(it);
      return true;
    }
  }
  return false;
}

const GgufValue* GgufWriter::find(std::string_view key) const {
  for (const auto& kv : kv_)
    if (kv.key() == key) return &kv;
  return nullptr;
}

size_t GgufWriter::add_tensor_info(std::string name, GgmlType type, std::span<const int64_t> ne) {
  if (header_written_) fail("{}: cannot add tensor '{}' after the header was written", path_, name);
  if (name.empty()) fail("{}: empty tensor name", path_);
  if (name.size() > kGgufMaxNameLen)
    fail("{}: tensor name '{}' is {} bytes, llama.cpp allows at most {}", path_, name, name.size(), kGgufMaxNameLen);
  if (tensor_index_.count(name)) fail("{}: duplicate tensor name '{}'", path_, name);
  if (ne.empty() || ne.size() > 4) fail("{}: tensor '{}' has {} dims, 1 to 4 allowed", path_, name, ne.size());
  const GgmlTypeInfo& ti = ggml_type_info(type);
  GgufTensorInfo t;
  t.name = name;
  t.type = type;
  t.n_dims = uint32_t(ne.size());
  for (size_t d = 0; d < ne.size(); ++d) {
    if (ne[d] < 0) fail("{}: tensor '{}' ne[{}] = {} is negative", path_, name, d, ne[d]);
    t.ne[d] = ne[d];
  }
  if (t.ne[0] % ti.block_size != 0)
    fail("{}: tensor '{}': ne[0] = {} is not a multiple of {}'s block size {}", path_, name, t.ne[0], ti.name,
         ti.block_size);
  t.nbytes = uint64_t(t.rows()) * uint64_t(ggml_row_size(type, t.ne[0]));
  t.offset = 0;
  for (const auto& p : tensors_) t.offset += gguf_pad(p.nbytes, alignment());
  tensor_index_.emplace(name, tensors_.size());
  tensors_.push_back(std::move(t));
  return tensors_.size() - 1;
}

uint32_t GgufWriter::alignment() const {
  const GgufValue* a = find("general.alignment");
  return a ? a->get_u32() : kGgufDefaultAlignment;
}

uint64_t GgufWriter::header_bytes() const {
  uint64_t n = 4 + 4 + 8 + 8;
  for (const auto& kv : kv_) n += 8 + kv.key().size() + kv.encoded_size();
  for (const auto& t : tensors_) n += 8 + t.name.size() + 4 + 8 * uint64_t(t.n_dims) + 4 + 8;
  return gguf_pad(n, alignment());
}

uint64_t GgufWriter::tensor_data_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += gguf_pad(t.nbytes, alignment());
  return n;
}

void GgufWriter::write_header() {
  if (header_written_) fail("{}: header written twice", path_);
  // Offsets were computed with the alignment current at add time; recompute in case
  // general.alignment was set afterwards.
  uint64_t off = 0;
  for (auto& t : tensors_) {
    t.offset = off;
    off += gguf_pad(t.nbytes, alignment());
  }
  std::string h;
  h.reserve(size_t(header_bytes()));
  h.append("GGUF", 4);
  put_u32(h, 3);
  put_u64(h, tensors_.size());
  put_u64(h, kv_.size());
  for (const auto& kv : kv_) {
    put_str(h, kv.key());
    kv.encode(h);
  }
  for (const auto& t : tensors_) {
    put_str(h, t.name);
    put_u32(h, t.n_dims);
    for (uint32_t d = 0; d < t.n_dims; ++d) put_u64(h, uint64_t(t.ne[d]));
    put_u32(h, uint32_t(int32_t(t.type)));
    put_u64(h, t.offset);
  }
  h.resize(size_t(gguf_pad(h.size(), alignment())), '\0');
  if (h.size() != header_bytes()) fail("internal: GGUF header is {} bytes, predicted {}", h.size(), header_bytes());
  out_ = std::make_unique<AtomicFile>(path_);
  out_->write(h);
  written_.assign(tensors_.size(), 0);
  header_written_ = true;
}

void GgufWriter::write_tensor_data(size_t index, const void* data, size_t nbytes) {
  if (!header_written_) fail("{}: write_header() must come before tensor data", path_);
  if (index >= tensors_.size()) fail("{}: tensor index {} out of range ({} tensors)", path_, index, tensors_.size());
  const GgufTensorInfo& t = tensors_[index];
  if (written_[index]) fail("{}: tensor '{}' (index {}) written twice", path_, t.name, index);
  if (nbytes != t.nbytes)
    fail("{}: tensor '{}' ({} {}): got {} bytes, expected {}", path_, t.name, ggml_type_name(t.type),
         t.shape_string(), nbytes, t.nbytes);
  out_->seek(header_bytes() + t.offset);  // no-op when written in order
  out_->write(data, nbytes);
  out_->write_zeros(size_t(gguf_pad(nbytes, alignment()) - nbytes));
  written_[index] = 1;
  ++n_written_;
}

void GgufWriter::write_tensor_data(std::string_view name, const void* data, size_t nbytes) {
  auto it = tensor_index_.find(std::string(name));
  if (it == tensor_index_.end()) fail("{}: no tensor info named '{}'", path_, name);
  write_tensor_data(it->second, data, nbytes);
}

void GgufWriter::finish() {
  if (finished_) return;
  if (!header_written_) write_header();
  if (n_written_ != tensors_.size()) {
    size_t missing = 0;
    while (written_[missing]) ++missing;
    fail("{}: finish() after {} of {} tensors; '{}' is missing", path_, n_written_, tensors_.size(),
         tensors_[missing].name);
  }
  out_->seek(file_bytes());  // the end; the padded tensors tile the data section, all written
  out_->commit();
  finished_ = true;
}

}  // namespace samq
