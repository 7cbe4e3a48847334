// heatmap_to_box with protocol="wwbl": WWbL's generate_bbox and the union of its boxes, box for
// box (the steps are spelled out in dapo_fast/ops/_reference/heatmap_to_box.py).
//
// OpenCV's RETR_TREE contours of a binary image are, as bounding rectangles, the 8-connected
// components of its foreground plus one hole contour per 4-connected background component that
// does not reach the image border (its rectangle is the hole's, one pixel larger on every side).
// Their order is OpenCV's: depth first from the outermost, parent before children, siblings in the
// reverse of the raster order in which their borders start (a component at its first pixel, a
// hole at the foreground pixel left of its first pixel). The order matters: torchvision's NMS
// keeps the first of equal confidences in the order torch's sort leaves them, and so does this
// kernel, by calling the same sort on the same scores.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/sort.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "heatmap_to_box_prepare.h"
#include "../common/parallel.h"

namespace dapo_fast {
namespace {

struct Rect {
  int x0, y0, x1, y1;  // inclusive pixel bounds
  void add(int x, int y) {
    x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x), y1 = std::max(y1, y);
  }
};

// Components of the pixels where inside(i) holds, labelled in raster order of their first pixel
// (8- or 4-connectivity); label -1 elsewhere. Returns each component's rectangle and first pixel.
template <typename Inside>
void label_components(int h, int w, bool eight, Inside inside, std::vector<int>& label, std::vector<Rect>& rects,
                      std::vector<int64_t>& first, std::vector<int>& stack) {
  label.assign(static_cast<size_t>(h) * w, -1);
  rects.clear();
  first.clear();
  for (int64_t start = 0; start < static_cast<int64_t>(h) * w; ++start) {
    if (label[start] >= 0 || !inside(start)) continue;
    const int id = static_cast<int>(rects.size());
    rects.push_back({INT32_MAX, INT32_MAX, -1, -1});
    first.push_back(start);
    label[start] = id;
    stack.assign(1, static_cast<int>(start));
    while (!stack.empty()) {
      const int i = stack.back();
      stack.pop_back();
      const int y = i / w, x = i % w;
      rects[id].add(x, y);
      for (int dy = -1; dy <= 1; ++dy) {
        for (int dx = -1; dx <= 1; ++dx) {
          if ((dy == 0 && dx == 0) || (!eight && dy != 0 && dx != 0)) continue;
          const int yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          const int j = yy * w + xx;
          if (label[j] < 0 && inside(j)) label[j] = id, stack.push_back(j);
        }
      }
    }
  }
}

struct Contour {
  int x, y, w, h;         // cv2.boundingRect
  int64_t start;          // raster index where OpenCV starts following its border
  int parent;             // index of the parent contour, -1 for the outermost level
};

// Contours in OpenCV's RETR_TREE order (see the file comment).
std::vector<Contour> contours_in_opencv_order(const std::vector<uint8_t>& kept, int h, int w) {
  std::vector<int> fg_label, bg_label, stack;
  std::vector<Rect> fg_rect, bg_rect;
  std::vector<int64_t> fg_first, bg_first;
  label_components(h, w, true, [&](int64_t i) { return kept[i] != 0; }, fg_label, fg_rect, fg_first, stack);
  label_components(h, w, false, [&](int64_t i) { return kept[i] == 0; }, bg_label, bg_rect, bg_first, stack);

  std::vector<Contour> nodes;
  std::vector<int> hole_node(bg_rect.size(), -1);
  for (size_t b = 0; b < bg_rect.size(); ++b) {
    const Rect& r = bg_rect[b];
    if (r.x0 == 0 || r.y0 == 0 || r.x1 == w - 1 || r.y1 == h - 1) continue;  // reaches the outside
    hole_node[b] = static_cast<int>(fg_rect.size() + nodes.size());
    nodes.push_back({r.x0 - 1, r.y0 - 1, r.x1 - r.x0 + 3, r.y1 - r.y0 + 3, bg_first[b] - 1,
                     fg_label[bg_first[b] - 1]});  // the border's component, left of the first hole pixel
  }
  std::vector<Contour> all;
  all.reserve(fg_rect.size() + nodes.size());
  for (size_t c = 0; c < fg_rect.size(); ++c) {
    const Rect& r = fg_rect[c];
    const int64_t left = fg_first[c] - 1;  // a background pixel, or outside the image
    const int parent = fg_first[c] % w == 0 ? -1 : hole_node[bg_label[left]];
    all.push_back({r.x0, r.y0, r.x1 - r.x0 + 1, r.y1 - r.y0 + 1, fg_first[c], parent});
  }
  all.insert(all.end(), nodes.begin(), nodes.end());

  // children of each node (and of the outermost level, slot 0), latest start first
  std::vector<std::vector<int>> children(all.size() + 1);
  for (size_t i = 0; i < all.size(); ++i) children[all[i].parent + 1].push_back(static_cast<int>(i));
  for (auto& c : children)
    std::sort(c.begin(), c.end(), [&](int a, int b) { return all[a].start > all[b].start; });
  std::vector<Contour> ordered;
  ordered.reserve(all.size());
  std::vector<std::pair<int, size_t>> path{{-1, 0}};  // (node, next child) depth first
  while (!path.empty()) {
    auto& [node, next] = path.back();
    const auto& kids = children[node + 1];
    if (next == kids.size()) {
      path.pop_back();
      continue;
    }
    const int child = kids[next++];
    ordered.push_back(all[child]);
    path.push_back({child, 0});
  }
  return ordered;
}

// torchvision.ops.nms on (x, y, w, h) tuples read as corner boxes, in float32; the kept indices.
std::vector<int64_t> nms_corner_form(const std::vector<Contour>& rects, std::vector<float>& scores,
                                     double iou_threshold) {
  const int64_t n = static_cast<int64_t>(rects.size());
  const at::Tensor order_t = std::get<1>(at::from_blob(scores.data(), {n}, at::kFloat).sort(0, /*descending=*/true));
  const int64_t* order = order_t.data_ptr<int64_t>();
  std::vector<float> x1(n), y1(n), x2(n), y2(n), area(n);
  for (int64_t i = 0; i < n; ++i) {
    x1[i] = static_cast<float>(rects[i].x), y1[i] = static_cast<float>(rects[i].y);
    x2[i] = static_cast<float>(rects[i].w), y2[i] = static_cast<float>(rects[i].h);
    area[i] = (x2[i] - x1[i]) * (y2[i] - y1[i]);
  }
  std::vector<uint8_t> suppressed(n, 0);
  std::vector<int64_t> keep;
  for (int64_t a = 0; a < n; ++a) {
    const int64_t i = order[a];
    if (suppressed[i]) continue;
    keep.push_back(i);
    for (int64_t b = a + 1; b < n; ++b) {
      const int64_t j = order[b];
      if (suppressed[j]) continue;
      const float iw = std::max(0.0f, std::min(x2[i], x2[j]) - std::max(x1[i], x1[j]));
      const float ih = std::max(0.0f, std::min(y2[i], y2[j]) - std::max(y1[i], y1[j]));
      const float inter = iw * ih;
      const float overlap = inter / (area[i] + area[j] - inter);
      if (overlap > iou_threshold) suppressed[j] = 1;
    }
  }
  return keep;
}

template <typename scalar_t>
void box_of_map(const scalar_t* map, int h, int w, const uint8_t* gray_table, double threshold,
                double conf_threshold, double nms_threshold, float* out) {
  const int64_t hw = static_cast<int64_t>(h) * w;
  double lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < hw; ++i) {
    const double v = static_cast<double>(map[i]);
    if (!std::isfinite(v)) {  // NaN or +-Inf: no min-max normalisation, a NaN box (as the reference)
      std::fill(out, out + 4, NAN);
      return;
    }
    lo = std::min(lo, v), hi = std::max(hi, v);
  }
  if (!(hi > lo)) {  // WWbL: 0 / 0 normalisation, no contour, its default box
    out[0] = 0.0f, out[1] = 0.0f, out[2] = 1.0f, out[3] = 1.0f;
    return;
  }
  std::vector<uint8_t> kept(hw);
  int max_gray = 0;
  for (int64_t i = 0; i < hw; ++i) {
    const double norm = (static_cast<double>(map[i]) - lo) / (hi - lo);
    kept[i] = gray_table[std::min<int64_t>(static_cast<int64_t>(norm * 256.0), 255)];
    max_gray = std::max<int>(max_gray, kept[i]);
  }
  const int64_t cut = static_cast<int64_t>(threshold * static_cast<double>(max_gray));
  for (int64_t i = 0; i < hw; ++i)
    if (kept[i] <= cut) kept[i] = 0;

