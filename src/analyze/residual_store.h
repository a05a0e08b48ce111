// Per-chunk rows of the residual stream (or its gradient) at layer boundaries, for the
// layer-streamed passes (analyze/layer_stream.h): slot s, chunk c holds (rows_c, width) floats.
// Kept in host memory, or in files under a scratch directory (--scratch DIR), written once and
// read back with pread, so they never count against the process's resident memory.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace samq {

class ResidualStore {
 public:
  // chunk_rows: token rows of each chunk; width: floats per row.
  ResidualStore(int64_t n_slots, std::vector<int64_t> chunk_rows, int64_t width, std::string scratch_dir = {});
  ~ResidualStore();
  ResidualStore(const ResidualStore&) = delete;
  ResidualStore& operator=(const ResidualStore&) = delete;

  void put(int64_t slot, int64_t chunk, const float* rows);
  void get(int64_t slot, int64_t chunk, float* rows) const;
  void drop(int64_t slot);  // frees the slot (host memory or its file)
  int64_t slot_bytes() const { return total_rows_ * width_ * int64_t(sizeof(float)); }
  bool on_disk() const { return !dir_.empty(); }

 private:
  int64_t offset(int64_t chunk) const { return first_[size_t(chunk)] * width_; }
  void check(int64_t slot, int64_t chunk) const;
  std::vector<int64_t> rows_, first_;
  int64_t width_ = 0, total_rows_ = 0;
  std::string dir_;
  std::vector<std::vector<float>> host_;
  std::vector<int> fd_;
  std::vector<std::string> file_;
};

}  // namespace samq
