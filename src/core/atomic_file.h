// Files are written to "<path>.tmp.<pid>" and renamed over the target only on commit(), so
// a crash, an exception or Ctrl-C never leaves a half-written artifact (and an existing
// file at the target survives until the new one is complete).
#pragma once
#include <cstdio>
#include <string>
#include <string_view>

namespace samq {

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);  // opens the temp file for writing
  ~AtomicFile();                                 // removes the temp file unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  void write_zeros(size_t n);
  // Moves the write position (a later write fills the file there; bytes never written read as
  // zeros once the file is longer). tell() is the current position.
  void seek(uint64_t pos);
  uint64_t tell() const { return written_; }
  void commit();  // flush, fsync, close, rename

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string tmp_;
  FILE* f_ = nullptr;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// Convenience: write a whole string atomically.
void write_file_atomic(const std::string& path, std::string_view contents);
std::string read_file(const std::string& path);  // throws samq::Error naming the path

}  // namespace samq
