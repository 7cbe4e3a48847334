// heatmap_to_box rules shared by the CPU and CUDA kernels (see dapo_fast/ops/heatmap_to_box.py).
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {
namespace heatmap_to_box_math {

// Min-max normalised heat; a flat map (hi == lo) is 1 everywhere: every pixel is the peak.
HOST_DEVICE double normalise(double v, double lo, double hi) { return hi > lo ? (v - lo) / (hi - lo) : 1.0; }

// The score a pixel adds to its box's confidence: its normalised heat, or 0 below the threshold
// with tozero (the original code's cv2.THRESH_TOZERO map).
HOST_DEVICE double pixel_score(double norm, double rel_threshold, bool tozero) {
  return (tozero && !(norm >= rel_threshold)) ? 0.0 : norm;
}

// A component survives when its confidence beats conf_threshold * best (strict, as in WWbL);
// the best component itself always survives (also when conf_threshold >= 1).
HOST_DEVICE bool keep_component(double conf, double best, double conf_threshold) {
  return conf > conf_threshold * best || conf == best;
}

}  // namespace heatmap_to_box_math
}  // namespace dapo_fast
