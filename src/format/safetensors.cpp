// safetensors reader (format: https://github.com/huggingface/safetensors, "Format" section).
// Bounds-checked header parse over a mapped file; sharded checkpoints via the HF index.
#include "format/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/fp16.h"
#include "format/name_index.h"

namespace samq {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
constexpr uint64_t kMaxHeader = 100ull << 20;  // the safetensors library's own limit (100 MB)

const char* kSupported = "samq reads F32, F16 and BF16";

StDtype parse_dtype(const std::string& s, const std::string& tensor, const std::string& file) {
  if (s == "F32") return StDtype::F32;
  if (s == "F16") return StDtype::F16;
  if (s == "BF16") return StDtype::BF16;
  fail("{}: tensor '{}' has dtype {}, which is not supported ({})", file, tensor, s, kSupported);
}
}  // namespace

std::string_view st_dtype_name(StDtype d) {
  switch (d) {
    case StDtype::F32: return "F32";
    case StDtype::F16: return "F16";
    case StDtype::BF16: return "BF16";
  }
  return "?";
}

size_t st_dtype_size(StDtype d) { return d == StDtype::F32 ? 4 : 2; }

int64_t StTensorView::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t StTensorView::cols() const { return shape.empty() ? 1 : shape.back(); }

int64_t StTensorView::rows() const {
  int64_t n = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) n *= shape[i];
  return n;
}

namespace {
// n 16-bit values (unaligned, little-endian) widened to float by Widen.
template <float (*Widen)(uint16_t)>
void widen16(const uint8_t* src, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    out[i] = Widen(h);
  }
}

void convert(StDtype dt, const uint8_t* src, int64_t n, float* out) {
  if (n <= 0) return;  // empty tensors: out may be null (memcpy with null is UB even for 0 bytes)
  switch (dt) {
    case StDtype::F32:
      std::memcpy(out, src, size_t(n) * 4);
      return;
    case StDtype::F16: widen16<fp16_to_f32>(src, n, out); return;
    case StDtype::BF16: widen16<bf16_to_f32>(src, n, out); return;
  }
}
}  // namespace

void to_f32(const StTensorView& t, float* out) { convert(t.dtype, t.data, t.n_elements(), out); }

void row_to_f32(const StTensorView& t, int64_t row, float* out) {
  if (row < 0 || row >= t.rows()) fail("{}: tensor '{}': row {} out of range ({} rows)", t.file, t.name, row, t.rows());
  const int64_t c = t.cols();
  convert(t.dtype, t.data + uint64_t(row) * uint64_t(c) * st_dtype_size(t.dtype), c, out);
}

std::vector<StTensorView> parse_safetensors(const uint8_t* data, size_t size, const std::string& file,
                                            std::map<std::string, std::string>* metadata) {
  if (size < 8) fail("{}: truncated: the 8-byte header length at offset 0 is missing (file is {} bytes)", file, size);
  uint64_t n;
  std::memcpy(&n, data, 8);
  if (n > size - 8)
    fail("{}: header length at offset 0 is {}, but only {} bytes follow", file, n, size - 8);
  if (n > kMaxHeader) fail("{}: header length at offset 0 is {}, above the 100 MB limit", file, n);
  if (n < 2) fail("{}: header length at offset 0 is {}: too short for a JSON object", file, n);
  json h;
  try {
    h = json::parse(data + 8, data + 8 + n);
  } catch (const json::exception& e) {
    fail("{}: header JSON (offset 8, {} bytes) does not parse: {}", file, n, e.what());
  }
  if (!h.is_object()) fail("{}: header JSON at offset 8 is not an object", file);
  const uint8_t* buf = data + 8 + n;
  const uint64_t buf_size = size - 8 - n;

  std::vector<StTensorView> out;
  out.reserve(h.size());
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) fail("{}: header field __metadata__ is not an object", file);
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string()) fail("{}: __metadata__ value '{}' is not a string", file, m.key());
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!e.is_object()) fail("{}: header entry for tensor '{}' is not an object", file, name);
    auto dt = e.find("dtype");
    auto sh = e.find("shape");
    auto of = e.find("data_offsets");
    if (dt == e.end() || !dt->is_string()) fail("{}: tensor '{}': missing or non-string field 'dtype'", file, name);
    if (sh == e.end() || !sh->is_array()) fail("{}: tensor '{}': missing or non-array field 'shape'", file, name);
    if (of == e.end() || !of->is_array() || of->size() != 2)
      fail("{}: tensor '{}': field 'data_offsets' must be an array [begin, end]", file, name);
    StTensorView t;
    t.name = name;
    t.file = file;
    t.dtype = parse_dtype(dt->get<std::string>(), name, file);
    unsigned __int128 count = 1;
    bool huge = false;  // more elements than the buffer could hold bytes
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) fail("{}: tensor '{}': shape entry {} is not a non-negative integer", file, name, d.dump());
      const uint64_t v = d.get<uint64_t>();
      if (v > uint64_t(std::numeric_limits<int64_t>::max())) fail("{}: tensor '{}': shape entry {} too large", file, name, v);
      t.shape.push_back(int64_t(v));
      count *= v;
      if (count > buf_size) {
        count = (unsigned __int128)buf_size + 1;  // saturate: rejected below
        huge = true;
      }
    }
    for (const auto& o : *of)
      if (!o.is_number_unsigned()) fail("{}: tensor '{}': data_offsets entry {} is not a non-negative integer", file, name, o.dump());
    const uint64_t b = (*of)[0].get<uint64_t>(), en = (*of)[1].get<uint64_t>();
    if (b > en || en > buf_size)
      fail("{}: tensor '{}': data_offsets [{}, {}] outside the data buffer of {} bytes (file offsets {}..{})", file,
           name, b, en, buf_size, 8 + n + b, 8 + n + en);
    const unsigned __int128 want = count * st_dtype_size(t.dtype);
    if (huge || want != en - b)
      fail("{}: tensor '{}': data_offsets [{}, {}] hold {} bytes, but shape {} of {} needs {}", file, name, b, en,
           en - b, sh->dump(), st_dtype_name(t.dtype),
           huge ? std::string("more than the file holds") : std::to_string(uint64_t(want)));
    t.data = buf + b;
    t.nbytes = en - b;
    ranges.emplace_back(b, en);
    out.push_back(std::move(t));
  }
  // Sort by data offset and reject overlapping tensors.
  std::vector<size_t> order(out.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return ranges[a] < ranges[b];
  });
  // Walk in data order keeping the furthest end seen so far (empty tensors overlap nothing).
  size_t holder = 0;
  uint64_t max_end = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    const auto& cur = ranges[order[k]];
    if (cur.second == cur.first) continue;
    if (cur.first < max_end)
      fail("{}: tensors '{}' and '{}' overlap in the data buffer ([{}, {}] and [{}, {}])", file, out[holder].name,
           out[order[k]].name, ranges[holder].first, ranges[holder].second, cur.first, cur.second);
    max_end = cur.second;
    holder = order[k];
  }
  std::vector<StTensorView> sorted;
  sorted.reserve(out.size());
  for (size_t k : order) sorted.push_back(std::move(out[k]));
  return sorted;
}

