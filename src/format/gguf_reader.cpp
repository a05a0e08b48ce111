// GGUF reader: parses and validates a mapped GGUF image with the rules of llama.cpp's
// gguf_init_from_file (ggml-formats.md §1). Every read goes through Cursor, which checks
// the bounds first; every count is checked against the bytes left before anything is
// allocated, so garbage input can neither over-read, nor allocate without bound, nor hang.
#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "format/gguf.h"
#include "format/name_index.h"

namespace samq {

namespace {

constexpr uint64_t kMaxStringLen = uint64_t(1) << 30;  // llama.cpp: 1 GiB per string
constexpr uint64_t kMaxArrayLen = uint64_t(1) << 30;   // llama.cpp: 2^30 array elements
constexpr uint32_t kMaxDims = 4;

class Cursor {
 public:
  Cursor(const uint8_t* base, uint64_t size, const std::string& name) : base_(base), size_(size), name_(name) {}

  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  const std::string& name() const { return name_; }

  void need(uint64_t n, const std::string& field) const {
    if (n > left())
      fail("{}: truncated: {} at offset {} needs {} bytes, only {} left (file is {} bytes)", name_, field, pos_,
           n, left(), size_);
  }

  template <typename T>
  T read(const std::string& field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const std::string& field) {
    const uint64_t at = pos_;
    const uint64_t len = read<uint64_t>(field + " length");
    if (len > kMaxStringLen)
      fail("{}: {} at offset {}: string length {} exceeds the 1 GiB limit", name_, field, at, len);
    need(len, field);
    std::string s(reinterpret_cast<const char*>(base_ + pos_), size_t(len));
    pos_ += len;
    return s;
  }

  void read_bytes(void* out, uint64_t n, const std::string& field) {
    need(n, field);
    if (n) std::memcpy(out, base_ + pos_, size_t(n));
    pos_ += n;
  }

