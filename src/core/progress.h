// A progress bar on stderr for long work: a redrawn line on a terminal, and a line every
// ~10% (plus the end) when stderr is a file or pipe, as in CI logs. Shows rate and ETA.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace samq {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "");
  ~Progress();
  void add(int64_t n = 1);
  void set(int64_t done);
  void finish();
  static void set_quiet(bool q);

 private:
  void draw(bool final_line);
  std::string label_, unit_;
  int64_t total_, done_ = 0;
  int last_decile_ = -1;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace samq
