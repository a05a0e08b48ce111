// GgufWriter -> GgufFile round trips, byte-exact against (a) an image assembled by hand
// from the spec (gguf_bytes.h) and (b) files written by llama.cpp itself (the anchors in
// ../shared/golden), which must come out of reader -> writer unchanged. Also: the writer
// leaves no file behind when it fails.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/sha256.h"
#include "format/gguf.h"
#include "format/gguf_bytes.h"

using namespace samq;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> b(n);
  for (auto& x : b) x = uint8_t(rng());
  return b;
}

std::vector<uint8_t> file_bytes(const std::string& p) {
  std::string s = read_file(p);
  return std::vector<uint8_t>(s.begin(), s.end());
}

std::vector<std::string> dir_entries(const std::string& d) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(d)) out.push_back(e.path().filename().string());
  return out;
}

// Rewrites a GGUF through reader -> writer, keeping metadata, tensor order, dims and bytes.
void rewrite(const GgufFile& in, const std::string& out_path) {
  GgufWriter w(out_path);
  w.copy_kv(in);
  for (const auto& t : in.tensors())
    w.add_tensor_info(t.name, t.type, std::span<const int64_t>(t.ne, t.n_dims ? t.n_dims : 1));
  EXPECT_EQ(w.header_bytes(), in.data_offset());
  w.write_header();
  for (size_t i = 0; i < in.tensors().size(); ++i) w.write_tensor_data(i, in.tensors()[i].data, in.tensors()[i].nbytes);
  w.finish();
}

}  // namespace

