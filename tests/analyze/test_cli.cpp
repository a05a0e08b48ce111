// `samq analyze` user-facing behaviour: --help, and clear errors naming the file for bad
// calibration input (empty, not UTF-8, shorter than one context).
#include <gtest/gtest.h>

#include <fstream>

#include "common/test_env.h"

namespace samq {
namespace {

TEST(AnalyzeCli, HelpAndCalibrationErrors) {
  std::string out;
  EXPECT_EQ(test::run_command(test::samq_binary() + " analyze --help", &out), 0);
  EXPECT_NE(out.find("--calib"), std::string::npos);
  EXPECT_NE(out.find("--fisher"), std::string::npos);
  const std::string dir = test::temp_dir();
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name, std::ios::binary) << text;
    return dir + "/" + name;
  };
  const std::string model = test::shared_path("models/refcode-32m");
  struct Case { std::string file, expect; };
  for (const Case& c : {Case{write("empty.txt", ""), "is empty"},
                        Case{write("bad.txt", "x = 1\n\xff\xfe\n"), "not valid UTF-8 (first bad byte at offset 6)"},
                        Case{write("short.txt", "def f():\n    return 1\n"), "shorter than one context"}}) {
    out.clear();
    EXPECT_NE(test::run_command(test::samq_binary() + " analyze " + model + " --calib " + c.file + " -o " + dir + "/s.json", &out), 0);
    EXPECT_NE(out.find(c.expect), std::string::npos) << out;
    EXPECT_NE(out.find(c.file), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace samq
