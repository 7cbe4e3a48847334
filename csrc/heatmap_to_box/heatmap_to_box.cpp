// Schema of heatmap_to_box (WWbL's heatmap -> box procedure, batched). No autograd.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  m.def("heatmap_to_box(Tensor heatmaps, float rel_threshold, float conf_threshold, bool tozero) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}
