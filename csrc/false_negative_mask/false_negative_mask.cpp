// Schema of MPL's false-negative retrieval. Kernels register per device in
// false_negative_mask_cpu.cpp and false_negative_mask_cuda_impl.cpp; the fake impl is in
// dapo_fast/ops/false_negative_mask.py. No backward: the inputs are frozen detector features.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  m.def("false_negative_mask(Tensor region_feats, Tensor region_valid, float threshold) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}
