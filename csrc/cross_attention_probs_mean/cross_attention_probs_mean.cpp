// Schemas of the fused head-mean cross-attention probabilities (DAPO / Attend-and-Excite maps).
// Kernels register per device in cross_attention_probs_mean_cpu.cpp and *_cuda_impl.cpp;
// autograd and fake impls live in dapo_fast/ops/cross_attention_probs_mean.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  // weight * mean_h softmax(q[:, h] k[:, h]^T * scale + key_bias[:, None, :]) -> [B, HW, T]
  m.def("cross_attention_probs_mean(Tensor q, Tensor k, float scale, Tensor? key_bias, float weight) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  // out += the same, in place (the running buffer of a layer-mean)
  m.def(
      "cross_attention_probs_mean_accumulate(Tensor(a!) out, Tensor q, Tensor k, float scale, Tensor? key_bias, "
      "float weight) -> ()",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "cross_attention_probs_mean_backward(Tensor grad, Tensor q, Tensor k, float scale, Tensor? key_bias, "
      "float weight) -> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}
