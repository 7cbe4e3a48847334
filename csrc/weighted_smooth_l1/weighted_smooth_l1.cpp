// Schemas of the weighted smooth-L1 loss (torch's smooth_l1 times a per-element weight).
// Kernels register per device in weighted_smooth_l1_cpu.cpp and weighted_smooth_l1_cuda_impl.cpp.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  // reduction: 0 none, 1 sum, 2 mean
  m.def("weighted_smooth_l1(Tensor input, Tensor target, Tensor weight, float beta, int reduction) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  m.def("weighted_smooth_l1_backward(Tensor grad, Tensor input, Tensor target, Tensor weight, float beta, "
        "int reduction) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}
