// Schemas of the box ops (detectron2 Box2BoxTransform semantics, torchvision box_iou, ReIR's
// self-taught regression targets, weighted smooth-L1). Boxes are rows of (x1, y1, x2, y2); the
// Python fronts flatten leading dims. `weights` are the (wx, wy, ww, wh) delta weights.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  m.def("box_iou(Tensor a, Tensor b) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def("box_encode(Tensor proposals, Tensor targets, float[] weights) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def("box_encode_backward(Tensor grad, Tensor proposals, Tensor targets, float[] weights) -> (Tensor, Tensor)",
        {at::Tag::pt2_compliant_tag});
  m.def("box_decode(Tensor deltas, Tensor boxes, float[] weights, float scale_clamp) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  m.def("box_decode_backward(Tensor grad, Tensor deltas, Tensor boxes, float[] weights, float scale_clamp) "
        "-> (Tensor, Tensor)",
        {at::Tag::pt2_compliant_tag});
  m.def("self_taught_targets(Tensor boxes, Tensor scores, float iou_threshold, float score_gap, float[] weights) "
        "-> (Tensor, Tensor)",
        {at::Tag::pt2_compliant_tag});
  // reduction: 0 none, 1 sum, 2 mean
  m.def("weighted_smooth_l1(Tensor input, Tensor target, Tensor weight, float beta, int reduction) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  m.def("weighted_smooth_l1_backward(Tensor grad, Tensor input, Tensor target, Tensor weight, float beta, "
        "int reduction) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}
