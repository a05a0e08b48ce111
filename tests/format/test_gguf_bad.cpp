// Malformed GGUF images, built byte by byte (gguf_bytes.h), must be rejected with a
// samq::Error naming the field (and its offset) — never a crash, hang or over-read.
// The rules are llama.cpp's (ggml-formats.md §1).
#include <gtest/gtest.h>

#include <random>

#include "common/error_text.h"
#include "core/error.h"
#include "format/gguf.h"
#include "format/gguf_bytes.h"

using namespace samq;
using samq::test::GgufBytes;

namespace {

// A small valid file: 3 kvs (str, u32, arr[str]) and two tensors (f32 [32,2], q8_0 [64]).
struct Valid {
  GgufBytes g;
  size_t data_offset = 0;
  size_t second_offset_field = 0;  // byte offset of tensor "b"'s offset field
  Valid() {
    g.header(3, 2, 3);
    g.kv_str("general.architecture", "llama");
    g.kv_u32("test.n", 7);
    g.str("tokenizer.ggml.tokens").i32(9).i32(8).u64(2).str("a").str("bc");
    g.tinfo("a", {32, 2}, 0, 0);
    g.tinfo("b", {64}, 8, 0);
    second_offset_field = g.size() - 8;
    std::memcpy(g.b.data() + second_offset_field, "\x00\x01\x00\x00\x00\x00\x00\x00", 8);  // 256
    g.pad(32);
    data_offset = g.size();
    g.zeros(256 + 68).pad(32);
  }
};

GgufFile parse(const std::vector<uint8_t>& b) { return GgufFile::from_memory(b.data(), b.size(), "t.gguf"); }

std::string error_of(const std::vector<uint8_t>& b) {
  return samq::test::error_text([&] { parse(b); });
}

#define EXPECT_REJECTED(bytes, ...) SAMQ_EXPECT_MESSAGE_HAS(error_of(bytes), __VA_ARGS__)

// Minimal header + one kv built by `kv`, no tensors.
std::vector<uint8_t> one_kv(const std::function<void(GgufBytes&)>& kv) {
  GgufBytes g;
  g.header(3, 0, 1);
  kv(g);
  return g.b;
}

// One tensor info built by `ti` after a header with no kvs, then padding and 4 KiB of data.
std::vector<uint8_t> one_tensor(const std::function<void(GgufBytes&)>& ti, int64_t n_tensors = 1) {
  GgufBytes g;
  g.header(3, n_tensors, 0);
  ti(g);
  g.pad(32).zeros(4096);
  return g.b;
}

}  // namespace

TEST(GgufBad, ValidBaselineParses) {
  Valid v;
  GgufFile f = parse(v.g.b);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.data_offset(), v.data_offset);
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[1].offset, 256u);
  EXPECT_EQ(f.tensors()[1].nbytes, 68u);
  EXPECT_EQ(f.get_arr_str("tokenizer.ggml.tokens"), (std::vector<std::string>{"a", "bc"}));
}

TEST(GgufBad, EveryTruncationRejectedUntilDataEnds) {
  Valid v;
  const size_t data_end = v.data_offset + 256 + 68;  // llama.cpp's loader needs the unpadded end
  for (size_t n = 0; n < v.g.size(); ++n) {
    std::vector<uint8_t> cut(v.g.b.begin(), v.g.b.begin() + n);
    if (n < data_end) {
      const std::string msg = error_of(cut);
      EXPECT_TRUE(msg.find("truncated") != std::string::npos || msg.find("past the end") != std::string::npos ||
                  msg.find("impossible") != std::string::npos || msg.find("cannot fit") != std::string::npos)
          << "prefix " << n << ": " << msg;
      EXPECT_NE(msg.find("t.gguf"), std::string::npos) << msg;
    } else {
      EXPECT_NO_THROW(parse(cut)) << "prefix " << n;
    }
  }
  EXPECT_REJECTED(std::vector<uint8_t>(v.g.b.begin(), v.g.b.begin() + 2), "magic", "offset 0");
  EXPECT_REJECTED(std::vector<uint8_t>(v.g.b.begin(), v.g.b.begin() + 6), "version", "offset 4");
  EXPECT_REJECTED(std::vector<uint8_t>(v.g.b.begin(), v.g.b.begin() + 30), "key of kv 0", "offset 24");
  EXPECT_REJECTED(std::vector<uint8_t>(v.g.b.begin(), v.g.b.begin() + v.data_offset + 100), "tensor 'a'",
                  "past the end");
}

