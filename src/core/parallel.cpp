// parallel_for over a persistent pool of worker threads (no OpenMP fork-join per call).
//
// Why: a decode step of a small model runs ~100 short parallel loops (one per matmul, rope,
// attention...), each a few microseconds long; waking threads through the OS for each costs as
// much as the work. Workers here spin on a generation counter for a short while after each
// job (kSpinTime, 200 us) and only then sleep on it (C++20 atomic wait), so back
// to back loops hand work over in well under a microsecond, and an idle process sleeps.
//
// Chunks [c*chunk, (c+1)*chunk) are claimed dynamically (atomic counter), so which thread runs a
// chunk varies but the chunk boundaries never do: per-chunk results are deterministic. The
// caller works too and, once every chunk is claimed, waits only for helpers that joined, so a
// descheduled worker on an oversubscribed machine does not stall the loop.
// A parallel_for called from inside a running one (or while another thread owns the pool) runs
// its chunks serially on the calling thread.
#include "core/parallel.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace samq {
namespace {

// How long an idle thread spins before it sleeps. Measured in pause instructions between
// clock reads, so it means the same time on CPUs whose pause takes 10 or 140 cycles.
// SAMQ_SPIN_US overrides it; OMP_WAIT_POLICY=passive (what scripts/test.sh sets while ctest runs
// two multithreaded tests on two cores) turns spinning off: spinning threads of one process
// then steal the cores the other process needs.
const std::chrono::microseconds kSpinTime = [] {
  if (const char* e = std::getenv("SAMQ_SPIN_US")) return std::chrono::microseconds(std::max(0L, std::atol(e)));
  if (const char* e = std::getenv("OMP_WAIT_POLICY"); e && (!std::strcmp(e, "passive") || !std::strcmp(e, "PASSIVE")))
    return std::chrono::microseconds(0);
  return std::chrono::microseconds(200);
}();

// Spins (pause) until the deadline; call with ++s each time; true while still spinning.
struct Spinner {
  int s = 0;
  std::chrono::steady_clock::time_point until{};
  bool spin() {
    if ((s++ & 63) == 0) {
      const auto now = std::chrono::steady_clock::now();
      if (s == 1) until = now + kSpinTime;
      else if (now > until) return false;
    }
    _mm_pause();
    return true;
  }
  void reset() { s = 0; }
};

struct Job {
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0, chunk = 1, n_chunks = 0;
  int helpers = 0;  // workers 0..helpers-1 take part
  alignas(64) std::atomic<int64_t> next{0};
  std::exception_ptr err;
  std::mutex err_mu;
};

thread_local bool t_in_parallel = false;

// OpenBLAS (Debian's OpenMP build) sizes each call from the calling thread's OpenMP thread
// count, a per-thread setting whose default is every core. Chunks of a parallel_for must run
// their sgemm calls on one thread: two cores each starting an OpenMP team inside every chunk
// made 2-thread runs 2x slower than 1-thread runs (exec_blas at 42 % of cycles). Workers set it
// once; the calling thread sets it for the duration of the loop.
class OmpSingle {
 public:
  OmpSingle() : prev_(omp_get_max_threads()) {
    if (prev_ != 1) omp_set_num_threads(1);
  }
  ~OmpSingle() {
    if (prev_ != 1) omp_set_num_threads(prev_);
  }
  OmpSingle(const OmpSingle&) = delete;
  OmpSingle& operator=(const OmpSingle&) = delete;

