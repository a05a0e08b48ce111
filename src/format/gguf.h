// GGUF container: reader and streaming writer (../shared/docs/ggml-formats.md §1).
//
// Reader: GgufFile::open maps the file and validates it exactly as llama.cpp's gguf.cpp
// does (magic, version 2/3, counts, string/array limits, duplicate or empty keys, tensor
// name length < 64 and uniqueness, n_dims <= 4, known ggml type ids, ne[0] a multiple of
// the block size, offsets equal to the running padded sum, general.alignment a power of two
// stored as UINT32, all data inside the file). Every read is bounds-checked; a malformed
// file throws samq::Error naming the file, the field and its byte offset.
// Metadata values are copied out (owned); tensor data stays in the map (GgufTensorInfo::data).
//
// Writer: GgufWriter collects metadata and all tensor infos first, then streams the header
// and each tensor's bytes in order through an AtomicFile (temp file + rename on finish()), so
// a model is never held in memory and a failure leaves no partial file.
//
// Non-goals: big-endian files, editing in place, knowing what any key means (see hparams.h).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/ggml_type.h"
#include "core/mapped_file.h"

namespace samq {

class AtomicFile;

// GGUF metadata value types (gguf.h `gguf_type`), stored as int32 in the file.
enum class GgufType : int32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
std::string_view gguf_type_name(GgufType t);  // "u32", "str", "arr", ...
size_t gguf_type_size(GgufType t);            // bytes of a scalar; 0 for STRING and ARRAY

constexpr uint32_t kGgufDefaultAlignment = 32;
constexpr size_t kGgufMaxNameLen = 63;  // tensor names must be shorter than GGML_MAX_NAME = 64
inline uint64_t gguf_pad(uint64_t n, uint64_t align) { return (n + align - 1) / align * align; }

// One metadata value: a scalar, a string, or an array of scalars or strings (no nesting).
// Strict typed getters mirror llama.cpp's loader: get_u32() on an INT32 value throws an error
// naming the key and the expected and actual types. get_int()/get_number() are the lenient
// variants (any integer type that fits / any numeric type).
class GgufValue {
 public:
  GgufValue() = default;

  static GgufValue u8(uint8_t v);
  static GgufValue i8(int8_t v);
  static GgufValue u16(uint16_t v);
  static GgufValue i16(int16_t v);
  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue u64(uint64_t v);
  static GgufValue i64(int64_t v);
  static GgufValue f32(float v);
  static GgufValue f64(double v);
  static GgufValue boolean(bool v);
  static GgufValue str(std::string v);
  static GgufValue arr_str(std::vector<std::string> v);
  static GgufValue arr_u8(std::span<const uint8_t> v);
  static GgufValue arr_i8(std::span<const int8_t> v);
  static GgufValue arr_u16(std::span<const uint16_t> v);
  static GgufValue arr_i16(std::span<const int16_t> v);
  static GgufValue arr_u32(std::span<const uint32_t> v);
  static GgufValue arr_i32(std::span<const int32_t> v);
  static GgufValue arr_u64(std::span<const uint64_t> v);
  static GgufValue arr_i64(std::span<const int64_t> v);
  static GgufValue arr_f32(std::span<const float> v);
  static GgufValue arr_f64(std::span<const double> v);
  static GgufValue arr_bool(std::span<const uint8_t> v);  // one byte per element, 0/1
  // Array of any scalar element type from its packed little-endian bytes.
  static GgufValue arr_raw(GgufType elem, std::vector<uint8_t> bytes);

  const std::string& key() const { return key_; }  // set when read from a file or set on a writer
  void set_key(std::string k) { key_ = std::move(k); }

  GgufType type() const { return type_; }
  bool is_array() const { return type_ == GgufType::ARRAY; }
  GgufType elem_type() const;  // arrays only
  size_t size() const;         // number of array elements; 1 for scalars

  // Strict scalar getters: the stored type must be exactly the one named.
  uint8_t get_u8() const;
  int8_t get_i8() const;
  uint16_t get_u16() const;
  int16_t get_i16() const;
  uint32_t get_u32() const;
  int32_t get_i32() const;
  uint64_t get_u64() const;
  int64_t get_i64() const;
  float get_f32() const;
  double get_f64() const;
  bool get_bool() const;
  const std::string& get_str() const;

  // Lenient getters: any integer type whose value fits int64 / any integer or float type.
  int64_t get_int() const;
  double get_number() const;

