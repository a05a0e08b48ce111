// Data-parallel loops over the process-wide thread count (set once from --threads).
// Work is split into contiguous chunks whose boundaries depend only on n and the chunk
// size, never on the thread count, so reductions written per chunk are deterministic.
#pragma once
#include <cstdint>
#include <functional>

namespace samq {

void set_num_threads(int n);  // n <= 0: all hardware threads
int num_threads();

// Calls fn(begin, end) for consecutive chunks [begin, end) of [0, n), in parallel.
void parallel_for(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace samq
