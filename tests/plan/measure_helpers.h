// Helpers of the model-level quality tests (tests/plan/slow_max_kld.cpp,
// tests/export/slow_quality_q4km.cpp): run a samq command line or fail with its output's tail,
// read an eval.json's mean KLD, and write the evaluation text (the first 400000 bytes
// of ../shared/data/eval.txt) into a test directory.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/atomic_file.h"

namespace samq::test {

inline std::string sh(const std::string& s) { return "'" + s + "'"; }

inline void run_ok(const std::string& cmd) {
  std::string out;
  const int rc = run_command(cmd, &out);
  ASSERT_EQ(rc, 0) << cmd << "\n" << out.substr(out.size() > 4000 ? out.size() - 4000 : 0);
}

inline double kld_of(const std::string& eval_json) {
  return nlohmann::json::parse(read_file(eval_json))["kld"]["mean"].get<double>();
}

inline std::string write_eval_text(const std::string& dir) {
  const std::string p = dir + "/eval.txt";
  write_file_atomic(p, read_file(shared_path("data/eval.txt")).substr(0, 400000));
  return p;
}

}  // namespace samq::test