TEST(GgufRoundTrip, EveryValueTypeAndTensorType) {
  const std::string dir = samq::test::temp_dir();
  const std::string path = dir + "/all.gguf";
  const std::vector<uint8_t> u8s{1, 2, 255};
  const std::vector<int8_t> i8s{-1, 0, 127};
  const std::vector<uint16_t> u16s{7, 65535};
  const std::vector<int16_t> i16s{-32768, 5};
  const std::vector<uint32_t> u32s{0, 4000000000u};
  const std::vector<int32_t> i32s{-5, 1, 3};
  const std::vector<uint64_t> u64s{~uint64_t(0)};
  const std::vector<int64_t> i64s{INT64_MIN, 9};
  const std::vector<float> f32s{1.5f, -0.0f, 3e38f};
  const std::vector<double> f64s{1e-300, 2.0};
  const std::vector<uint8_t> bools{1, 0, 1};
  const std::vector<std::string> strs{"", "héllo", std::string("a\0b", 3)};

  struct T {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
  };
  const std::vector<T> ts = {{"f32.vec", GgmlType::F32, {7}},
                             {"f16.mat", GgmlType::F16, {3, 5}},
                             {"q4_K.w", GgmlType::Q4_K, {512, 3}},
                             {"q8_0.4d", GgmlType::Q8_0, {64, 2, 3, 2}},
                             {"bf16.m", GgmlType::BF16, {5, 1}}};
  std::vector<std::vector<uint8_t>> data;
  {
    GgufWriter w(path);
    w.set_u8("v.u8", 200);
    w.set_i8("v.i8", -100);
    w.set_u16("v.u16", 60000);
    w.set_i16("v.i16", -30000);
    w.set_u32("v.u32", 4000000000u);
    w.set_i32("v.i32", -2000000000);
    w.set_u64("v.u64", ~uint64_t(0) - 1);
    w.set_i64("v.i64", INT64_MIN + 1);
    w.set_f32("v.f32", 0.1f);
    w.set_f64("v.f64", 0.1);
    w.set_bool("v.bool", true);
    w.set_str("v.str", "text");
    w.set_str("v.empty", "");
    w.set("a.u8", GgufValue::arr_u8(u8s));
    w.set("a.i8", GgufValue::arr_i8(i8s));
    w.set("a.u16", GgufValue::arr_u16(u16s));
    w.set("a.i16", GgufValue::arr_i16(i16s));
    w.set_arr_u32("a.u32", u32s);
    w.set_arr_i32("a.i32", i32s);
    w.set("a.u64", GgufValue::arr_u64(u64s));
    w.set("a.i64", GgufValue::arr_i64(i64s));
    w.set_arr_f32("a.f32", f32s);
    w.set("a.f64", GgufValue::arr_f64(f64s));
    w.set("a.bool", GgufValue::arr_bool(bools));
    w.set_arr_str("a.str", strs);
    w.set_arr_i32("a.empty", {});
    w.set_u32("v.u32", 17);  // replaces in place, order kept
    for (const auto& t : ts) w.add_tensor_info(t.name, t.type, t.ne);
    w.write_header();
    for (size_t i = 0; i < ts.size(); ++i) {
      data.push_back(random_bytes(w.tensor_info(i).nbytes, uint32_t(i)));
      w.write_tensor_data(ts[i].name, data.back().data(), data.back().size());
    }
    w.finish();
    EXPECT_EQ(fs::file_size(path), w.file_bytes());
  }
  GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  ASSERT_EQ(f.kv().size(), 26u);
  EXPECT_EQ(f.kv()[4].key(), "v.u32");
  EXPECT_EQ(f.get_u32("v.u32"), 17u);
  EXPECT_EQ(f.at("v.u8").get_u8(), 200);
  EXPECT_EQ(f.at("v.i8").get_i8(), -100);
  EXPECT_EQ(f.at("v.u16").get_u16(), 60000);
  EXPECT_EQ(f.at("v.i16").get_i16(), -30000);
  EXPECT_EQ(f.get_i32("v.i32"), -2000000000);
  EXPECT_EQ(f.get_u64("v.u64"), ~uint64_t(0) - 1);
  EXPECT_EQ(f.at("v.i64").get_i64(), INT64_MIN + 1);
  EXPECT_EQ(f.get_f32("v.f32"), 0.1f);
  EXPECT_EQ(f.at("v.f64").get_f64(), 0.1);
  EXPECT_TRUE(f.get_bool("v.bool"));
  EXPECT_EQ(f.get_str("v.str"), "text");
  EXPECT_EQ(f.get_str("v.empty"), "");
  EXPECT_EQ(f.at("a.u8").get_arr_int(), (std::vector<int64_t>{1, 2, 255}));
  EXPECT_EQ(f.at("a.i8").get_arr_int(), (std::vector<int64_t>{-1, 0, 127}));
  EXPECT_EQ(f.at("a.i16").get_arr_int(), (std::vector<int64_t>{-32768, 5}));
  EXPECT_EQ(f.at("a.u32").get_arr_u32(), u32s);
  EXPECT_EQ(f.get_arr_i32("a.i32"), i32s);
  EXPECT_EQ(f.at("a.i64").get_arr_int(), i64s);
  EXPECT_THROW(f.at("a.u64").get_arr_int(), Error);  // 2^64-1 does not fit int64
  EXPECT_EQ(f.get_arr_f32("a.f32"), f32s);
  EXPECT_EQ(f.at("a.bool").array_bytes().size(), 3u);
  EXPECT_EQ(f.get_arr_str("a.str"), strs);
  EXPECT_EQ(f.at("a.empty").size(), 0u);
  EXPECT_EQ(f.at("a.empty").elem_type(), GgufType::INT32);

  ASSERT_EQ(f.tensors().size(), ts.size());
  uint64_t expect_off = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const auto& t = f.tensors()[i];
    EXPECT_EQ(t.name, ts[i].name);
    EXPECT_EQ(t.type, ts[i].type);
    EXPECT_EQ(t.n_dims, ts[i].ne.size());
    for (size_t d = 0; d < 4; ++d) EXPECT_EQ(t.ne[d], d < ts[i].ne.size() ? ts[i].ne[d] : 1);
    EXPECT_EQ(t.offset, expect_off);
    EXPECT_EQ((f.data_offset() + t.offset) % 32, 0u);
    ASSERT_EQ(t.nbytes, data[i].size());
    EXPECT_EQ(std::memcmp(t.data, data[i].data(), t.nbytes), 0) << t.name;
    expect_off += gguf_pad(t.nbytes, 32);
  }
  EXPECT_EQ(f.tensor("q4_K.w").nbytes, 3u * 144u * 2u);
  EXPECT_EQ(f.tensor("q4_K.w").rows(), 3);
  EXPECT_EQ(f.tensor("q8_0.4d").rows(), 12);
  EXPECT_EQ(f.tensor("q8_0.4d").cols(), 64);

  // Reader -> writer reproduces the file byte for byte.
  rewrite(f, dir + "/copy.gguf");
  EXPECT_EQ(file_bytes(dir + "/copy.gguf"), file_bytes(path));
}

