// Residual checkpoints in host memory or scratch files (analyze/residual_store.h).
#include "analyze/residual_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace samq {

ResidualStore::ResidualStore(int64_t n_slots, std::vector<int64_t> chunk_rows, int64_t width, std::string scratch_dir)
    : rows_(std::move(chunk_rows)), width_(width), dir_(std::move(scratch_dir)) {
  for (int64_t r : rows_) {
    first_.push_back(total_rows_);
    total_rows_ += r;
  }
  host_.resize(size_t(n_slots));
  fd_.assign(size_t(n_slots), -1);
  file_.resize(size_t(n_slots));
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (!std::filesystem::is_directory(dir_)) fail("--scratch {}: not a directory ({})", dir_, ec.message());
  }
}

ResidualStore::~ResidualStore() {
  for (size_t s = 0; s < fd_.size(); ++s) drop(int64_t(s));
}

void ResidualStore::check(int64_t slot, int64_t chunk) const {
  if (slot < 0 || slot >= int64_t(host_.size()) || chunk < 0 || chunk >= int64_t(rows_.size()))
    fail("residual store: no slot {} chunk {}", slot, chunk);
}

void ResidualStore::put(int64_t slot, int64_t chunk, const float* rows) {
  check(slot, chunk);
  const size_t n = size_t(rows_[size_t(chunk)] * width_);
  if (dir_.empty()) {
    auto& h = host_[size_t(slot)];
    if (h.empty()) h.resize(size_t(total_rows_ * width_));
    std::memcpy(h.data() + offset(chunk), rows, n * sizeof(float));
    return;
  }
  int& fd = fd_[size_t(slot)];
  if (fd < 0) {
    std::string path = dir_ + "/samq-residual-" + std::to_string(getpid()) + "-" + std::to_string(slot) + ".bin";
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) fail("--scratch: cannot create {}: {}", path, std::strerror(errno));
    file_[size_t(slot)] = path;
  }
  const char* p = reinterpret_cast<const char*>(rows);
  size_t left = n * sizeof(float);
  off_t at = off_t(offset(chunk) * int64_t(sizeof(float)));
  while (left > 0) {
    const ssize_t w = ::pwrite(fd, p, left, at);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("--scratch: writing {} failed: {} (disk full?)", file_[size_t(slot)], std::strerror(errno));
    p += w;
    left -= size_t(w);
    at += w;
  }
}

void ResidualStore::get(int64_t slot, int64_t chunk, float* rows) const {
  check(slot, chunk);
  const size_t n = size_t(rows_[size_t(chunk)] * width_);
  if (dir_.empty()) {
    const auto& h = host_[size_t(slot)];
    if (h.empty()) fail("residual store: slot {} read before it was written", slot);
    std::memcpy(rows, h.data() + offset(chunk), n * sizeof(float));
    return;
  }
  const int fd = fd_[size_t(slot)];
  if (fd < 0) fail("residual store: slot {} read before it was written", slot);
  char* p = reinterpret_cast<char*>(rows);
  size_t left = n * sizeof(float);
  off_t at = off_t(offset(chunk) * int64_t(sizeof(float)));
  while (left > 0) {
    const ssize_t r = ::pread(fd, p, left, at);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) fail("--scratch: reading {} failed: {}", file_[size_t(slot)], r < 0 ? std::strerror(errno) : "short file");
    p += r;
    left -= size_t(r);
    at += r;
  }
}

void ResidualStore::drop(int64_t slot) {
  if (slot < 0 || slot >= int64_t(host_.size())) return;
  std::vector<float>().swap(host_[size_t(slot)]);
  if (fd_[size_t(slot)] >= 0) {
    ::close(fd_[size_t(slot)]);
    fd_[size_t(slot)] = -1;
    std::error_code ec;
    std::filesystem::remove(file_[size_t(slot)], ec);
  }
}

}  // namespace samq
