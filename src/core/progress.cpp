#include "core/progress.h"

#include <cstdio>
#include <unistd.h>

namespace samq {
namespace {
bool g_quiet = false;
}

void Progress::set_quiet(bool q) { g_quiet = q; }

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total),
      tty_(::isatty(2)), start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() {
  if (!finished_ && done_ > 0) finish();
}

void Progress::add(int64_t n) { set(done_ + n); }

void Progress::set(int64_t done) {
  done_ = done;
  if (g_quiet) return;
  auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (now - last_draw_ > std::chrono::milliseconds(100) || done_ >= total_) {
      last_draw_ = now;
      draw(false);
    }
  } else if (total_ > 0) {
    int decile = int(10 * done_ / total_);
    if (decile != last_decile_ && decile < 10) {
      last_decile_ = decile;
      draw(true);
    }
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (g_quiet) return;
  if (tty_) {
    draw(false);
    std::fputc('\n', stderr);
  } else {
    draw(true);
  }
}

void Progress::draw(bool own_line) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? done_ / secs : 0.0;
  const double frac = total_ > 0 ? double(done_) / double(total_) : 0.0;
  const double eta = rate > 0 && total_ > done_ ? (total_ - done_) / rate : 0.0;
  char bar[31];
  int filled = int(frac * 30 + 0.5);
  for (int i = 0; i < 30; ++i) bar[i] = i < filled ? '#' : '.';
  bar[30] = 0;
  std::fprintf(stderr, "%s%s [%s] %3.0f%% %lld/%lld %s %.1f %s/s ETA %.0fs%s", own_line ? "" : "\r",
               label_.c_str(), bar, 100 * frac, (long long)done_, (long long)total_, unit_.c_str(),
               rate, unit_.empty() ? "it" : unit_.c_str(), eta, own_line ? "\n" : "\x1b[K");
  std::fflush(stderr);
}

}  // namespace samq
