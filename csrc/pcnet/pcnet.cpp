// Schemas of PCNet's proposal-scoring ops. Kernels register per device in *_cpu.cpp and
// pcnet_cuda_impl.cpp; autograd and fake impls live in Python (dapo_fast/ops/{proposal_alignment,
// soft_iou,region_ambiguity}.py). `variant` is "iou" or "half_dice".
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  // (scores [B, S, P], argmax [B, S, P] int64 flat pixel index, -1 for invalid masks)
  m.def("proposal_alignment(Tensor response, Tensor masks, Tensor mask_valid) -> (Tensor, Tensor)",
        {at::Tag::pt2_compliant_tag});
  m.def("proposal_alignment_backward(Tensor grad, Tensor argmax, Tensor masks, SymInt height, SymInt width) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  m.def("soft_iou(Tensor response, Tensor masks, str variant, float eps) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def("soft_iou_backward(Tensor grad, Tensor response, Tensor masks, str variant, float eps) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  // (ambiguity [B, S], foreground [B, S] int64, d ambiguity / d response [B, S, H, W] when with_grad else [0])
  m.def("region_ambiguity(Tensor response, Tensor masks, Tensor mask_valid, str variant, float eps, bool with_grad) "
        "-> (Tensor, Tensor, Tensor)",
        {at::Tag::pt2_compliant_tag});
}