TEST(GgufBad, Magic) {
  Valid v;
  v.g.b[3] = 'X';
  EXPECT_REJECTED(v.g.b, "bad magic", "offset 0");
}

TEST(GgufBad, Versions) {
  for (uint32_t ver : {0u, 1u, 4u, 0x03000000u}) {
    Valid v;
    std::memcpy(v.g.b.data() + 4, &ver, 4);
    EXPECT_REJECTED(v.g.b, "version", "offset 4");
  }
  Valid v;
  const uint32_t be = 0x03000000u;
  std::memcpy(v.g.b.data() + 4, &be, 4);
  EXPECT_REJECTED(v.g.b, "big-endian");
  const uint32_t v2 = 2;  // version 2 has the same layout and is accepted
  std::memcpy(v.g.b.data() + 4, &v2, 4);
  EXPECT_EQ(parse(v.g.b).version(), 2u);
}

TEST(GgufBad, AbsurdCounts) {
  for (int64_t n : {int64_t(-1), int64_t(1) << 40, std::numeric_limits<int64_t>::max()}) {
    Valid a;
    std::memcpy(a.g.b.data() + 8, &n, 8);
    EXPECT_REJECTED(a.g.b, "n_tensors", "offset 8");
    Valid b;
    std::memcpy(b.g.b.data() + 16, &n, 8);
    EXPECT_REJECTED(b.g.b, "n_kv", "offset 16");
  }
}

TEST(GgufBad, Strings) {
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.u64(uint64_t(1) << 40).raw("k", 1); }), "key of kv 0", "1 GiB");
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.u64(1000).raw("k", 1); }), "truncated", "key of kv 0");
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.str("").i32(4).u32(1); }), "empty key", "offset 24");
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.str("k").i32(8).u64(~uint64_t(0)); }), "value of key 'k'");
}

TEST(GgufBad, KeysAndTypes) {
  GgufBytes dup;
  dup.header(3, 0, 2).kv_u32("a.b", 1).kv_u32("a.b", 2);
  EXPECT_REJECTED(dup.b, "duplicate key 'a.b'");
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.str("k").i32(13).u32(0); }), "key 'k'", "value type", "13");
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.str("k").i32(-1).u32(0); }), "value type");
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.str("k").i32(9).i32(9).u64(1); }), "nested");
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.str("k").i32(9).i32(77).u64(1); }), "element type");
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.str("k").i32(9).i32(4).u64(uint64_t(1) << 31); }), "2^30");
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.str("k").i32(9).i32(4).u64(uint64_t(1) << 29); }), "truncated",
                  "key 'k'");
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.str("k").i32(9).i32(8).u64(uint64_t(1) << 29); }), "key 'k'",
                  "cannot fit");
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.str("k").i32(9).i32(8).u64(2).str("x").u64(5); }), "element 1 of key 'k'",
                  "truncated");
}

TEST(GgufBad, Alignment) {
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.str("general.alignment").i32(5).i32(32); }), "general.alignment",
                  "u32");
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.kv_u32("general.alignment", 48); }), "power of two");
  EXPECT_REJECTED(one_kv([](GgufBytes& g) { g.kv_u32("general.alignment", 0); }), "power of two");
  EXPECT_EQ(parse(one_kv([](GgufBytes& g) { g.kv_u32("general.alignment", 64); })).alignment(), 64u);
}

