// The EMA step shared by the CPU and CUDA kernels: teacher <- m * teacher + (1 - m) * student.
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {
namespace momentum_math {

template <typename T>
HOST_DEVICE T ema(T teacher, T student, T momentum, T one_minus_momentum) {
  return momentum * teacher + one_minus_momentum * student;
}

}  // namespace momentum_math
}  // namespace dapo_fast
