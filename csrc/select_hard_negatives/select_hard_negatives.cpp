// Schema of QueryMatch's greedy hard-negative selection. Kernels register in
// select_hard_negatives_cpu.cpp and select_hard_negatives_cuda_impl.cpp; the fake impl is in
// dapo_fast/ops/select_hard_negatives.py. Integer output: no autograd.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  m.def("select_hard_negatives(Tensor queries, Tensor text, SymInt num, str uniqueness) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}