 private:
  const uint8_t* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& name_;
};

bool valid_gguf_type(int32_t t) { return t >= 0 && t <= int32_t(GgufType::FLOAT64); }

template <typename T>
T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

GgufValue scalar_from_bits(GgufType t, uint64_t bits) {
  switch (t) {
    case GgufType::UINT8: return GgufValue::u8(from_bits<uint8_t>(bits));
    case GgufType::INT8: return GgufValue::i8(from_bits<int8_t>(bits));
    case GgufType::UINT16: return GgufValue::u16(from_bits<uint16_t>(bits));
    case GgufType::INT16: return GgufValue::i16(from_bits<int16_t>(bits));
    case GgufType::UINT32: return GgufValue::u32(from_bits<uint32_t>(bits));
    case GgufType::INT32: return GgufValue::i32(from_bits<int32_t>(bits));
    case GgufType::FLOAT32: return GgufValue::f32(from_bits<float>(bits));
    case GgufType::BOOL: return GgufValue::boolean((bits & 0xff) != 0);
    case GgufType::UINT64: return GgufValue::u64(bits);
    case GgufType::INT64: return GgufValue::i64(from_bits<int64_t>(bits));
    case GgufType::FLOAT64: return GgufValue::f64(from_bits<double>(bits));
    default: fail("internal: {} is not a scalar GGUF type", gguf_type_name(t));
  }
}

}  // namespace

// Friend of GgufFile: fills its private fields.
class GgufParser {
 public:
  static void parse(GgufFile& f) {
    Cursor c(f.base_, f.size_, f.name_);
    const std::string& nm = f.name_;

    // Fixed header.
    c.need(4, "magic");
    char magic[4];
    c.read_bytes(magic, 4, "magic");
    if (std::memcmp(magic, "GGUF", 4) != 0)
      fail("{}: bad magic at offset 0: expected \"GGUF\", found {:02x} {:02x} {:02x} {:02x} (not a GGUF file)", nm,
           uint8_t(magic[0]), uint8_t(magic[1]), uint8_t(magic[2]), uint8_t(magic[3]));
    const uint32_t version = c.read<uint32_t>("version");
    if ((version & 0xffff) == 0)
      fail("{}: version at offset 4 is {:#x}: the file looks big-endian, which is not supported", nm, version);
    if (version == 1) fail("{}: version at offset 4 is 1: GGUFv1 is not supported (only 2 and 3)", nm);
    if (version < 2 || version > 3)
      fail("{}: version at offset 4 is {}: only GGUF versions 2 and 3 are supported", nm, version);
    f.version_ = version;
    const int64_t n_tensors = c.read<int64_t>("n_tensors");
    const int64_t n_kv = c.read<int64_t>("n_kv");
    // Each record takes at least one byte, so larger counts cannot be real; smaller ones are
    // checked record by record (a truncated file then names the record where it ends).
    if (n_tensors < 0 || uint64_t(n_tensors) > c.left())
      fail("{}: n_tensors at offset 8 is {}: impossible for a file of {} bytes", nm, n_tensors, f.size_);
    if (n_kv < 0 || uint64_t(n_kv) > c.left())
      fail("{}: n_kv at offset 16 is {}: impossible for a file of {} bytes", nm, n_kv, f.size_);

    // Key/value records.
    f.kv_.reserve(size_t(std::min<int64_t>(n_kv, 1 << 16)));
    for (int64_t i = 0; i < n_kv; ++i) {
      const uint64_t at = c.pos();
      const std::string field = fmt::format("key of kv {}", i);
      std::string key = c.read_string(field);
      if (key.empty()) fail("{}: kv {} at offset {}: empty key", nm, i, at);
      if (f.kv_index_.count(key)) fail("{}: kv {} at offset {}: duplicate key '{}'", nm, i, at, key);
      GgufValue v = read_value(c, key);
      v.set_key(key);
      f.kv_index_.emplace(key, f.kv_.size());
      f.kv_.push_back(std::move(v));
    }

    // Alignment.
    if (const GgufValue* a = f.find("general.alignment")) {
      if (a->type() != GgufType::UINT32)
        fail("{}: general.alignment must be stored as u32, found {}", nm, gguf_type_name(a->type()));
      const uint32_t al = a->get_u32();
      if (al == 0 || (al & (al - 1)) != 0) fail("{}: general.alignment = {} is not a power of two", nm, al);
      f.alignment_ = al;
    }

    // Tensor infos.
    f.tensors_.reserve(size_t(std::min<int64_t>(n_tensors, 1 << 16)));
    for (int64_t i = 0; i < n_tensors; ++i) {
      const uint64_t at = c.pos();
      GgufTensorInfo t;
      t.name = c.read_string(fmt::format("name of tensor info {}", i));
      if (t.name.size() > kGgufMaxNameLen)
        fail("{}: tensor info {} at offset {}: name '{}...' is {} bytes, the limit is {}", nm, i, at,
             t.name.substr(0, 32), t.name.size(), kGgufMaxNameLen);
      if (f.tensor_index_.count(t.name))
        fail("{}: tensor info {} at offset {}: duplicate tensor name '{}'", nm, i, at, t.name);
      const std::string tf = fmt::format("tensor '{}'", t.name);
      const uint64_t dims_at = c.pos();
      t.n_dims = c.read<uint32_t>(tf + " n_dims");
      if (t.n_dims > kMaxDims)
        fail("{}: {} n_dims at offset {} is {}, at most {} allowed", nm, tf, dims_at, t.n_dims, kMaxDims);
      for (uint32_t d = 0; d < t.n_dims; ++d) {
        const uint64_t ne_at = c.pos();
        t.ne[d] = c.read<int64_t>(fmt::format("{} ne[{}]", tf, d));
        if (t.ne[d] < 0) fail("{}: {} ne[{}] at offset {} is negative ({})", nm, tf, d, ne_at, t.ne[d]);
      }
      // The element count must fit int64 (llama.cpp checks the same).
      const int64_t kMax = std::numeric_limits<int64_t>::max();
      if ((t.ne[1] && t.ne[0] > kMax / t.ne[1]) || (t.ne[2] && t.ne[0] * t.ne[1] > kMax / t.ne[2]) ||
          (t.ne[3] && t.ne[0] * t.ne[1] * t.ne[2] > kMax / t.ne[3]))
        fail("{}: {} at offset {}: element count overflows int64", nm, tf, dims_at);
      const uint64_t type_at = c.pos();
      const int32_t type_id = c.read<int32_t>(tf + " type");
      const GgmlTypeInfo* ti = ggml_type_info(type_id);
      if (!ti) fail("{}: {} type at offset {}: unknown ggml type id {}", nm, tf, type_at, type_id);
      t.type = ti->type;
      if (t.ne[0] % ti->block_size != 0)
        fail("{}: {} at offset {}: ne[0] = {} is not a multiple of {}'s block size {}", nm, tf, dims_at, t.ne[0],
             ti->name, ti->block_size);
      const uint64_t off_at = c.pos();
      t.offset = c.read<uint64_t>(tf + " offset");
      // nbytes = rows * (ne0/block) * type_size; checked against overflow.
      const unsigned __int128 nb = (unsigned __int128)(uint64_t(t.n_elements()) / uint64_t(ti->block_size)) *
                                   uint64_t(ti->type_size);
      if (nb > f.size_)
        fail("{}: {} at offset {}: its {} bytes of data cannot fit in a file of {} bytes", nm, tf, dims_at,
             uint64_t(nb > std::numeric_limits<uint64_t>::max() ? std::numeric_limits<uint64_t>::max() : nb),
             f.size_);
      t.nbytes = uint64_t(nb);
      (void)off_at;
      f.tensor_index_.emplace(t.name, f.tensors_.size());
      f.tensors_.push_back(std::move(t));
    }

    // Data section: after the infos, padded to the alignment when there are tensors.
    const uint64_t infos_end = c.pos();
    f.data_offset_ = n_tensors > 0 ? gguf_pad(infos_end, f.alignment_) : infos_end;
    if (n_tensors > 0 && f.data_offset_ > f.size_)
      fail("{}: truncated: the data section would start at offset {} (after tensor infos ending at {}), file is {} bytes",
           nm, f.data_offset_, infos_end, f.size_);

    // Offsets must be the running padded sum, in tensor-info order; data inside the file.
    uint64_t expect = 0;
    for (auto& t : f.tensors_) {
      if (t.offset != expect)
        fail("{}: tensor '{}': offset {} in its tensor info, expected {} (tensors must be contiguous in "
             "tensor-info order, each padded to {} bytes)",
             nm, t.name, t.offset, expect, f.alignment_);
      if (t.nbytes > f.size_ - f.data_offset_ || t.offset > f.size_ - f.data_offset_ - t.nbytes)
        fail("{}: tensor '{}': data at offset {} + {} bytes runs past the end of the file ({} bytes)", nm, t.name,
             f.data_offset_ + t.offset, t.nbytes, f.size_);
      t.data = f.base_ + f.data_offset_ + t.offset;
      expect += gguf_pad(t.nbytes, f.alignment_);
    }
  }

