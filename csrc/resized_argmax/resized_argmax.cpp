// Schema of resized_argmax: the peak of each heatmap after a bilinear resize to its own output
// size (the pointing-game metrics), with either bilinear resize rule (align_corners). No autograd:
// the output is an index.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  m.def("resized_argmax(Tensor heatmaps, Tensor sizes, bool align_corners=False) -> Tensor", {at::Tag::pt2_compliant_tag});
}