TEST(GgufRoundTrip, MatchesHandAssembledImage) {
  // The spec's layout (§1.2-1.5), assembled independently of the writer.
  samq::test::GgufBytes g;
  g.header(3, 2, 3);
  g.kv_str("general.architecture", "llama");
  g.str("x.f").i32(6).f32(2.5f);
  g.str("x.arr").i32(9).i32(5).u64(2).i32(-1).i32(2);
  g.tinfo("w", {32, 3}, 8, 0);  // q8_0: 3 rows x 34 bytes = 102 -> padded 128
  g.tinfo("n", {5}, 0, 128);    // f32: 20 bytes -> padded 32
  g.pad(32);
  const size_t data_off = g.size();
  std::vector<uint8_t> w_data = random_bytes(102, 1), n_data = random_bytes(20, 2);
  g.raw(w_data.data(), 102).pad(32).raw(n_data.data(), 20).pad(32);

  const std::string dir = samq::test::temp_dir();
  // Written front to back, and last tensor first (the order GPTQ with streamed Hessians uses
  // when file order and layer order differ): the same bytes.
  for (const bool reversed : {false, true}) {
    GgufWriter w(dir + "/w.gguf");
    w.set_str("general.architecture", "llama");
    w.set_f32("x.f", 2.5f);
    const int32_t arr[] = {-1, 2};
    w.set_arr_i32("x.arr", arr);
    w.add_tensor_info("w", GgmlType::Q8_0, {32, 3});
    w.add_tensor_info("n", GgmlType::F32, {5});
    EXPECT_EQ(w.header_bytes(), data_off);
    EXPECT_EQ(w.file_bytes(), g.size());
    w.write_header();
    if (reversed) w.write_tensor_data(size_t(1), n_data.data(), n_data.size());
    w.write_tensor_data(size_t(0), w_data.data(), w_data.size());
    if (!reversed) w.write_tensor_data(size_t(1), n_data.data(), n_data.size());
    w.finish();
    EXPECT_EQ(file_bytes(dir + "/w.gguf"), g.b) << (reversed ? "last tensor first" : "in order");
  }
}

TEST(GgufRoundTrip, CustomAlignmentAndNoTensors) {
  const std::string dir = samq::test::temp_dir();
  {
    GgufWriter w(dir + "/a64.gguf");
    w.set_u32("general.alignment", 64);
    w.add_tensor_info("a", GgmlType::F32, {3});
    w.add_tensor_info("b", GgmlType::F32, {40});
    w.write_header();
    std::vector<float> a(3, 1.0f), b(40, 2.0f);
    w.write_tensor_data(size_t(0), a.data(), 12);
    w.write_tensor_data(size_t(1), b.data(), 160);
    w.finish();
  }
  GgufFile f = GgufFile::open(dir + "/a64.gguf");
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.tensors()[1].offset, 64u);
  EXPECT_EQ(f.file_size(), f.data_offset() + 64 + 192);
  {
    GgufWriter w(dir + "/empty.gguf");
    w.set_str("general.type", "nothing");
    w.finish();
  }
  GgufFile e = GgufFile::open(dir + "/empty.gguf");
  EXPECT_EQ(e.tensors().size(), 0u);
  EXPECT_EQ(e.get_str("general.type"), "nothing");
}

