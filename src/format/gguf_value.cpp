// GgufValue: construction, strict/lenient getters, display and encoding of one GGUF
// metadata value. Scalars keep their raw little-endian bits; arrays of scalars keep their
// packed element bytes, so a value read from a file re-encodes byte for byte.
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "format/gguf.h"

namespace samq {

std::string_view gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8: return "u8";
    case GgufType::INT8: return "i8";
    case GgufType::UINT16: return "u16";
    case GgufType::INT16: return "i16";
    case GgufType::UINT32: return "u32";
    case GgufType::INT32: return "i32";
    case GgufType::FLOAT32: return "f32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "str";
    case GgufType::ARRAY: return "arr";
    case GgufType::UINT64: return "u64";
    case GgufType::INT64: return "i64";
    case GgufType::FLOAT64: return "f64";
  }
  return "?";
}

size_t gguf_type_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    case GgufType::STRING: case GgufType::ARRAY: return 0;
  }
  return 0;
}

namespace {

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

std::string type_desc(GgufType t, GgufType elem) {
  if (t == GgufType::ARRAY) return fmt::format("arr[{}]", gguf_type_name(elem));
  return std::string(gguf_type_name(t));
}

std::string quote(std::string_view s, size_t max_len) {
  std::string out = "\"";
  size_t n = 0;
  for (unsigned char c : s) {
    if (n++ >= max_len) { out += "..."; break; }
    if (c == '"' || c == '\\') { out += '\\'; out += char(c); }
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += char(c);
  }
  return out + "\"";
}

// Display of one scalar element of type t stored at p.
std::string scalar_string(GgufType t, const uint8_t* p) {
  switch (t) {
    case GgufType::UINT8: return fmt::format("{}", load<uint8_t>(p));
    case GgufType::INT8: return fmt::format("{}", load<int8_t>(p));
    case GgufType::UINT16: return fmt::format("{}", load<uint16_t>(p));
    case GgufType::INT16: return fmt::format("{}", load<int16_t>(p));
    case GgufType::UINT32: return fmt::format("{}", load<uint32_t>(p));
    case GgufType::INT32: return fmt::format("{}", load<int32_t>(p));
    case GgufType::FLOAT32: return fmt::format("{}", load<float>(p));
    case GgufType::BOOL: return p[0] ? "true" : "false";
    case GgufType::UINT64: return fmt::format("{}", load<uint64_t>(p));
    case GgufType::INT64: return fmt::format("{}", load<int64_t>(p));
    case GgufType::FLOAT64: return fmt::format("{}", load<double>(p));
    default: return "?";
  }
}

void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void put_u64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
void put_str(std::string& out, const std::string& s) {
  put_u64(out, s.size());
  out.append(s);
}

}  // namespace

// The ten fixed-size numeric GGUF types: X(name suffix, C++ type, GgufType).
#define SAMQ_GGUF_NUMERIC_TYPES(X) \
  X(u8, uint8_t, UINT8)            \
  X(i8, int8_t, INT8)              \
  X(u16, uint16_t, UINT16)         \
  X(i16, int16_t, INT16)           \
  X(u32, uint32_t, UINT32)         \
  X(i32, int32_t, INT32)           \
  X(u64, uint64_t, UINT64)         \
  X(i64, int64_t, INT64)           \
  X(f32, float, FLOAT32)           \
  X(f64, double, FLOAT64)

#define SAMQ_GGUF_SCALAR(fn, T, TT)                 \
  GgufValue GgufValue::fn(T v) {                    \
    GgufValue r;                                    \
    r.type_ = GgufType::TT;                         \
    std::memcpy(&r.bits_, &v, sizeof(T));           \
    return r;                                       \
  }
SAMQ_GGUF_NUMERIC_TYPES(SAMQ_GGUF_SCALAR)
#undef SAMQ_GGUF_SCALAR

GgufValue GgufValue::boolean(bool v) {
  GgufValue r;
  r.type_ = GgufType::BOOL;
  r.bits_ = v ? 1 : 0;
  return r;
}

GgufValue GgufValue::str(std::string v) {
  GgufValue r;
  r.type_ = GgufType::STRING;
  r.str_ = std::move(v);
  return r;
}

