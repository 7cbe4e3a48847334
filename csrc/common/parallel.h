// parallel_for for the CPU kernels: at::parallel_for's contract (f(begin, end) over disjoint
// sub-ranges covering [begin, end), nothing parallel below `grain` tasks, exceptions propagated),
// but the range is handed out in small chunks from a shared counter instead of one fixed slice
// per thread.
//
// Why: at::parallel_for gives thread t the t-th 1/T of the range. When another process takes a
// core, one of our threads is descheduled for a scheduler slice (milliseconds) and the call waits
// for its whole slice of the work. With chunks taken on demand, the threads that run take over the
// work of the one that does not, and the call waits at most for the chunk it holds.
//
// Every kernel's result depends only on which tasks exist, never on which thread ran them or in
// what order (partial sums are stored per task and added in task order), so the scheduling does
// not change any number.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace dapo_fast {

// Chunks per thread: enough that a late thread leaves little behind, few enough that a chunk still
// amortises the atomic increment and the lambda's own set-up (scratch buffers, tables).
constexpr int64_t kChunksPerThread = 8;

template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  const int64_t n = end - begin;
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t threads = at::get_num_threads();
  if (threads <= 1 || n <= grain || at::in_parallel_region()) {
    f(begin, end);
    return;
  }
  const int64_t chunk = std::max(grain, (n + threads * kChunksPerThread - 1) / (threads * kChunksPerThread));
  const int64_t chunks = (n + chunk - 1) / chunk;
  std::atomic<int64_t> next{0};
  // one slot per thread that can get a chunk; each drains the shared counter
  at::parallel_for(0, std::min(threads, chunks), 1, [&](int64_t, int64_t) {
    for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < chunks;
         c = next.fetch_add(1, std::memory_order_relaxed)) {
      const int64_t lo = begin + c * chunk;
      f(lo, std::min(end, lo + chunk));
    }
  });
}

}  // namespace dapo_fast