 private:
  int prev_;
};

void run_chunks(Job& j) {
  for (;;) {
    const int64_t c = j.next.fetch_add(1, std::memory_order_relaxed);
    if (c >= j.n_chunks) break;
    try {
      (*j.fn)(c * j.chunk, std::min(j.n, (c + 1) * j.chunk));
    } catch (...) {
      std::lock_guard<std::mutex> lk(j.err_mu);
      if (!j.err) j.err = std::current_exception();
    }
  }
}

class Pool {
 public:
  explicit Pool(int helpers) : slots_(new std::atomic<Job*>[std::max(1, helpers)]) {
    for (int i = 0; i < helpers; ++i) slots_[i].store(nullptr);
    for (int i = 0; i < helpers; ++i) threads_.emplace_back([this, i] { worker(i); });
  }
  ~Pool() {
    stop_.store(true, std::memory_order_release);
    gen_.fetch_add(1, std::memory_order_acq_rel);
    gen_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int helpers() const { return int(threads_.size()); }
  std::mutex& owner() { return owner_; }

  // Caller holds owner(). Runs j on the caller plus workers 0..j.helpers-1.
  void run(Job& j) {
    done_.store(0, std::memory_order_relaxed);
    for (int i = 0; i < j.helpers; ++i) slots_[i].store(&j, std::memory_order_release);
    gen_.fetch_add(1, std::memory_order_acq_rel);
    gen_.notify_all();
    t_in_parallel = true;
    run_chunks(j);
    t_in_parallel = false;
    // All chunks are claimed. Helpers that have not picked the job up yet (descheduled on a
    // busy machine) are not waited for: take their slots back.
    int joined = j.helpers;
    for (int i = 0; i < j.helpers; ++i)
      if (slots_[i].exchange(nullptr, std::memory_order_acq_rel) == &j) --joined;
    Spinner sp;
    for (;;) {
      const int d = done_.load(std::memory_order_acquire);
      if (d == joined) break;
      if (!sp.spin()) done_.wait(d, std::memory_order_acquire);
    }
  }

 private:
  // A job is handed to a worker through its own slot (set before the generation bump), so a
  // worker that wakes late never touches a job it was not given.
  void worker(int idx) {
    t_in_parallel = true;
    omp_set_num_threads(1);
    Spinner sp;
    for (;;) {
      const uint32_t g = gen_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_acquire)) return;
      if (Job* j = slots_[idx].exchange(nullptr, std::memory_order_acq_rel)) {
        run_chunks(*j);
        done_.fetch_add(1, std::memory_order_acq_rel);  // j may be gone after this
        done_.notify_one();
        sp.reset();
        continue;
      }
      if (!sp.spin()) {
        gen_.wait(g, std::memory_order_acquire);
        sp.reset();
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex owner_;
  std::unique_ptr<std::atomic<Job*>[]> slots_;
  alignas(64) std::atomic<uint32_t> gen_{0};
  alignas(64) std::atomic<int> done_{0};  // helpers finished with the current job
  std::atomic<bool> stop_{false};
};

int g_threads = 0;
std::mutex g_pool_mu;  // guards creation/replacement of g_pool
std::shared_ptr<Pool> g_pool;

std::shared_ptr<Pool> pool_for(int threads) {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (!g_pool || g_pool->helpers() != threads - 1) g_pool = std::make_shared<Pool>(threads - 1);
  return g_pool;
}

void serial_chunks(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
  for (int64_t b = 0; b < n; b += chunk) fn(b, std::min(n, b + chunk));
}

}  // namespace

void set_num_threads(int n) {
  // Default: SAMQ_THREADS when set (scripts/test.sh sets 1 while ctest runs one test per core),
  // else one thread per hardware thread.
  const char* env = std::getenv("SAMQ_THREADS");
  const int from_env = env ? std::atoi(env) : 0;
  g_threads = n > 0 ? n : from_env > 0 ? from_env : int(std::max(1u, std::thread::hardware_concurrency()));
  omp_set_num_threads(g_threads);  // BLAS calls made outside parallel_for (e.g. hessian's dsyrk)
}

int num_threads() {
  if (g_threads <= 0) set_num_threads(0);
  return g_threads;
}

void parallel_for(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const OmpSingle blas_single;
  chunk = std::max<int64_t>(1, chunk);
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  const int threads = num_threads();
  const int nt = int(std::min<int64_t>(threads, n_chunks));
  if (nt <= 1) {
    fn(0, n);
    return;
  }
  if (t_in_parallel) {  // nested: this thread runs every chunk
    serial_chunks(n, chunk, fn);
    return;
  }
  const std::shared_ptr<Pool> pool = pool_for(threads);
  std::unique_lock<std::mutex> lk(pool->owner(), std::try_to_lock);
  if (!lk.owns_lock()) {  // another thread is using the pool right now
    serial_chunks(n, chunk, fn);
    return;
  }
  Job j;
  j.fn = &fn;
  j.n = n;
  j.chunk = chunk;
  j.n_chunks = n_chunks;
  j.helpers = nt - 1;
  pool->run(j);
  if (j.err) std::rethrow_exception(j.err);
}

}  // namespace samq
