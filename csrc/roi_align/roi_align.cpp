// Schemas of the RoIAlign ops (torchvision's signature, plus keep_channels_last: a channels_last
// input's output stays channels_last instead of torchvision's NCHW). Kernels register per device in
// roi_align_cpu.cpp and roi_align_cuda_impl.cpp; autograd and fake impls live in Python.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
      "int sampling_ratio, bool aligned, bool keep_channels_last=False) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
      "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, int sampling_ratio, "
      "bool aligned) -> Tensor",
      {at::Tag::pt2_compliant_tag});
}