GgufValue GgufValue::arr_str(std::vector<std::string> v) {
  GgufValue r;
  r.type_ = GgufType::ARRAY;
  r.elem_ = GgufType::STRING;
  r.count_ = v.size();
  r.strs_ = std::move(v);
  return r;
}

GgufValue GgufValue::arr_raw(GgufType elem, std::vector<uint8_t> bytes) {
  const size_t es = gguf_type_size(elem);
  if (es == 0) fail("GGUF array of {} elements: only scalar element types may be packed", gguf_type_name(elem));
  if (bytes.size() % es != 0)
    fail("GGUF array of {}: {} bytes is not a multiple of the element size {}", gguf_type_name(elem),
         bytes.size(), es);
  GgufValue r;
  r.type_ = GgufType::ARRAY;
  r.elem_ = elem;
  r.count_ = bytes.size() / es;
  r.raw_ = std::move(bytes);
  return r;
}

#define SAMQ_GGUF_ARRAY(fn, T, TT)                                              \
  GgufValue GgufValue::arr_##fn(std::span<const T> v) {                         \
    std::vector<uint8_t> b(v.size() * sizeof(T));                               \
    if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());                  \
    return arr_raw(GgufType::TT, std::move(b));                                 \
  }
SAMQ_GGUF_NUMERIC_TYPES(SAMQ_GGUF_ARRAY)
SAMQ_GGUF_ARRAY(bool, uint8_t, BOOL)
#undef SAMQ_GGUF_ARRAY

GgufType GgufValue::elem_type() const {
  if (!is_array()) wrong_type("arr");
  return elem_;
}

size_t GgufValue::size() const { return is_array() ? size_t(count_) : 1; }

void GgufValue::wrong_type(std::string_view expected) const {
  fail("GGUF key '{}': expected type {}, found {}", key_, expected, type_desc(type_, elem_));
}

#define SAMQ_GGUF_GET(fn, T, TT)                   \
  T GgufValue::get_##fn() const {                  \
    if (type_ != GgufType::TT) wrong_type(gguf_type_name(GgufType::TT)); \
    T v;                                           \
    std::memcpy(&v, &bits_, sizeof(T));            \
    return v;                                      \
  }
SAMQ_GGUF_NUMERIC_TYPES(SAMQ_GGUF_GET)
#undef SAMQ_GGUF_GET

bool GgufValue::get_bool() const {
  if (type_ != GgufType::BOOL) wrong_type("bool");
  return (bits_ & 0xff) != 0;
}

const std::string& GgufValue::get_str() const {
  if (type_ != GgufType::STRING) wrong_type("str");
  return str_;
}

int64_t GgufValue::get_int() const {
  switch (type_) {
    case GgufType::UINT8: return get_u8();
    case GgufType::INT8: return get_i8();
    case GgufType::UINT16: return get_u16();
    case GgufType::INT16: return get_i16();
    case GgufType::UINT32: return get_u32();
    case GgufType::INT32: return get_i32();
    case GgufType::INT64: return get_i64();
    case GgufType::UINT64: {
      const uint64_t v = get_u64();
      if (v > uint64_t(std::numeric_limits<int64_t>::max()))
        fail("GGUF key '{}': value {} does not fit int64", key_, v);
      return int64_t(v);
    }
    default: wrong_type("an integer type");
  }
}

double GgufValue::get_number() const {
  if (type_ == GgufType::FLOAT32) return get_f32();
  if (type_ == GgufType::FLOAT64) return get_f64();
  if (type_ == GgufType::UINT64) return double(get_u64());
  return double(get_int());
}

const std::vector<std::string>& GgufValue::get_arr_str() const {
  if (type_ != GgufType::ARRAY || elem_ != GgufType::STRING) wrong_type("arr[str]");
  return strs_;
}

namespace {
template <typename T>
std::vector<T> unpack(const std::vector<uint8_t>& raw, uint64_t count) {
  std::vector<T> v(count);
  if (count) std::memcpy(v.data(), raw.data(), count * sizeof(T));
  return v;
}
}  // namespace

std::vector<int32_t> GgufValue::get_arr_i32() const {
  if (type_ != GgufType::ARRAY || elem_ != GgufType::INT32) wrong_type("arr[i32]");
  return unpack<int32_t>(raw_, count_);
}

