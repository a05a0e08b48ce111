#include "common/test_env.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sys/wait.h>
#include <vector>

namespace samq::test {

std::string shared_path(const std::string& rel) { return std::string(SAMQ_SHARED_DIR) + "/" + rel; }
std::string source_path(const std::string& rel) { return std::string(SAMQ_SOURCE_DIR) + "/" + rel; }
std::string samq_binary() { return SAMQ_BINARY; }

namespace {
struct TempDirs {
  std::vector<std::string> dirs;
  ~TempDirs() {
    std::error_code ec;
    for (auto& d : dirs) std::filesystem::remove_all(d, ec);
  }
};
TempDirs g_dirs;
}  // namespace

std::string temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "samq-test-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) std::abort();
  g_dirs.dirs.push_back(tmpl);
  return tmpl;
}

int run_command(const std::string& cmd, std::string* out) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0)
    if (out) out->append(buf.data(), n);
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

}  // namespace samq::test