 private:
  static GgufValue read_value(Cursor& c, const std::string& key) {
    const std::string& nm = c.name();
    const uint64_t at = c.pos();
    const int32_t type = c.read<int32_t>(fmt::format("type of key '{}'", key));
    if (!valid_gguf_type(type)) fail("{}: key '{}': value type at offset {} is {}, not a GGUF type", nm, key, at, type);
    const GgufType t = GgufType(type);
    const std::string vf = fmt::format("value of key '{}'", key);
    if (t == GgufType::STRING) return GgufValue::str(c.read_string(vf));
    if (t != GgufType::ARRAY) {
      uint64_t bits = 0;
      c.read_bytes(&bits, gguf_type_size(t), vf);
      return scalar_from_bits(t, bits);
    }
    const uint64_t et_at = c.pos();
    const int32_t et = c.read<int32_t>(fmt::format("element type of key '{}'", key));
    if (!valid_gguf_type(et))
      fail("{}: key '{}': array element type at offset {} is {}, not a GGUF type", nm, key, et_at, et);
    if (GgufType(et) == GgufType::ARRAY)
      fail("{}: key '{}': array element type at offset {} is arr: nested arrays are not supported", nm, key, et_at);
    const uint64_t n_at = c.pos();
    const uint64_t n = c.read<uint64_t>(fmt::format("element count of key '{}'", key));
    if (n > kMaxArrayLen)
      fail("{}: key '{}': array element count at offset {} is {}, above the limit of 2^30", nm, key, n_at, n);
    const GgufType e = GgufType(et);
    if (e == GgufType::STRING) {
      if (n > c.left() / 8)
        fail("{}: key '{}': array of {} strings at offset {} cannot fit in the {} bytes left", nm, key, n, n_at,
             c.left());
      std::vector<std::string> v;
      v.reserve(size_t(n));
      for (uint64_t i = 0; i < n; ++i) v.push_back(c.read_string(fmt::format("element {} of key '{}'", i, key)));
      return GgufValue::arr_str(std::move(v));
    }
    const uint64_t es = gguf_type_size(e);
    if (n > c.left() / es)
      fail("{}: truncated: array of {} x {} of key '{}' at offset {} needs {} bytes, only {} left", nm, n,
           gguf_type_name(e), key, n_at, n * es, c.left());
    std::vector<uint8_t> raw(size_t(n * es));
    c.read_bytes(raw.data(), raw.size(), vf);
    return GgufValue::arr_raw(e, std::move(raw));
  }
};

GgufFile GgufFile::open(const std::string& path) {
  GgufFile f;
  f.map_ = MappedFile(path);
  f.name_ = path;
  f.base_ = f.map_.data();
  f.size_ = f.map_.size();
  GgufParser::parse(f);
  return f;
}

GgufFile GgufFile::from_memory(const uint8_t* data, size_t size, std::string name) {
  GgufFile f;
  f.name_ = std::move(name);
  f.base_ = data;
  f.size_ = size;
  GgufParser::parse(f);
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  return find_by_name(kv_index_, kv_, key);
}

const GgufValue& GgufFile::at(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) fail("{}: missing metadata key '{}'", name_, key);
  return *v;
}

