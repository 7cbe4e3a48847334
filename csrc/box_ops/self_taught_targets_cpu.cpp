// self_taught_targets CPU kernel: parallel over (image, phrase); each task owns its output rows.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "box_ops_checks.h"

namespace dapo_fast {
namespace {

std::tuple<at::Tensor, at::Tensor> self_taught_targets_cpu(const at::Tensor& boxes_in, const at::Tensor& scores_in,
                                                           double iou_threshold, double score_gap,
                                                           c10::ArrayRef<double> w) {
  check_floating(boxes_in, "boxes");
  TORCH_CHECK(boxes_in.dim() == 3 && boxes_in.size(2) == 4, "boxes must have shape [B, J, 4], got ", boxes_in.sizes());
  check_floating(scores_in, "scores");
  TORCH_CHECK(scores_in.dim() == 3 && scores_in.size(0) == boxes_in.size(0) && scores_in.size(2) == boxes_in.size(1),
              "scores must have shape [B, P, J] with boxes [B, J, 4] = ", boxes_in.sizes(), ", got ", scores_in.sizes());
  check_same_device(boxes_in, "boxes", scores_in, "scores");
  const box_math::Weights wt = parse_weights(w);
  const at::Tensor boxes = boxes_in.contiguous();
  const at::Tensor scores = scores_in.to(boxes.scalar_type()).contiguous();
  const int64_t b = boxes.size(0), j = boxes.size(1), p = scores.size(1);
  at::Tensor deltas = at::empty({b, p, j, 4}, boxes.options());
  at::Tensor weights = at::empty({b, p, j}, boxes.options());
  if (weights.numel() == 0) return {deltas, weights};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, boxes.scalar_type(), "self_taught_targets_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* pbox = boxes.data_ptr<scalar_t>();
    const scalar_t* pscore = scores.data_ptr<scalar_t>();
    scalar_t* pd = deltas.data_ptr<scalar_t>();
    scalar_t* pw = weights.data_ptr<scalar_t>();
    at::parallel_for(0, b * p, 16, [&](int64_t begin, int64_t end) {
      for (int64_t bp = begin; bp < end; ++bp) {
        const int64_t img = bp / p;
        const scalar_t* s = pscore + bp * j;
        const scalar_t* bx = pbox + img * j * 4;
        // pseudo ground truth: most confident proposal, lowest index on ties (NaN counts as max, like argmax)
        int64_t best = 0;
        for (int64_t k = 1; k < j; ++k) {
          const acc_t v = static_cast<acc_t>(s[k]), cur = static_cast<acc_t>(s[best]);
          if (cur != cur) break;
          if (v > cur || v != v) best = k;
        }
        acc_t gt[4];
        for (int c = 0; c < 4; ++c) gt[c] = static_cast<acc_t>(bx[best * 4 + c]);
        const acc_t best_score = static_cast<acc_t>(s[best]);
        for (int64_t k = 0; k < j; ++k) {
          acc_t box[4], d[4] = {0, 0, 0, 0};
          for (int c = 0; c < 4; ++c) box[c] = static_cast<acc_t>(bx[k * 4 + c]);
          const bool keep = k != best && box_math::iou(box, gt) >= static_cast<acc_t>(iou_threshold) &&
                            best_score - static_cast<acc_t>(s[k]) >= static_cast<acc_t>(score_gap);
          if (keep) box_math::encode(box, gt, wt, d);
          scalar_t* out = pd + (bp * j + k) * 4;
          for (int c = 0; c < 4; ++c) out[c] = static_cast<scalar_t>(d[c]);
          pw[bp * j + k] = static_cast<scalar_t>(keep ? 1 : 0);
        }
      }
    });
  });
  return {deltas, weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { m.impl("self_taught_targets", &self_taught_targets_cpu); }

}  // namespace dapo_fast
