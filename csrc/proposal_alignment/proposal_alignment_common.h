// The tie rule of proposal_alignment, shared by its CUDA kernel and region_ambiguity's (whose
// foreground is the best-aligned proposal). The CPU kernel reaches the same pixel with a
// vectorised max (cpu_vec::max_product, which skips NaN products) and a scan for the first pixel
// equal to it.
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {
namespace proposal_alignment_math {

// (value, index) order for the alignment argmax: larger value, then smaller index; a NaN product
// never wins; index -1 is "nothing yet".
struct FirstMax {
  template <typename T>
  HOST_DEVICE bool operator()(T v, long long i, T best, long long best_i) const {
    if (i < 0 || v != v) return false;
    return best_i < 0 || v > best || (v == best && i < best_i);
  }
};

}  // namespace proposal_alignment_math
}  // namespace dapo_fast