#define SAMQ_GGUF_FILE_GET(T, fn)                                                   \
  T GgufFile::fn(std::string_view key) const {                                      \
    const GgufValue& v = at(key);                                                   \
    try {                                                                           \
      return v.fn();                                                                \
    } catch (const Error& e) {                                                      \
      fail("{}: {}", name_, e.what());                                              \
    }                                                                               \
  }                                                                                 \
  T GgufFile::fn(std::string_view key, T def) const {                               \
    return find(key) ? fn(key) : def;                                               \
  }
SAMQ_GGUF_FILE_GET(uint32_t, get_u32)
SAMQ_GGUF_FILE_GET(int32_t, get_i32)
SAMQ_GGUF_FILE_GET(uint64_t, get_u64)
SAMQ_GGUF_FILE_GET(float, get_f32)
SAMQ_GGUF_FILE_GET(bool, get_bool)
SAMQ_GGUF_FILE_GET(std::string, get_str)
SAMQ_GGUF_FILE_GET(std::vector<std::string>, get_arr_str)
SAMQ_GGUF_FILE_GET(std::vector<int32_t>, get_arr_i32)
SAMQ_GGUF_FILE_GET(std::vector<float>, get_arr_f32)
#undef SAMQ_GGUF_FILE_GET

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  return find_by_name(tensor_index_, tensors_, name);
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (!t) fail("{}: no tensor named '{}'", name_, name);
  return *t;
}

std::string GgufTensorInfo::shape_string() const {
  std::string s = "[";
  for (uint32_t d = 0; d < n_dims; ++d) s += fmt::format("{}{}", d ? ", " : "", ne[d]);
  return s + "]";
}

}  // namespace samq
