// self_taught_targets CPU kernel: parallel over (image, phrase); each task owns its output rows.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "../common/grain.h"
#include "../common/parallel.h"
#include "self_taught_targets_common.h"
#include "self_taught_targets_prepare.h"

namespace dapo_fast {
namespace {

struct CpuKernels {
  static void run(const SelfTaughtTargets& prepared);
};

void CpuKernels::run(const SelfTaughtTargets& prepared) {
  const at::Tensor &boxes = prepared.boxes, &scores = prepared.scores;
  const at::Tensor &deltas = prepared.deltas, &weights = prepared.target_weights;
  const box_math::Weights& wt = prepared.weights;
  const int64_t b = boxes.size(0), j = boxes.size(1), p = scores.size(1);
  const self_taught_math::Rule& rule = prepared.rule;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, boxes.scalar_type(), "self_taught_targets_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* pbox = boxes.data_ptr<scalar_t>();
    const scalar_t* pscore = scores.data_ptr<scalar_t>();
    scalar_t* pd = deltas.data_ptr<scalar_t>();
    scalar_t* pw = weights.data_ptr<scalar_t>();
    dapo_fast::parallel_for(0, b * p, grain_for(40 * j), [&](int64_t begin, int64_t end) {
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
          const bool keep =
              k != best && self_taught_math::is_target(box, gt, static_cast<acc_t>(s[k]), best_score, rule);
          if (keep) box_math::encode(box, gt, wt, d);
          scalar_t* out = pd + (bp * j + k) * 4;
          for (int c = 0; c < 4; ++c) out[c] = static_cast<scalar_t>(d[c]);
          pw[bp * j + k] = static_cast<scalar_t>(keep ? 1 : 0);
        }
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_self_taught_targets<CpuKernels>(m); }

}  // namespace dapo_fast