  const std::vector<Contour> rects = contours_in_opencv_order(kept, h, w);
  if (rects.empty()) {  // nothing above the cut: WWbL's default box
    out[0] = 0.0f, out[1] = 0.0f, out[2] = 1.0f, out[3] = 1.0f;
    return;
  }
  std::vector<double> conf(rects.size());
  std::vector<float> scores(rects.size());
  double best = -INFINITY;
  for (size_t c = 0; c < rects.size(); ++c) {
    int64_t sum = 0;
    for (int y = rects[c].y; y < rects[c].y + rects[c].h; ++y)
      for (int x = rects[c].x; x < rects[c].x + rects[c].w; ++x) sum += kept[static_cast<int64_t>(y) * w + x];
    conf[c] = static_cast<double>(sum) / static_cast<double>(static_cast<int64_t>(rects[c].w) * rects[c].h) / 255.0;
    scores[c] = static_cast<float>(conf[c]);
    best = std::max(best, conf[c]);
  }
  int x0 = INT32_MAX, y0 = INT32_MAX, x1 = INT32_MIN, y1 = INT32_MIN;
  bool any = false;
  for (int64_t c : nms_corner_form(rects, scores, nms_threshold)) {
    if (!(conf[c] > conf_threshold * best)) continue;
    any = true;
    x0 = std::min(x0, rects[c].x), y0 = std::min(y0, rects[c].y);
    x1 = std::max(x1, rects[c].x + rects[c].w), y1 = std::max(y1, rects[c].y + rects[c].h);
  }
  if (!any) {  // no rectangle above conf_threshold * best (conf_threshold >= 1): WWbL's default box
    out[0] = 0.0f, out[1] = 0.0f, out[2] = 1.0f, out[3] = 1.0f;
    return;
  }
  out[0] = static_cast<float>(x0), out[1] = static_cast<float>(y0);
  out[2] = static_cast<float>(x1), out[3] = static_cast<float>(y1);
}

}  // namespace

void heatmap_to_box_wwbl_boxes(const HeatmapToBoxWwbl& p) {
  const int64_t n = p.heatmaps.size(0);
  const int h = static_cast<int>(p.heatmaps.size(1)), w = static_cast<int>(p.heatmaps.size(2));
  const uint8_t* gray_table = p.gray_table.data_ptr<uint8_t>();
  float* out = p.out.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.heatmaps.scalar_type(), "heatmap_to_box_wwbl_cpu", [&] {
    const scalar_t* maps = p.heatmaps.data_ptr<scalar_t>();
    dapo_fast::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        box_of_map(maps + i * h * w, h, w, gray_table, p.rel_threshold, p.conf_threshold, p.nms_threshold,
                   out + 4 * i);
    });
  });
}

}  // namespace dapo_fast