  // Strict array getters (element type must match).
  const std::vector<std::string>& get_arr_str() const;
  std::vector<int32_t> get_arr_i32() const;
  std::vector<uint32_t> get_arr_u32() const;
  std::vector<float> get_arr_f32() const;
  // Lenient: any integer element type -> int64 (throws if a u64 element exceeds int64).
  std::vector<int64_t> get_arr_int() const;
  // Packed little-endian element bytes of a numeric/bool array.
  std::span<const uint8_t> array_bytes() const;

  // Human-readable value; arrays longer than max_elems are summarized as
  // "[n x type: first, ..., last]".
  std::string to_string(size_t max_elems = 8) const;

  // Bytes this value takes in a GGUF file (type id, and for arrays element type and count),
  // excluding the key.
  uint64_t encoded_size() const;
  void encode(std::string& out) const;  // appends type id + payload

  bool operator==(const GgufValue& o) const;

 private:
  [[noreturn]] void wrong_type(std::string_view expected) const;
  std::string key_;
  GgufType type_ = GgufType::UINT8;
  GgufType elem_ = GgufType::UINT8;  // arrays
  uint64_t bits_ = 0;                // scalars: raw little-endian bits, zero-extended
  std::string str_;                  // STRING
  std::vector<std::string> strs_;    // ARRAY of STRING
  std::vector<uint8_t> raw_;         // ARRAY of a scalar type: packed element bytes
  uint64_t count_ = 0;               // ARRAY element count
};

// A tensor-info record plus the location of its bytes in the mapped file.
// ne[] is ggml order: ne[0] = innermost (cols, in_features); unused dims are 1.
struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  uint32_t n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;  // unpadded
  const uint8_t* data = nullptr;

  int64_t cols() const { return ne[0]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  std::string shape_string() const;  // "[512, 8192]" in ggml order, n_dims entries
};

class GgufFile {
 public:
  GgufFile() = default;
  GgufFile(GgufFile&&) noexcept = default;
  GgufFile& operator=(GgufFile&&) noexcept = default;

  // Maps and validates `path`; throws samq::Error naming the path, field and offset.
  static GgufFile open(const std::string& path);
  // Parses a buffer the caller keeps alive (fuzzing, tests). `name` is used in errors.
  static GgufFile from_memory(const uint8_t* data, size_t size, std::string name = "<memory>");

