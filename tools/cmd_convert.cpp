// samq convert: HF checkpoint -> GGUF (f32, f16, bf16 or q8_0), as llama.cpp's converter writes it.
#include <chrono>
#include <cstdio>

#include "command.h"
#include "core/error.h"
#include "export/convert.h"
#include "export/source_model.h"

namespace samq::cli {
namespace {

struct ConvertArgs {
  std::string input, output, type = "bf16", name;
};

std::function<int()> setup(CLI::App& sub) {
  auto a = std::make_shared<ConvertArgs>();
  sub.add_option("model", a->input, "HF model directory (config.json, *.safetensors, tokenizer.json) or a GGUF file")
      ->required()
      ->check(CLI::ExistingPath);
  sub.add_option("-o,--output", a->output, "GGUF file to write")->required();
  sub.add_option("--type", a->type, "Output type of the weight matrices: f32, f16, bf16 or q8_0 (norms and 1-D tensors stay f32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}, CLI::ignore_case));
  sub.add_option("--name", a->name, "general.name to write (default: none)");
  return [a]() {
    const auto t0 = std::chrono::steady_clock::now();
    const auto type = ggml_type_from_name(a->type);
    if (!type) fail("--type: unknown type \"{}\"", a->type);
    const auto src = open_source_model(a->input);
    ConvertOptions opt;
    opt.type = *type;
    opt.name = a->name;
    const ConvertResult r = convert_to_gguf(*src, a->output, opt);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "convert: wrote %s: %lld tensors, %llu bytes (header %llu), %s, %.2f s\n", a->output.c_str(),
                 (long long)r.n_tensors, (unsigned long long)r.file_bytes, (unsigned long long)r.data_offset,
                 a->type.c_str(), s);
    return 0;
  };
}

}  // namespace

SAMQ_COMMAND(convert, 20, "Convert an HF checkpoint to GGUF (f32/f16/bf16/q8_0), as llama.cpp's converter does", setup);

}  // namespace samq::cli
