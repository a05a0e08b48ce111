// The plan writer on a tiny real checkpoint (../shared/golden/archs/llama3-ropescaled, HF dir,
// 2 layers): the file's size equals the plan's prediction (header included), it reads back
// with the plan's types, the source's metadata and the plan block, every tensor dequantizes
// close to the source values (F32 tensors exactly), the output is the same for 1 and 2
// threads, and bad plans are rejected naming the tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/test_env.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/sha256.h"
#include "export/quantize_model.h"
#include "export/skeleton.h"
#include "format/gguf.h"
#include "quant/quantize.h"

using namespace samq;

namespace {
const std::vector<GgmlType> kCands = {GgmlType::F16,  GgmlType::Q8_0,   GgmlType::Q6_K, GgmlType::Q5_K,
                                      GgmlType::Q4_K, GgmlType::IQ4_XS, GgmlType::Q3_K, GgmlType::Q2_K};

std::string tiny() { return test::shared_path("golden/archs/llama3-ropescaled"); }

// Fake but plausible Δloss so the optimal policy mixes many types.
plan::Sensitivity fake_sensitivity(const SourceModel& src) {
  plan::Sensitivity s = sensitivity_skeleton(src, kCands);
  int k = 0;
  for (auto& t : s.tensors) {
    ++k;
    for (auto& c : t.candidates)
      if (t.quantizable) c.dloss = (1 + k % 5) * double(t.params) * std::pow(2.0, -2 * ggml_bits_per_weight(c.type));
  }
  return s;
}

// ggml's own relative RMS error per type on the golden rows (../shared/golden).
double golden_rel_err(GgmlType t) {
  std::ifstream in(test::shared_path("golden/quant-golden-errors.txt"));
  std::string name, im, rel, w;
  while (in >> name >> im >> rel >> w)
    if (name == ggml_type_name(t) && im == "imatrix=0") return std::stod(rel.substr(8));
  ADD_FAILURE() << "no golden error for " << ggml_type_name(t);
  return 0;
}

double rel_rms(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += double(a[i] - b[i]) * (a[i] - b[i]), den += double(a[i]) * a[i];
  return std::sqrt(num / std::max(den, 1e-30));
}
}  // namespace

TEST(QuantizeModel, SizeTypesMetadataAndValues) {
  auto src = open_source_model(tiny());
  const plan::Sensitivity s = fake_sensitivity(*src);
  plan::PlanOptions o;
  o.budget_kind = "target-bpw";
  o.budget_value = 4.0;
  const plan::Plan p = plan::make_plan(s, o);
  std::set<GgmlType> used;
  for (auto& t : p.tensors) used.insert(t.type);
  EXPECT_GE(used.size(), 4u);  // a real mix

  const std::string out = test::temp_dir() + "/out.gguf";
  QuantizeOptions qo;
  qo.progress = false;
  const QuantizeResult r = quantize_model(*src, p, out, qo);
  EXPECT_EQ(r.file_bytes, p.file_bytes);
  const GgufFile f = GgufFile::open(out);
  EXPECT_EQ(int64_t(f.file_size()), p.file_bytes);
  ASSERT_EQ(f.tensors().size(), p.tensors.size());
  EXPECT_EQ(f.get_str("general.architecture"), "llama");
  EXPECT_EQ(f.get_u32("general.quantization_version"), 2u);
  EXPECT_EQ(f.get_u32("general.file_type"), uint32_t(p.ftype));
  EXPECT_EQ(f.get_str("samq.version"), p.samq_version);
  EXPECT_NE(f.get_str("samq.plan").find("\"policy\":\"optimal\""), std::string::npos);
  // Every source key is kept (except the ones the plan block supersedes) with its value.
  for (const auto& kv : src->metadata()) {
    if (plan::is_replaced_key(kv.key()) || kv.key() == "general.file_type") continue;
    const GgufValue* v = f.find(kv.key());
    ASSERT_NE(v, nullptr) << kv.key();
    EXPECT_TRUE(*v == kv) << kv.key();
  }
  for (size_t i = 0; i < p.tensors.size(); ++i) {
    const auto& t = f.tensors()[i];
    ASSERT_EQ(t.name, p.tensors[i].name);
    ASSERT_EQ(t.type, p.tensors[i].type) << t.name;
    std::vector<float> ref(size_t(t.n_elements())), got(ref.size());
    src->read_f32(i, ref.data());
    dequantize_tensor(t.type, t.data, got.data(), t.rows(), t.cols());
    const double e = rel_rms(ref, got);
    if (t.type == GgmlType::F32) EXPECT_EQ(e, 0.0) << t.name;
    else EXPECT_LT(e, 1.5 * golden_rel_err(t.type)) << t.name << " " << ggml_type_name(t.type);
  }
}

TEST(QuantizeModel, PresetDeterministicAcrossThreads) {
  auto src = open_source_model(tiny());
  plan::PlanOptions o;
  o.policy = "preset:Q4_K_M";
  const plan::Plan p = plan::make_plan(sensitivity_skeleton(*src), o);
  const std::string dir = test::temp_dir();
  QuantizeOptions qo;
  qo.progress = false;
  const int before = num_threads();
  set_num_threads(1);
  quantize_model(*src, p, dir + "/a.gguf", qo);
  set_num_threads(2);
  quantize_model(*src, p, dir + "/b.gguf", qo);
  set_num_threads(before);
  EXPECT_EQ(sha256_file_hex(dir + "/a.gguf"), sha256_file_hex(dir + "/b.gguf"));
  EXPECT_EQ(int64_t(GgufFile::open(dir + "/a.gguf").file_size()), p.file_bytes);
}

TEST(QuantizeModel, RejectsMismatchedPlan) {
  auto src = open_source_model(tiny());
  plan::PlanOptions o;
  o.policy = "preset:Q4_K_M";
  plan::Plan p = plan::make_plan(sensitivity_skeleton(*src), o);
  const std::string out = test::temp_dir() + "/x.gguf";
  plan::Plan q = p;
  q.tensors.pop_back();
  EXPECT_THROW(quantize_model(*src, q, out), Error);
  q = p;
  std::swap(q.tensors[3], q.tensors[4]);
  try {
    quantize_model(*src, q, out);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p.tensors[3].name), std::string::npos) << e.what();
  }
  q = p;
  q.tensors[5].bytes += 1;
  EXPECT_THROW(quantize_model(*src, q, out), Error);
  EXPECT_FALSE(std::filesystem::exists(out));
}