SafetensorsModel SafetensorsModel::open(const std::string& path) {
  SafetensorsModel m;
  fs::path p(path);
  std::error_code ec;
  fs::path index;
  std::vector<std::string> files;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "model.safetensors.index.json", ec)) index = p / "model.safetensors.index.json";
    else if (fs::exists(p / "model.safetensors", ec)) files.push_back((p / "model.safetensors").string());
    else fail("{}: neither model.safetensors.index.json nor model.safetensors found", path);
  } else if (p.string().size() >= 5 && p.string().ends_with(".json")) {
    index = p;
  } else {
    files.push_back(path);
  }

  std::map<std::string, std::string> weight_map;  // tensor -> file (sharded only)
  if (!index.empty()) {
    json j;
    try {
      j = json::parse(read_file(index.string()));
    } catch (const json::exception& e) {
      fail("{}: does not parse as JSON: {}", index.string(), e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail("{}: missing object 'weight_map'", index.string());
    std::set<std::string> uniq;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail("{}: weight_map entry '{}' is not a string", index.string(), it.key());
      const std::string f = it.value().get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        fail("{}: weight_map entry '{}' names file '{}', which is not a plain file name in the same folder",
             index.string(), it.key(), f);
      weight_map[it.key()] = f;
      uniq.insert(f);
    }
    if (uniq.empty()) fail("{}: weight_map is empty", index.string());
    for (const auto& f : uniq) files.push_back((index.parent_path() / f).string());
  }

  for (const auto& f : files) {
    auto mf = std::make_unique<MappedFile>(f);
    auto ts = parse_safetensors(mf->data(), mf->size(), f, &m.metadata_);
    for (auto& t : ts) {
      if (m.index_.count(t.name))
        fail("{}: tensor '{}' also appears in {}", f, t.name, m.tensors_[m.index_[t.name]].file);
      if (!weight_map.empty()) {
        auto w = weight_map.find(t.name);
        if (w == weight_map.end()) fail("{}: tensor '{}' is not listed in {}", f, t.name, index.string());
        if ((index.parent_path() / w->second).string() != f)
          fail("{}: tensor '{}' is listed under {} in {}", f, t.name, w->second, index.string());
      }
      m.index_.emplace(t.name, m.tensors_.size());
      m.tensors_.push_back(std::move(t));
    }
    m.files_.push_back(f);
    m.maps_.push_back(std::move(mf));
  }
  for (const auto& [name, f] : weight_map)
    if (!m.index_.count(name)) fail("{}: tensor '{}' listed in the index is missing from {}", index.string(), name, f);
  return m;
}

const StTensorView* SafetensorsModel::find(std::string_view name) const {
  return find_by_name(index_, tensors_, name);
}

const StTensorView& SafetensorsModel::get(std::string_view name) const {
  const StTensorView* t = find(name);
  if (!t) fail("no tensor named '{}' in {}", name, files_.empty() ? std::string("<no files>") : files_.front());
  return *t;
}

uint64_t SafetensorsModel::total_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += t.nbytes;
  return n;
}

}  // namespace samq