  const std::string& path() const { return name_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the tensor data section
  uint64_t file_size() const { return size_; }
  const uint8_t* base() const { return base_; }

  // Metadata in file order; each value's key() is set.
  const std::vector<GgufValue>& kv() const { return kv_; }
  const GgufValue* find(std::string_view key) const;  // nullptr if absent
  const GgufValue& at(std::string_view key) const;    // throws naming the key if absent

  // Strict getters; the first form throws if the key is missing, the second returns def.
  uint32_t get_u32(std::string_view key) const;
  uint32_t get_u32(std::string_view key, uint32_t def) const;
  int32_t get_i32(std::string_view key) const;
  int32_t get_i32(std::string_view key, int32_t def) const;
  uint64_t get_u64(std::string_view key) const;
  uint64_t get_u64(std::string_view key, uint64_t def) const;
  float get_f32(std::string_view key) const;
  float get_f32(std::string_view key, float def) const;
  bool get_bool(std::string_view key) const;
  bool get_bool(std::string_view key, bool def) const;
  std::string get_str(std::string_view key) const;
  std::string get_str(std::string_view key, std::string def) const;
  std::vector<std::string> get_arr_str(std::string_view key) const;
  std::vector<std::string> get_arr_str(std::string_view key, std::vector<std::string> def) const;
  std::vector<int32_t> get_arr_i32(std::string_view key) const;
  std::vector<int32_t> get_arr_i32(std::string_view key, std::vector<int32_t> def) const;
  std::vector<float> get_arr_f32(std::string_view key) const;
  std::vector<float> get_arr_f32(std::string_view key, std::vector<float> def) const;

  std::string architecture() const { return get_str("general.architecture", ""); }

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;  // nullptr if absent
  const GgufTensorInfo& tensor(std::string_view name) const;       // throws naming it

 private:
  friend class GgufParser;
  MappedFile map_;
  std::string name_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<GgufValue> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// Streaming writer. Usage:
//   GgufWriter w("out.gguf");
//   w.set_str("general.architecture", "llama"); ...           // metadata, insertion order kept
//   w.add_tensor_info("token_embd.weight", GgmlType::Q4_K, {512, 8192});  // all tensors first
//   w.write_header();
//   for each tensor i in order: w.write_tensor_data(i, bytes, nbytes);
//   w.finish();                                                // rename temp -> out.gguf
// Alignment is general.alignment if set (must be a UINT32 power of two), else 32; every tensor,
// the last one included, is padded to it, as llama.cpp writes and expects.
class GgufWriter {
 public:
  explicit GgufWriter(std::string path);
  ~GgufWriter();  // without finish(): the temp file is removed, nothing is left at path
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Metadata. Setting an existing key replaces its value in place (order kept).
  void set(std::string key, GgufValue v);
  void set_u8(std::string key, uint8_t v) { set(std::move(key), GgufValue::u8(v)); }
  void set_i8(std::string key, int8_t v) { set(std::move(key), GgufValue::i8(v)); }
  void set_u16(std::string key, uint16_t v) { set(std::move(key), GgufValue::u16(v)); }
  void set_i16(std::string key, int16_t v) { set(std::move(key), GgufValue::i16(v)); }
  void set_u32(std::string key, uint32_t v) { set(std::move(key), GgufValue::u32(v)); }
  void set_i32(std::string key, int32_t v) { set(std::move(key), GgufValue::i32(v)); }
  void set_u64(std::string key, uint64_t v) { set(std::move(key), GgufValue::u64(v)); }
  void set_i64(std::string key, int64_t v) { set(std::move(key), GgufValue::i64(v)); }
  void set_f32(std::string key, float v) { set(std::move(key), GgufValue::f32(v)); }
  void set_f64(std::string key, double v) { set(std::move(key), GgufValue::f64(v)); }
  void set_bool(std::string key, bool v) { set(std::move(key), GgufValue::boolean(v)); }
  void set_str(std::string key, std::string v) { set(std::move(key), GgufValue::str(std::move(v))); }
  void set_arr_str(std::string key, std::vector<std::string> v) {
    set(std::move(key), GgufValue::arr_str(std::move(v)));
  }
  void set_arr_i32(std::string key, std::span<const int32_t> v) { set(std::move(key), GgufValue::arr_i32(v)); }
  void set_arr_u32(std::string key, std::span<const uint32_t> v) { set(std::move(key), GgufValue::arr_u32(v)); }
  void set_arr_f32(std::string key, std::span<const float> v) { set(std::move(key), GgufValue::arr_f32(v)); }
  // Copies every key/value of a reader (in its order); keys already set are overwritten.
  void copy_kv(const GgufFile& src);
  bool remove(std::string_view key);  // true if it was present
  const GgufValue* find(std::string_view key) const;
  const std::vector<GgufValue>& kv() const { return kv_; }

  // Tensor infos, in file order. ne in ggml order (ne[0] innermost), 1 to 4 dims, written
  // with exactly that many dims. Checks name length/uniqueness and ne[0] % block == 0.
  // Returns the tensor's index.
  size_t add_tensor_info(std::string name, GgmlType type, std::span<const int64_t> ne);
  size_t add_tensor_info(std::string name, GgmlType type, std::initializer_list<int64_t> ne) {
    return add_tensor_info(std::move(name), type, std::span<const int64_t>(ne.begin(), ne.size()));
  }
  size_t n_tensors() const { return tensors_.size(); }
  const GgufTensorInfo& tensor_info(size_t i) const { return tensors_.at(i); }  // data == nullptr

  uint32_t alignment() const;         // from general.alignment, else 32
  uint64_t header_bytes() const;      // bytes before the data section, padding included
  uint64_t tensor_data_bytes() const;  // sum of padded tensor sizes
  uint64_t file_bytes() const { return header_bytes() + tensor_data_bytes(); }

  // Opens the temp file and writes magic..tensor infos and the padding. Metadata and tensor
  // infos are frozen afterwards.
  void write_header();
  // Tensor bytes, each tensor once, in any order (each goes to its offset; in tensor-info order
  // the file is written front to back); nbytes must equal the tensor's size.
  void write_tensor_data(size_t index, const void* data, size_t nbytes);
  void write_tensor_data(std::string_view name, const void* data, size_t nbytes);
  // Checks that every tensor was written, flushes, fsyncs and renames onto the path.
  void finish();

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<GgufValue> kv_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
  std::unique_ptr<AtomicFile> out_;
  std::vector<char> written_;  // per tensor
  size_t n_written_ = 0;
  bool header_written_ = false;
  bool finished_ = false;
};

}  // namespace samq
