// Schema of PCNet's region ambiguity: per map, the foreground proposal (highest alignment
// score), and 1 - (soft IoU with it - soft IoU with the union of the other valid proposals).
// `variant` is "iou" or "half_dice". Kernels register per device in region_ambiguity_cpu.cpp and
// region_ambiguity_cuda_impl.cpp; autograd and fake impls live in dapo_fast/ops/region_ambiguity.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  // (ambiguity [B, S], foreground [B, S] int64, d ambiguity / d response [B, S, H, W] when with_grad else [0])
  m.def("region_ambiguity(Tensor response, Tensor masks, Tensor mask_valid, str variant, float eps, bool with_grad) "
        "-> (Tensor, Tensor, Tensor)",
        {at::Tag::pt2_compliant_tag});
}
