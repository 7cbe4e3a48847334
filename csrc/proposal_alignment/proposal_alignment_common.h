// The tie rule of proposal_alignment, shared by its CUDA kernel and region_ambiguity's (whose
// foreground is the best-aligned proposal). The CPU kernel reaches the same pixel with a
// vectorised max (cpu_vec::max_product, NaN when a product is) and a scan for the first pixel
// equal to it (or the first NaN).
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {
namespace proposal_alignment_math {

// (value, index) order for the alignment argmax, torch.max's: a NaN beats every number (the
// first NaN wins), then the larger value, then the smaller index; index -1 is "nothing yet".
struct FirstMax {
  template <typename T>
  HOST_DEVICE bool operator()(T v, long long i, T best, long long best_i) const {
    if (i < 0) return false;
    if (best_i < 0) return true;
    const bool v_nan = v != v, best_nan = best != best;
    if (v_nan || best_nan) return v_nan && (!best_nan || i < best_i);
    return v > best || (v == best && i < best_i);
  }
};

}  // namespace proposal_alignment_math
}  // namespace dapo_fast
