// The one entry of momentum_update_, registered for CPU and CUDA alike
// (momentum_update_entry<Kernels>): checks, the rare strided teacher updated in place with plain
// ATen, contiguous students for the rest, then the device's multi-tensor kernel (Kernels::run, in
// momentum_update_cpu.cpp and momentum_update_cuda_impl.cpp).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace dapo_fast {

// No teacher is expanded or shares memory with another tensor of the call: the kernels read a
// student while they write its teacher (through __restrict pointers) and update the pairs in no
// defined order. Memory is compared by the byte range each tensor's elements span in its storage
// (students may share memory with each other: they are only read).
inline void check_momentum_update_memory(at::TensorList teacher, at::TensorList student) {
  struct Span {
    const void* storage;
    uintptr_t first, end;
    size_t index;
    bool is_teacher;
  };
  std::vector<Span> spans;
  auto add = [&](const at::Tensor& t, size_t i, bool is_teacher) {
    if (t.numel() == 0) return;
    int64_t extent = 1;
    for (int64_t d = 0; d < t.dim(); ++d) {
      TORCH_CHECK(!is_teacher || t.size(d) == 1 || t.stride(d) != 0, "teacher[", i,
                  "] must not be an expanded tensor: several of its elements are one memory location");
      extent += (t.size(d) - 1) * t.stride(d);
    }
    const auto first = reinterpret_cast<uintptr_t>(t.data_ptr());
    spans.push_back({t.storage().data(), first, first + static_cast<uintptr_t>(extent) * t.element_size(), i,
                     is_teacher});
  };
  for (size_t i = 0; i < teacher.size(); ++i) add(teacher[i], i, true);
  for (size_t i = 0; i < student.size(); ++i) add(student[i], i, false);
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.storage != b.storage ? std::less<const void*>()(a.storage, b.storage) : a.first < b.first;
  });
  const Span* furthest = nullptr;          // of the spans so far in this storage, the one reaching furthest
  const Span* furthest_teacher = nullptr;  // the same among teachers
  for (const Span& s : spans) {
    if (furthest != nullptr && furthest->storage != s.storage) furthest = furthest_teacher = nullptr;
    const Span* earlier = s.is_teacher ? furthest : furthest_teacher;
    TORCH_CHECK(earlier == nullptr || s.first >= earlier->end, s.is_teacher ? "teacher[" : "student[", s.index,
                "] shares memory with ", earlier != nullptr && earlier->is_teacher ? "teacher[" : "student[",
                earlier != nullptr ? earlier->index : 0,
                "]; teacher tensors must not overlap any other tensor of the update");
    if (furthest == nullptr || s.end > furthest->end) furthest = &s;
    if (s.is_teacher && (furthest_teacher == nullptr || s.end > furthest_teacher->end)) furthest_teacher = &s;
  }
}

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
  check_momentum_update_memory(teacher, student);
}

struct MomentumUpdate {
  // students[i]: student i, contiguous, for a contiguous teacher i; undefined where teacher i
  // was strided and is already updated
  std::vector<at::Tensor> students;
  double momentum = 0;
  bool done = true;  // no pair left for the kernel
};

inline MomentumUpdate prepare_momentum_update(at::TensorList teacher, at::TensorList student, double momentum) {
  check_momentum_update_args(teacher, student, momentum);
  MomentumUpdate p;
  p.momentum = momentum;
  p.students.resize(student.size());
  for (size_t i = 0; i < teacher.size(); ++i) {
    const at::Tensor& t = teacher[i];
    if (!t.is_contiguous()) {  // rare (a strided view as parameter): plain ATen in place
      t.mul_(momentum).add_(student[i], 1.0 - momentum);
      continue;
    }
    p.students[i] = student[i].contiguous();
    p.done = false;
  }
  return p;
}

template <typename Kernels>
void momentum_update_entry(at::TensorList teacher, at::TensorList student, double momentum) {
  const MomentumUpdate p = prepare_momentum_update(teacher, student, momentum);
  if (!p.done) Kernels::run(teacher, p);
}

// Registers the op with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_momentum_update(torch::Library& m) {
  m.impl("momentum_update_", &momentum_update_entry<Kernels>);
}

}  // namespace dapo_fast
