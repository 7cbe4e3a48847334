// Schema of box_iou (torchvision's box_iou, batched). Boxes are rows of (x1, y1, x2, y2); the
// Python front flattens leading dims. Kernels register per device in box_iou_cpu.cpp and
// box_iou_cuda_impl.cpp.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) { m.def("box_iou(Tensor a, Tensor b) -> Tensor", {at::Tag::pt2_compliant_tag}); }
