#include "core/atomic_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "core/error.h"

namespace samq {

AtomicFile::AtomicFile(const std::string& path)
    : path_(path), tmp_(path + ".tmp." + std::to_string(::getpid())) {
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) fail("{}: cannot create: {}", tmp_, std::strerror(errno));
  std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
}

AtomicFile::~AtomicFile() {
  if (f_) std::fclose(f_);
  if (!committed_) std::remove(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  if (n == 0) return;
  if (std::fwrite(data, 1, n, f_) != n) fail("{}: write failed: {}", tmp_, std::strerror(errno));
  written_ += n;
}

void AtomicFile::write_zeros(size_t n) {
  static const char zeros[256] = {};
  while (n > 0) {
    size_t k = n < sizeof zeros ? n : sizeof zeros;
    write(zeros, k);
    n -= k;
  }
}

void AtomicFile::seek(uint64_t pos) {
  if (pos == written_) return;
  if (::fseeko(f_, off_t(pos), SEEK_SET) != 0) fail("{}: seek to {} failed: {}", tmp_, pos, std::strerror(errno));
  written_ = pos;
}

void AtomicFile::commit() {
  if (std::fflush(f_) != 0) fail("{}: flush failed: {}", tmp_, std::strerror(errno));
  ::fsync(::fileno(f_));
  std::fclose(f_);
  f_ = nullptr;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
    fail("{}: cannot rename from {}: {}", path_, tmp_, std::strerror(errno));
  committed_ = true;
}

void write_file_atomic(const std::string& path, std::string_view contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace samq
