// The target rule of self_taught_targets, shared by the CPU and CUDA kernels, on top of the IoU
// (box_iou_common.h) and the Box2BoxTransform deltas (box_coder_common.h).
#pragma once
#include "../box_coder/box_coder_common.h"
#include "../box_iou/box_iou_common.h"
#include "../common/host_device.h"

namespace dapo_fast {
namespace self_taught_math {

// When a proposal is a regression target of the pseudo ground truth.
struct Rule {
  double iou_threshold = 0, score_gap = 0;
  bool exclude_iou_one = false;  // ReIR's code: a proposal with IoU exactly 1 is no target
};

// Proposal `box` (not the pseudo ground truth `gt` itself) is regressed towards gt when it
// overlaps it by at least iou_threshold and scores at least score_gap below it (and, with
// exclude_iou_one, is not an exact match of it: IoU 1).
template <typename T>
HOST_DEVICE bool is_target(const T* box, const T* gt, T score, T best_score, const Rule& rule) {
  const T overlap = box_math::iou(box, gt);
  return overlap >= static_cast<T>(rule.iou_threshold) && !(rule.exclude_iou_one && overlap == T(1)) &&
         best_score - score >= static_cast<T>(rule.score_gap);
}

}  // namespace self_taught_math
}  // namespace dapo_fast
