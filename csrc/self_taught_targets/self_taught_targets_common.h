// The target rule of self_taught_targets, shared by the CPU and CUDA kernels, on top of the IoU
// (box_iou_common.h) and the Box2BoxTransform deltas (box_coder_common.h).
#pragma once
#include "../box_coder/box_coder_common.h"
#include "../box_iou/box_iou_common.h"
#include "../common/host_device.h"

namespace dapo_fast {
namespace self_taught_math {

// Proposal `box` (not the pseudo ground truth `gt` itself) is regressed towards gt when it
// overlaps it by at least iou_threshold and scores at least score_gap below it.
template <typename T>
HOST_DEVICE bool is_target(const T* box, const T* gt, T score, T best_score, T iou_threshold, T score_gap) {
  return box_math::iou(box, gt) >= iou_threshold && best_score - score >= score_gap;
}

}  // namespace self_taught_math
}  // namespace dapo_fast
