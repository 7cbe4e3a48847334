// The one entry of box_iou, registered for CPU and CUDA alike (box_iou_entry<Kernels>): checks,
// contiguity, the output, then the device's kernel (Kernels::run, in box_iou_cpu.cpp and
// box_iou_cuda_impl.cpp).
#pragma once
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../common/checks.h"

namespace dapo_fast {

struct BoxIou {
  at::Tensor a, b;  // contiguous [B, N, 4], [B, M, 4]
  at::Tensor out;   // [B, N, M]
  bool done = false;  // empty output
};

inline BoxIou prepare_box_iou(const at::Tensor& a, const at::Tensor& b) {
  check_floating(a, "a");
  TORCH_CHECK(a.dim() == 3 && a.size(2) == 4, "a must have shape [B, N, 4], got ", a.sizes());
  TORCH_CHECK(b.dim() == 3 && b.size(2) == 4 && b.size(0) == a.size(0),
              "b must have shape [B, M, 4] with B = a.size(0), got ", b.sizes());
  check_same_dtype(a, "a", b, "b");
  check_same_device(a, "a", b, "b");
  BoxIou p;
  p.a = a.contiguous();
  p.b = b.contiguous();
  p.out = at::empty({a.size(0), a.size(1), b.size(1)}, a.options());
  p.done = p.out.numel() == 0;
  return p;
}

template <typename Kernels>
at::Tensor box_iou_entry(const at::Tensor& a, const at::Tensor& b) {
  const BoxIou p = prepare_box_iou(a, b);
  if (!p.done) Kernels::run(p);
  return p.out;
}

// Registers the op with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_box_iou(torch::Library& m) {
  m.impl("box_iou", &box_iou_entry<Kernels>);
}

}  // namespace dapo_fast
