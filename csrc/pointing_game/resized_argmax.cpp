// Schema of resized_argmax: the peak of each heatmap after a bilinear resize to its own output
// size, the kernel behind the pointing-game metrics (dapo_fast/ops/pointing_game.py:
// pointing_game, pointing_game_masks, resized_argmax). Kernels register per device in
// resized_argmax_cpu.cpp and resized_argmax_cuda_impl.cpp. No autograd: the output is an index.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  m.def("resized_argmax(Tensor heatmaps, Tensor sizes) -> Tensor", {at::Tag::pt2_compliant_tag});
}
