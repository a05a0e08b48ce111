// Paths shared by the test suites: the read-only reference material and the samq binary.
#pragma once
#include <string>

namespace samq::test {
std::string shared_path(const std::string& rel);  // ../shared/<rel>
std::string source_path(const std::string& rel);  // repository root/<rel>
std::string samq_binary();
std::string temp_dir();  // a fresh directory, removed at exit
// Runs a shell command, returns its exit code; stdout+stderr captured into *out if given.
int run_command(const std::string& cmd, std::string* out = nullptr);
}  // namespace samq::test