std::vector<uint32_t> GgufValue::get_arr_u32() const {
  if (type_ != GgufType::ARRAY || elem_ != GgufType::UINT32) wrong_type("arr[u32]");
  return unpack<uint32_t>(raw_, count_);
}

std::vector<float> GgufValue::get_arr_f32() const {
  if (type_ != GgufType::ARRAY || elem_ != GgufType::FLOAT32) wrong_type("arr[f32]");
  return unpack<float>(raw_, count_);
}

std::vector<int64_t> GgufValue::get_arr_int() const {
  if (type_ != GgufType::ARRAY) wrong_type("an integer array");
  std::vector<int64_t> out(count_);
  const size_t es = gguf_type_size(elem_);
  for (uint64_t i = 0; i < count_; ++i) {
    const uint8_t* p = raw_.data() + i * es;
    switch (elem_) {
      case GgufType::UINT8: out[i] = load<uint8_t>(p); break;
      case GgufType::INT8: out[i] = load<int8_t>(p); break;
      case GgufType::UINT16: out[i] = load<uint16_t>(p); break;
      case GgufType::INT16: out[i] = load<int16_t>(p); break;
      case GgufType::UINT32: out[i] = load<uint32_t>(p); break;
      case GgufType::INT32: out[i] = load<int32_t>(p); break;
      case GgufType::INT64: out[i] = load<int64_t>(p); break;
      case GgufType::UINT64: {
        const uint64_t v = load<uint64_t>(p);
        if (v > uint64_t(std::numeric_limits<int64_t>::max()))
          fail("GGUF key '{}': element {} = {} does not fit int64", key_, i, v);
        out[i] = int64_t(v);
        break;
      }
      default: wrong_type("an integer array");
    }
  }
  return out;
}

std::span<const uint8_t> GgufValue::array_bytes() const {
  if (type_ != GgufType::ARRAY || elem_ == GgufType::STRING) wrong_type("a numeric array");
  return raw_;
}

std::string GgufValue::to_string(size_t max_elems) const {
  if (type_ == GgufType::STRING) return quote(str_, 200);
  if (type_ != GgufType::ARRAY) return scalar_string(type_, reinterpret_cast<const uint8_t*>(&bits_));
  auto elem = [&](uint64_t i) {
    if (elem_ == GgufType::STRING) return quote(strs_[i], 40);
    return scalar_string(elem_, raw_.data() + i * gguf_type_size(elem_));
  };
  std::string out = "[";
  if (count_ <= max_elems) {
    for (uint64_t i = 0; i < count_; ++i) out += (i ? ", " : "") + elem(i);
    return out + "]";
  }
  out += fmt::format("{} x {}: ", count_, gguf_type_name(elem_));
  const uint64_t head = max_elems > 1 ? max_elems - 1 : 1;
  for (uint64_t i = 0; i < head; ++i) out += elem(i) + ", ";
  return out + "..., " + elem(count_ - 1) + "]";
}

uint64_t GgufValue::encoded_size() const {
  uint64_t n = 4;  // type id
  if (type_ == GgufType::STRING) return n + 8 + str_.size();
  if (type_ != GgufType::ARRAY) return n + gguf_type_size(type_);
  n += 4 + 8;  // element type, count
  if (elem_ == GgufType::STRING) {
    for (const auto& s : strs_) n += 8 + s.size();
    return n;
  }
  return n + raw_.size();
}

void GgufValue::encode(std::string& out) const {
  put_u32(out, uint32_t(type_));
  if (type_ == GgufType::STRING) {
    put_str(out, str_);
  } else if (type_ != GgufType::ARRAY) {
    out.append(reinterpret_cast<const char*>(&bits_), gguf_type_size(type_));
  } else {
    put_u32(out, uint32_t(elem_));
    put_u64(out, count_);
    if (elem_ == GgufType::STRING)
      for (const auto& s : strs_) put_str(out, s);
    else
      out.append(reinterpret_cast<const char*>(raw_.data()), raw_.size());
  }
}

bool GgufValue::operator==(const GgufValue& o) const {
  return type_ == o.type_ && elem_ == o.elem_ && bits_ == o.bits_ && str_ == o.str_ && strs_ == o.strs_ &&
         raw_ == o.raw_ && count_ == o.count_;
}

}  // namespace samq
