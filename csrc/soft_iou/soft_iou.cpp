// Schemas of PCNet's soft IoU between response maps and proposal masks. `variant` is "iou" or
// "half_dice". Kernels register per device in soft_iou_cpu.cpp and soft_iou_cuda_impl.cpp;
// autograd and fake impls live in dapo_fast/ops/soft_iou.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  m.def("soft_iou(Tensor response, Tensor masks, str variant, float eps) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def("soft_iou_backward(Tensor grad, Tensor response, Tensor masks, str variant, float eps) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}
