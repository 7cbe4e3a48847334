// Argument checks of momentum_update_, shared by the CPU and CUDA entry points.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace dapo_fast {

inline void check_momentum_update_args(at::TensorList teacher, at::TensorList student, double momentum) {
  TORCH_CHECK(teacher.size() == student.size(), "teacher and student must hold the same number of tensors, got ",
              teacher.size(), " and ", student.size());
  TORCH_CHECK(momentum >= 0.0 && momentum <= 1.0, "momentum must be in [0, 1], got ", momentum);
  for (size_t i = 0; i < teacher.size(); ++i) {
    const at::Tensor& t = teacher[i];
    const at::Tensor& s = student[i];
    TORCH_CHECK(at::isFloatingType(t.scalar_type()), "teacher[", i, "] must be a floating-point tensor, got ",
                t.scalar_type());
    TORCH_CHECK(t.scalar_type() == s.scalar_type(), "teacher[", i, "] and student[", i,
                "] must have the same dtype, got ", t.scalar_type(), " and ", s.scalar_type());
    TORCH_CHECK(t.sizes() == s.sizes(), "teacher[", i, "] and student[", i, "] must have the same shape, got ",
                t.sizes(), " and ", s.sizes());
    TORCH_CHECK(t.device() == s.device() && t.device() == teacher[0].device(), "teacher[", i, "] and student[", i,
                "] must be on the same device as teacher[0], got ", t.device(), " and ", s.device());
  }
}

}  // namespace dapo_fast
