// Schema of ReIR's self-taught regression targets: per (image, phrase) the most confident
// proposal is the pseudo ground truth, and every other proposal that overlaps it enough and
// scores low enough gets the box_encode deltas towards it. `weights` are the (wx, wy, ww, wh)
// delta weights. Kernels register per device in self_taught_targets_cpu.cpp and
// self_taught_targets_cuda_impl.cpp. No autograd: the targets are constants.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  m.def("self_taught_targets(Tensor boxes, Tensor scores, float iou_threshold, float score_gap, float[] weights) "
        "-> (Tensor, Tensor)",
        {at::Tag::pt2_compliant_tag});
}
