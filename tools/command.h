// Subcommand registry: each tools/cmd_*.cpp declares its options once with CLI11 (which
// generates --help) and registers itself with SAMQ_COMMAND, so adding a stage touches no
// other file.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace samq::cli {

// Declares the subcommand's options on `sub` and returns the function that runs it
// (called after parsing; returns the process exit code).
using CommandSetup = std::function<std::function<int()>(CLI::App& sub)>;

struct CommandDef {
  std::string name;
  std::string help;
  CommandSetup setup;
  int order;  // position in `samq --help` (pipeline order)
};

std::vector<CommandDef>& command_registry();

struct CommandRegistrar {
  CommandRegistrar(std::string name, std::string help, int order, CommandSetup setup) {
    command_registry().push_back({std::move(name), std::move(help), std::move(setup), order});
  }
};

}  // namespace samq::cli

#define SAMQ_COMMAND(ident, order, help, setup_fn) \
  static ::samq::cli::CommandRegistrar samq_cmd_##ident##_registrar(#ident, help, order, setup_fn)