// Files written by llama.cpp itself survive reader -> writer unchanged (same bytes).
TEST(GgufRoundTrip, LlamaCppFilesRewriteByteExact) {
  const std::string dir = samq::test::temp_dir();
  for (const char* rel : {"golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf", "golden/anchors/refcode-32m-imatrix.gguf",
                          "golden/quant-golden.gguf"}) {
    const std::string src = samq::test::shared_path(rel);
    GgufFile f = GgufFile::open(src);
    const std::string out = dir + "/rewritten.gguf";
    rewrite(f, out);
    EXPECT_EQ(sha256_file_hex(out), sha256_file_hex(src)) << rel;
  }
}

TEST(GgufWriterFailure, LeavesNothingBehind) {
  const std::string dir = samq::test::temp_dir();
  const std::string path = dir + "/out.gguf";
  std::vector<uint8_t> buf(1024);
  {  // destroyed mid-stream without finish()
    GgufWriter w(path);
    w.add_tensor_info("a", GgmlType::F32, {32});
    w.add_tensor_info("b", GgmlType::F32, {32});
    w.write_header();
    w.write_tensor_data(size_t(0), buf.data(), 128);
  }
  EXPECT_TRUE(dir_entries(dir).empty());
  {  // wrong size, unknown name, written twice, missing tensors: all throw, nothing is left
    GgufWriter w(path);
    w.add_tensor_info("a", GgmlType::F32, {32});
    w.add_tensor_info("b", GgmlType::F32, {32});
    w.write_header();
    EXPECT_THROW(w.write_tensor_data(size_t(0), buf.data(), 100), Error);
    EXPECT_THROW(w.write_tensor_data("zz", buf.data(), 128), Error);
    w.write_tensor_data(size_t(0), buf.data(), 128);
    EXPECT_THROW(w.write_tensor_data(size_t(0), buf.data(), 128), Error);
    EXPECT_THROW(w.finish(), Error);
  }
  EXPECT_TRUE(dir_entries(dir).empty());
  // An existing file survives a failed rewrite.
  write_file_atomic(path, "old contents");
  {
    GgufWriter w(path);
    w.add_tensor_info("a", GgmlType::F32, {32});
    w.write_header();
  }
  EXPECT_EQ(read_file(path), "old contents");
  EXPECT_EQ(dir_entries(dir).size(), 1u);
}

TEST(GgufWriterFailure, RejectsInvalidInput) {
  const std::string dir = samq::test::temp_dir();
  GgufWriter w(dir + "/x.gguf");
  EXPECT_THROW(w.add_tensor_info(std::string(64, 'a'), GgmlType::F32, {32}), Error);
  EXPECT_NO_THROW(w.add_tensor_info(std::string(63, 'a'), GgmlType::F32, {32}));
  EXPECT_THROW(w.add_tensor_info(std::string(63, 'a'), GgmlType::F32, {32}), Error);  // duplicate
  EXPECT_THROW(w.add_tensor_info("q", GgmlType::Q4_K, {100, 2}), Error);              // block of 256
  EXPECT_THROW(w.add_tensor_info("d", GgmlType::F32, {1, 1, 1, 1, 1}), Error);
  EXPECT_THROW(w.set_i32("general.alignment", 32), Error);
  EXPECT_THROW(w.set_u32("general.alignment", 24), Error);
  EXPECT_THROW(w.set_u32("", 1), Error);
  w.write_header();
  EXPECT_THROW(w.set_u32("late", 1), Error);
  EXPECT_THROW(w.add_tensor_info("late", GgmlType::F32, {32}), Error);
}

TEST(GgufValue, ToStringSummarizesLongArrays) {
  std::vector<int32_t> v(100);
  for (int i = 0; i < 100; ++i) v[i] = i;
  const std::string s = GgufValue::arr_i32(v).to_string(4);
  EXPECT_EQ(s, "[100 x i32: 0, 1, 2, ..., 99]");
  EXPECT_EQ(GgufValue::str("a\"b\n").to_string(), "\"a\\\"b\\n\"");
  EXPECT_EQ(GgufValue::arr_str({"x", "y"}).to_string(), "[\"x\", \"y\"]");
}
