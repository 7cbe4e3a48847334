// Schemas of box_encode / box_decode: detectron2's Box2BoxTransform (get_deltas / apply_deltas)
// and their backward. Boxes are rows of (x1, y1, x2, y2); the Python front flattens leading
// dims. `weights` are the (wx, wy, ww, wh) delta weights. Kernels register per device in
// box_coder_cpu.cpp and box_coder_cuda_impl.cpp.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  m.def("box_encode(Tensor proposals, Tensor targets, float[] weights) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def("box_encode_backward(Tensor grad, Tensor proposals, Tensor targets, float[] weights) -> (Tensor, Tensor)",
        {at::Tag::pt2_compliant_tag});
  m.def("box_decode(Tensor deltas, Tensor boxes, float[] weights, float scale_clamp) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  m.def("box_decode_backward(Tensor grad, Tensor deltas, Tensor boxes, float[] weights, float scale_clamp) "
        "-> (Tensor, Tensor)",
        {at::Tag::pt2_compliant_tag});
}
