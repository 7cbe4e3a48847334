// Schemas of PCNet's proposal alignment: for every (map, proposal) the maximum of response *
// mask and where it is. Kernels register per device in proposal_alignment_cpu.cpp and
// proposal_alignment_cuda_impl.cpp; autograd and fake impls live in
// dapo_fast/ops/proposal_alignment.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  // (scores [B, S, P], argmax [B, S, P] int64 flat pixel index, -1 for invalid masks)
  m.def("proposal_alignment(Tensor response, Tensor masks, Tensor mask_valid) -> (Tensor, Tensor)",
        {at::Tag::pt2_compliant_tag});
  // argmax entries outside [0, height * width) (-1: invalid mask) add nothing
  m.def("proposal_alignment_backward(Tensor grad, Tensor argmax, Tensor masks, SymInt height, SymInt width) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}
