// Schema of resized_argmax: the peak of each heatmap after a bilinear resize to its own output
// size (the pointing-game metrics). No autograd: the output is an index.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  m.def("resized_argmax(Tensor heatmaps, Tensor sizes) -> Tensor", {at::Tag::pt2_compliant_tag});
}
