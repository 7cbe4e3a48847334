// Schemas of heatmap_to_box (connected components: the default protocol) and heatmap_to_box_wwbl
// (WWbL's generate_bbox, box for box; gray_table is the uint8[256] gray of each colormap entry),
// batched. No autograd.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  m.def("heatmap_to_box(Tensor heatmaps, float rel_threshold, float conf_threshold, bool tozero) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  m.def(
      "heatmap_to_box_wwbl(Tensor heatmaps, Tensor gray_table, float rel_threshold, float conf_threshold, "
      "float nms_threshold) -> Tensor",
      {at::Tag::pt2_compliant_tag});
}
