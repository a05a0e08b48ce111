// samq: one binary, one subcommand per pipeline stage (tools/cmd_*.cpp).
#include <algorithm>
#include <cstdio>
#include <memory>

#include "command.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"

namespace samq::cli {
std::vector<CommandDef>& command_registry() {
  static std::vector<CommandDef> r;
  return r;
}
}  // namespace samq::cli

int main(int argc, char** argv) {
  using namespace samq::cli;
  CLI::App app{"samq — Sensitivity-Aware Mixed Quantization for GGUF models"};
  app.set_version_flag("--version", std::string("samq ") + SAMQ_VERSION);
  app.require_subcommand(1);
  int threads = 0;
  bool quiet = false;
  app.add_option("-t,--threads", threads, "Worker threads (default: $SAMQ_THREADS, else all cores)")->capture_default_str();
  app.add_flag("-q,--quiet", quiet, "No progress bars");
  app.fallthrough();

  auto cmds = command_registry();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return a.order < b.order; });
  std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    runners.emplace_back(sub, c.setup(*sub));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  samq::set_num_threads(threads);
  samq::Progress::set_quiet(quiet);
  for (auto& [sub, run] : runners) {
    if (!sub->parsed()) continue;
    try {
      return run();
    } catch (const samq::Error& e) {
      std::fprintf(stderr, "samq %s: error: %s\n", sub->get_name().c_str(), e.what());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "samq %s: internal error: %s\n", sub->get_name().c_str(), e.what());
      return 2;
    }
  }
  return 1;
}
