// Greedy hard-negative selection math shared by the CPU and CUDA kernels (QueryMatch).
//
// For text b, the candidates are the N queries of every other image a. difficulty is the
// min-max normalised <query, text_b> within each image; uniqueness starts at 1; every step picks
// argmax(difficulty * uniqueness) per image (first index on ties) and then lowers uniqueness
// ("pairwise": min with (1 - cos)/2 to the queries picked in that step, QueryMatch's code) or
// recomputes it ("paper": min-max over each image of -max cos to everything picked so far).
// NaN follows the reference's torch ops: min/max propagate it, so a group holding a NaN
// normalises to all 1 (its span is not > 0), and the argmax takes the first NaN score.
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {
namespace hard_negative_math {

enum Uniqueness : int { kPairwise = 0, kPaper = 1 };

// (x - lo) / (hi - lo), and 1 when all values of the group are equal
template <typename T>
HOST_DEVICE T minmax(T x, T lo, T hi) {
  const T span = hi - lo;
  return span > T(0) ? (x - lo) / span : T(1);
}

// out[i] = minmax(v[i]) over one image's n candidates, v = x or -x (negate)
template <typename T>
HOST_DEVICE void normalise_group(const T* x, long long n, bool negate, T* out) {
  T lo = negate ? -x[0] : x[0], hi = lo;
  for (long long i = 1; i < n; ++i) {
    const T v = negate ? -x[i] : x[i];
    lo = minimum(v, lo);
    hi = maximum(v, hi);
  }
  for (long long i = 0; i < n; ++i) out[i] = minmax(negate ? -x[i] : x[i], lo, hi);
}

// (1 - cos) / 2 clamped to [0, 1]; a query against itself is exactly 0
template <typename T>
HOST_DEVICE T pair_distance(T cos, bool same_query) {
  if (same_query) return T(0);
  const T d = (T(1) - cos) / T(2);
  return d < T(0) ? T(0) : (d > T(1) ? T(1) : d);
}

// cosine used by "paper": a query against itself is exactly 1
template <typename T>
HOST_DEVICE T pair_cos(T cos, bool same_query) {
  return same_query ? T(1) : cos;
}

// argmax over i < n of difficulty[i] * uniqueness[i], first index on ties (torch.argmax: a NaN
// score beats every number, the first NaN wins)
template <typename T>
HOST_DEVICE long long pick_candidate(const T* difficulty, const T* uniqueness, long long n) {
  long long best = 0;
  T best_score = difficulty[0] * uniqueness[0];
  for (long long i = 1; i < n; ++i) {
    const T score = difficulty[i] * uniqueness[i];
    if (score > best_score || (score != score && best_score == best_score)) {
      best_score = score;
      best = i;
    }
  }
  return best;
}

HOST_DEVICE long long other_image(long long b, long long j) { return j < b ? j : j + 1; }

}  // namespace hard_negative_math
}  // namespace dapo_fast
