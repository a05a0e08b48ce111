// samq tokenize: text -> token ids with a model's vocab (GGUF file or HF directory), as llama.cpp
// tokenizes (llama-tokenize --ids). Prints a JSON array of ids, or one "id<TAB>piece" per line.
// --jsonl FILE tokenizes many texts in one process: each line of FILE is a JSON string, and each
// prints one line holding its JSON array of ids, in the same order.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "command.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "export/source_model.h"
#include "format/gguf.h"
#include "model/tokenizer.h"

namespace samq::cli {
namespace {

struct TokenizeArgs {
  std::string model, text, file, jsonl;
  bool bos = false, special = false, pieces = false, stats = false;
};

std::string ids_json(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  return out + "]";
}

// --jsonl: one JSON string per line in, one JSON array of ids per line out (empty lines skipped).
int tokenize_lines(const Tokenizer& tok, const std::string& path, bool bos, bool special, bool stats) {
  std::istringstream in(read_file(path));
  const auto t0 = std::chrono::steady_clock::now();
  size_t n_text = 0, n_tok = 0, line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty() || line == "\r") continue;
    std::string text;
    try {
      const auto v = nlohmann::json::parse(line);
      if (!v.is_string()) fail("{} line {}: expected a JSON string", path, line_no);
      text = v.get<std::string>();
    } catch (const nlohmann::json::exception& e) {
      fail("{} line {}: {}", path, line_no, e.what());
    }
    const auto ids = tok.encode(text, bos, special);
    const std::string out = ids_json(ids) + "\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
    ++n_text;
    n_tok += ids.size();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (stats) std::fprintf(stderr, "tokenize: %zu texts -> %zu tokens in %.3f s\n", n_text, n_tok, s);
  return 0;
}

std::function<int()> setup(CLI::App& sub) {
  auto a = std::make_shared<TokenizeArgs>();
  sub.add_option("model", a->model, "GGUF file or HF model directory whose vocab to use")->required()->check(CLI::ExistingPath);
  auto* t = sub.add_option("-p,--text", a->text, "Text to tokenize (one of --text, --file, --jsonl is required)");
  auto* f = sub.add_option("-f,--file", a->file, "File to tokenize (bytes as stored)")->check(CLI::ExistingFile);
  auto* j = sub.add_option("--jsonl", a->jsonl,
                           "Tokenize many texts: each line of this file is a JSON string; prints one JSON array of "
                           "ids per line, in order")
                ->check(CLI::ExistingFile);
  t->excludes(f);
  j->excludes(t, f);
  sub.add_flag("--bos", a->bos, "Prepend the BOS token");
  sub.add_flag("--special", a->special, "Parse special-token strings such as <|end_of_text|>");
  sub.add_flag("--pieces", a->pieces, "Print one id and its decoded piece per line instead of a JSON array");
  sub.add_flag("--stats", a->stats, "Print token count and speed to stderr");
  return [a, t, f, j]() {
    if (t->count() == 0 && f->count() == 0 && j->count() == 0) fail("give the text with --text, --file or --jsonl");
    if (!a->jsonl.empty() && a->pieces) fail("--pieces prints one text's tokens; it does not go with --jsonl");
    // A GGUF needs only its vocab keys (vocab-only files work); an HF directory its tokenizer.json.
    std::unique_ptr<SourceModel> src;
    std::unique_ptr<Tokenizer> own;
    if (std::filesystem::is_directory(a->model)) {
      src = open_source_model(a->model);
    } else {
      own = std::make_unique<Tokenizer>(Tokenizer::from_gguf(GgufFile::open(a->model)));
    }
    const Tokenizer& tok = src ? src->tokenizer() : *own;
    if (!a->jsonl.empty()) return tokenize_lines(tok, a->jsonl, a->bos, a->special, a->stats);
    const std::string text = a->file.empty() ? a->text : read_file(a->file);
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok.encode(text, a->bos, a->special);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (a->pieces) {
      for (int32_t id : ids) std::printf("%d\t%s\n", id, tok.token_to_piece(id, true).c_str());
    } else {
      const std::string out = ids_json(ids) + "\n";
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
