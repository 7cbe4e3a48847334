// Grain size for at::parallel_for from an estimate of the work per task, so that small problems
// stay on the calling thread: waking a worker costs microseconds on an idle machine and whole
// scheduler slices (milliseconds) on a loaded one, more than these kernels take serially.
#pragma once
#include <cstdint>

namespace dapo_fast {

// ~2^17 elementary operations (tens of microseconds) per thread before going parallel.
constexpr int64_t kParallelWork = int64_t(1) << 17;

inline int64_t grain_for(int64_t work_per_task) {
  if (work_per_task <= 0) work_per_task = 1;
  const int64_t g = (kParallelWork + work_per_task - 1) / work_per_task;
  return g > 0 ? g : 1;
}

}  // namespace dapo_fast
