// Schema of the multi-tensor EMA (momentum teacher) update. Kernels register in
// momentum_update_cpu.cpp and momentum_update_cuda_impl.cpp; the fake impl is in
// dapo_fast/ops/momentum_update.py. Mutates `teacher` in place; no autograd (parameters update).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  m.def("momentum_update_(Tensor(a!)[] teacher, Tensor[] student, float momentum) -> ()",
        {at::Tag::pt2_compliant_tag});
}
