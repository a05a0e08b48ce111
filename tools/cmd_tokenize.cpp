// samq tokenize: text -> token ids with a model's vocab (GGUF file or HF directory), as llama.cpp
// tokenizes (llama-tokenize --ids). Prints a JSON array of ids, or one "id<TAB>piece" per line.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "command.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "export/source_model.h"
#include "format/gguf.h"
#include "model/tokenizer.h"

namespace samq::cli {
namespace {

struct TokenizeArgs {
  std::string model, text, file;
  bool bos = false, special = false, pieces = false, stats = false;
};

std::function<int()> setup(CLI::App& sub) {
  auto a = std::make_shared<TokenizeArgs>();
  sub.add_option("model", a->model, "GGUF file or HF model directory whose vocab to use")->required()->check(CLI::ExistingPath);
  auto* t = sub.add_option("-p,--text", a->text, "Text to tokenize (one of --text, --file is required)");
  auto* f = sub.add_option("-f,--file", a->file, "File to tokenize (bytes as stored)")->check(CLI::ExistingFile);
  t->excludes(f);
  sub.add_flag("--bos", a->bos, "Prepend the BOS token");
  sub.add_flag("--special", a->special, "Parse special-token strings such as <|end_of_text|>");
  sub.add_flag("--pieces", a->pieces, "Print one id and its decoded piece per line instead of a JSON array");
  sub.add_flag("--stats", a->stats, "Print token count and speed to stderr");
  return [a, t, f]() {
    if (t->count() == 0 && f->count() == 0) fail("give the text with --text or --file");
    const std::string text = a->file.empty() ? a->text : read_file(a->file);
    // A GGUF needs only its vocab keys (vocab-only files work); an HF directory its tokenizer.json.
    std::unique_ptr<SourceModel> src;
    std::unique_ptr<Tokenizer> own;
    if (std::filesystem::is_directory(a->model)) {
      src = open_source_model(a->model);
    } else {
      own = std::make_unique<Tokenizer>(Tokenizer::from_gguf(GgufFile::open(a->model)));
    }
    const Tokenizer& tok = src ? src->tokenizer() : *own;
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok.encode(text, a->bos, a->special);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (a->pieces) {
      for (int32_t id : ids) std::printf("%d\t%s\n", id, tok.token_to_piece(id, true).c_str());
    } else {
      std::string out = "[";
      for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
      out += "]\n";
      std::fwrite(out.data(), 1, out.size(), stdout);
    }
    if (a->stats)
      std::fprintf(stderr, "tokenize: %zu bytes -> %zu tokens in %.3f s (%.0f tokens/s)\n", text.size(), ids.size(), s,
                   double(ids.size()) / std::max(s, 1e-9));
    return 0;
  };
}

}  // namespace

SAMQ_COMMAND(tokenize, 15, "Tokenize text with a model's vocab, as llama.cpp does (ids as JSON)", setup);

}  // namespace samq::cli
