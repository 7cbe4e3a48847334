// The one entry of self_taught_targets, registered for CPU and CUDA alike
// (self_taught_targets_entry<Kernels>): checks, the parsed delta weights, contiguity, the outputs,
// then the device's kernel (Kernels::run, in self_taught_targets_cpu.cpp and
// self_taught_targets_cuda_impl.cpp).
#pragma once
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

#include "../box_coder/box_coder_prepare.h"
#include "../common/checks.h"

namespace dapo_fast {

struct SelfTaughtTargets {
  at::Tensor boxes;   // contiguous [B, J, 4]
  at::Tensor scores;  // contiguous [B, P, J], boxes' dtype
  at::Tensor deltas;  // [B, P, J, 4]
  at::Tensor target_weights;  // [B, P, J]: 1 where a proposal is a regression target
  box_math::Weights weights;
  double iou_threshold = 0, score_gap = 0;
  bool done = false;  // empty output
};

inline SelfTaughtTargets prepare_self_taught_targets(const at::Tensor& boxes, const at::Tensor& scores,
                                                     double iou_threshold, double score_gap,
                                                     c10::ArrayRef<double> weights) {
  check_floating(boxes, "boxes");
  TORCH_CHECK(boxes.dim() == 3 && boxes.size(2) == 4, "boxes must have shape [B, J, 4], got ", boxes.sizes());
  check_floating(scores, "scores");
  TORCH_CHECK(scores.dim() == 3 && scores.size(0) == boxes.size(0) && scores.size(2) == boxes.size(1),
              "scores must have shape [B, P, J] with boxes [B, J, 4] = ", boxes.sizes(), ", got ", scores.sizes());
  check_same_device(boxes, "boxes", scores, "scores");
  SelfTaughtTargets p;
  p.weights = parse_weights(weights);
  p.iou_threshold = iou_threshold;
  p.score_gap = score_gap;
  p.boxes = boxes.contiguous();
  p.scores = scores.to(boxes.scalar_type()).contiguous();
  const int64_t b = boxes.size(0), j = boxes.size(1), n = scores.size(1);
  p.deltas = at::empty({b, n, j, 4}, boxes.options());
  p.target_weights = at::empty({b, n, j}, boxes.options());
  p.done = p.target_weights.numel() == 0;
  return p;
}

template <typename Kernels>
std::tuple<at::Tensor, at::Tensor> self_taught_targets_entry(const at::Tensor& boxes, const at::Tensor& scores,
                                                             double iou_threshold, double score_gap,
                                                             c10::ArrayRef<double> weights) {
  const SelfTaughtTargets p = prepare_self_taught_targets(boxes, scores, iou_threshold, score_gap, weights);
  if (!p.done) Kernels::run(p);
  return {p.deltas, p.target_weights};
}

// Registers the op with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_self_taught_targets(torch::Library& m) {
  m.impl("self_taught_targets", &self_taught_targets_entry<Kernels>);
}

}  // namespace dapo_fast
