// Math of the diffusion-guided loss (DAPO eq. 5), shared by the CPU and CUDA kernels:
// L_b = sum_{k valid} ||h_k - a_k||^2, so dL_b/dh_k = 2 g_b (h_k - a_k) for the upstream g_b
// (0 for invalid k).
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {
namespace diffusion_guided_math {

// The factor of (h - a) in the gradient for the upstream gradient g.
HOST_DEVICE double grad_scale(double upstream) { return 2.0 * upstream; }

}  // namespace diffusion_guided_math
}  // namespace dapo_fast
