// Issue 15 item 5: scripts/setup.sh checks for Node.js >= 20 (node-llama-cpp 3 needs it) before
// it installs anything, and says clearly what is missing. A fake `node` first on PATH plays an
// old or a missing Node.js; setup.sh must then stop with exit 1 and name the requirement.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/test_env.h"

namespace samq {
namespace {

std::string fake_bin(const std::string& node_script) {
  const std::string dir = test::temp_dir();
  for (const auto& [name, body] : {std::pair<std::string, std::string>{"node", node_script},
                                   std::pair<std::string, std::string>{"npm", "echo 10.8.2"}}) {
    std::ofstream(dir + "/" + name) << "#!/bin/sh\n" << body << "\n";
    std::filesystem::permissions(dir + "/" + name, std::filesystem::perms::owner_all);
  }
  return dir;
}

int run_setup(const std::string& bin, std::string* out) {
  return test::run_command("PATH=" + bin + ":$PATH bash " + test::source_path("scripts/setup.sh"), out);
}

TEST(Setup, OldNodeIsRefusedWithAClearMessage) {
  // `node -p ...` prints the major version, `node --version` the full one.
  const std::string bin = fake_bin("case \"$1\" in -p) echo 18;; *) echo v18.19.0;; esac");
  std::string out;
  EXPECT_EQ(run_setup(bin, &out), 1) << out;
  EXPECT_NE(out.find("Node.js >= 20"), std::string::npos) << out;
  EXPECT_NE(out.find("v18.19.0"), std::string::npos) << out;
  EXPECT_EQ(out.find("setup: installing"), std::string::npos) << "checked after installing packages:\n" << out;
}

TEST(Setup, MissingNodeIsRefusedWithAClearMessage) {
  const std::string bin = fake_bin("exit 127");
  std::string out;
  EXPECT_EQ(run_setup(bin, &out), 1) << out;
  EXPECT_NE(out.find("Node.js >= 20"), std::string::npos) << out;
}

}  // namespace
}  // namespace samq