TEST(GgufBad, TensorInfos) {
  EXPECT_REJECTED(one_tensor([](GgufBytes& g) { g.tinfo(std::string(64, 'n'), {32}, 0, 0); }), "name", "64 bytes");
  EXPECT_NO_THROW(parse(one_tensor([](GgufBytes& g) { g.tinfo(std::string(63, 'n'), {32}, 0, 0); })));
  EXPECT_REJECTED(one_tensor([](GgufBytes& g) { g.tinfo("t", {32}, 0, 0).tinfo("t", {32}, 0, 128); }, 2),
                  "duplicate tensor name 't'");
  EXPECT_REJECTED(one_tensor([](GgufBytes& g) { g.tinfo("t", {1, 1, 1, 1, 1}, 0, 0); }), "tensor 't' n_dims",
                  "offset 33", "is 5");
  EXPECT_REJECTED(one_tensor([](GgufBytes& g) { g.tinfo("t", {32, -2}, 0, 0); }), "tensor 't' ne[1]", "negative");
  EXPECT_REJECTED(one_tensor([](GgufBytes& g) { g.tinfo("t", {int64_t(1) << 40, int64_t(1) << 40}, 0, 0); }),
                  "overflows");
  EXPECT_REJECTED(one_tensor([](GgufBytes& g) { g.tinfo("t", {int64_t(1) << 40}, 0, 0); }), "tensor 't'",
                  "cannot fit");
  for (int32_t bad : {4, 5, 31, 36, 40, 1000, -1})
    EXPECT_REJECTED(one_tensor([&](GgufBytes& g) { g.tinfo("t", {32}, bad, 0); }), "tensor 't' type",
                    "unknown ggml type id");
  EXPECT_REJECTED(one_tensor([](GgufBytes& g) { g.tinfo("t", {33, 2}, 8, 0); }), "ne[0] = 33", "q8_0", "block size 32");
  EXPECT_REJECTED(one_tensor([](GgufBytes& g) { g.tinfo("t", {255}, 12, 0); }), "q4_K", "block size 256");
  // n_dims = 0 is a scalar (ne all 1), as in ggml.
  EXPECT_EQ(parse(one_tensor([](GgufBytes& g) { g.tinfo("s", {}, 0, 0); })).tensors()[0].nbytes, 4u);
}

TEST(GgufBad, Offsets) {
  // First tensor must start at 0.
  EXPECT_REJECTED(one_tensor([](GgufBytes& g) { g.tinfo("t", {32}, 0, 32); }), "tensor 't'", "offset 32",
                  "expected 0");
  // Second tensor: misaligned, overlapping, gap.
  for (uint64_t off : {uint64_t(260), uint64_t(0), uint64_t(128), uint64_t(288)}) {
    Valid v;
    std::memcpy(v.g.b.data() + v.second_offset_field, &off, 8);
    const std::string want = fmt::format("offset {}", off);  // outlives the check below
    EXPECT_REJECTED(v.g.b, "tensor 'b'", want.c_str(), "expected 256");
  }
  // Data running past the end of the file.
  EXPECT_REJECTED(one_tensor([](GgufBytes& g) { g.tinfo("a", {512}, 0, 0).tinfo("b", {600}, 0, 2048); }, 2),
                  "tensor 'b'", "past the end");
}

TEST(GgufBad, TypedGettersNameKeyAndTypes) {
  Valid v;
  GgufFile f = parse(v.g.b);
  EXPECT_EQ(f.get_u32("test.n"), 7u);
  try {
    f.get_i32("test.n");
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("test.n"), std::string::npos) << m;
    EXPECT_NE(m.find("i32"), std::string::npos) << m;
    EXPECT_NE(m.find("u32"), std::string::npos) << m;
  }
  try {
    f.get_f32("missing.key");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.key"), std::string::npos);
  }
  EXPECT_EQ(f.get_f32("missing.key", 2.5f), 2.5f);
  EXPECT_THROW(f.get_arr_i32("tokenizer.ggml.tokens"), Error);
  EXPECT_EQ(f.at("test.n").get_int(), 7);
  EXPECT_THROW(f.tensor("nope"), Error);
}

// Random byte mutations of a valid image: each either parses or throws samq::Error.
// (The libFuzzer target in tests/fuzz/ does this far more thoroughly under ASan.)
TEST(GgufBad, RandomMutationsNeverCrash) {
  Valid v;
  std::mt19937 rng(42);
  int rejected = 0;
  for (int it = 0; it < 3000; ++it) {
    std::vector<uint8_t> b = v.g.b;
    const int flips = 1 + int(rng() % 4);
    for (int k = 0; k < flips; ++k) b[rng() % b.size()] = uint8_t(rng());
    try {
      parse(b);
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 100);
}
