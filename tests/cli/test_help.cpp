// Issue 15 item 5: what README.md promises about the command line.
// - "Every command has --help": every subcommand that `samq --help` lists answers `--help` with
//   exit 0, its usage line and its own description; an unknown subcommand fails.
// - The stage table of README.md: each command line it shows names a subcommand that exists, and
//   each option it shows is one that subcommand's --help documents.
#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <sstream>

#include "common/test_env.h"
#include "core/atomic_file.h"

namespace samq {
namespace {

std::string help_of(const std::string& sub, int* rc) {
  std::string out;
  *rc = test::run_command(test::samq_binary() + (sub.empty() ? "" : " " + sub) + " --help", &out);
  return out;
}

// Subcommands listed by `samq --help` (the lines after "Subcommands:").
std::vector<std::string> subcommands() {
  int rc = 0;
  const std::string top = help_of("", &rc);
  EXPECT_EQ(rc, 0) << top;
  std::vector<std::string> subs;
  std::istringstream in(top.substr(top.find("Subcommands:") == std::string::npos ? top.size() : top.find("Subcommands:")));
  std::string line;
  std::getline(in, line);
  const std::regex row(R"(^  ([a-z]+)  +\S.*)");
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, row)) subs.push_back(m[1]);
  }
  return subs;
}

TEST(CliHelp, EverySubcommandAnswersHelp) {
  const std::vector<std::string> subs = subcommands();
  // The commands README.md's stage table names, plus serve's helpers: all must be listed.
  for (const char* want : {"inspect", "convert", "analyze", "hessian", "plan", "quantize", "eval", "serve", "run",
                           "generate", "tokenize", "synth"})
    EXPECT_NE(std::find(subs.begin(), subs.end(), want), subs.end()) << want << " missing from samq --help";
  for (const auto& s : subs) {
    int rc = -1;
    const std::string h = help_of(s, &rc);
    EXPECT_EQ(rc, 0) << s << ":\n" << h;
    EXPECT_NE(h.find("Usage: "), std::string::npos) << s << ":\n" << h;
    EXPECT_NE(h.find(" " + s + " "), std::string::npos) << s << ": usage line does not name it\n" << h;
    EXPECT_NE(h.find("Options:"), std::string::npos) << s << ":\n" << h;
  }
  std::string out;
  EXPECT_NE(test::run_command(test::samq_binary() + " no-such-command", &out), 0) << out;
}

// Each `samq SUB ... --opt` shown in README.md's table: SUB exists and documents --opt.
TEST(CliHelp, ReadmeStageTableCommandsAndOptionsExist) {
  const std::string readme = read_file(test::source_path("README.md"));
  const std::vector<std::string> subs = subcommands();
  const std::regex cmd(R"(`samq ([a-z]+)([^`]*)`)");
  const std::regex opt(R"((--[a-z][a-z0-9-]*))");
  int n_cmds = 0, n_opts = 0;
  for (auto it = std::sregex_iterator(readme.begin(), readme.end(), cmd); it != std::sregex_iterator(); ++it) {
    const std::string sub = (*it)[1], rest = (*it)[2];
    if (sub == "run" && rest.empty()) continue;  // prose: "`samq run`: analyze -> ..."
    ASSERT_NE(std::find(subs.begin(), subs.end(), sub), subs.end()) << "README names `samq " << sub << "`";
    int rc = 0;
    const std::string h = help_of(sub, &rc);
    ++n_cmds;
    for (auto o = std::sregex_iterator(rest.begin(), rest.end(), opt); o != std::sregex_iterator(); ++o) {
      const std::string name = (*o)[1];
      if (name == "--help") continue;
      ++n_opts;
      EXPECT_TRUE(std::regex_search(h, std::regex("(^|[ ,])" + name + "([ =,]|$)", std::regex::multiline)))
          << "README shows `samq " << sub << " ... " << name << "`, which `samq " << sub << " --help` does not document";
    }
  }
  EXPECT_GE(n_cmds, 10);
  EXPECT_GE(n_opts, 10);
}

}  // namespace
}  // namespace samq
