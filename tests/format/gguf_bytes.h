// Test helper: builds GGUF images byte by byte, independently of samq's GgufWriter, so
// tests can place any field (valid or not) at a known offset.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace samq::test {

struct GgufBytes {
  std::vector<uint8_t> b;

  size_t size() const { return b.size(); }
  GgufBytes& raw(const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
    return *this;
  }
  GgufBytes& u8(uint8_t v) { return raw(&v, 1); }
  GgufBytes& u32(uint32_t v) { return raw(&v, 4); }
  GgufBytes& i32(int32_t v) { return raw(&v, 4); }
  GgufBytes& u64(uint64_t v) { return raw(&v, 8); }
  GgufBytes& i64(int64_t v) { return raw(&v, 8); }
  GgufBytes& f32(float v) { return raw(&v, 4); }
  GgufBytes& str(const std::string& s) { return u64(s.size()).raw(s.data(), s.size()); }
  GgufBytes& header(uint32_t version, int64_t n_tensors, int64_t n_kv) {
    return raw("GGUF", 4).u32(version).i64(n_tensors).i64(n_kv);
  }
  // A kv with a u32 value: key, type 4, value.
  GgufBytes& kv_u32(const std::string& k, uint32_t v) { return str(k).i32(4).u32(v); }
  GgufBytes& kv_str(const std::string& k, const std::string& v) { return str(k).i32(8).str(v); }
  // Tensor info: name, n_dims, ne..., type, offset.
  GgufBytes& tinfo(const std::string& name, std::vector<int64_t> ne, int32_t type, uint64_t offset) {
    str(name).u32(uint32_t(ne.size()));
    for (int64_t e : ne) i64(e);
    return i32(type).u64(offset);
  }
  GgufBytes& pad(size_t align) {
    while (b.size() % align) b.push_back(0);
    return *this;
  }
  GgufBytes& zeros(size_t n) {
    b.insert(b.end(), n, 0);
    return *this;
  }
};

}  // namespace samq::test
