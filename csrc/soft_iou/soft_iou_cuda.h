// Raw-pointer launchers of the soft_iou CUDA kernels (no torch or CUDA types). All tensors are
// contiguous; masks are bytes (bool / uint8) when masks_are_bytes, else of the response dtype.
#pragma once
#include <cstdint>

#include "../common/dtype.h"
#include "../common/proposal_masks.h"

namespace dapo_fast {

void soft_iou_cuda_launch(DType dtype, bool masks_are_bytes, const void* response, const void* masks, void* out,
                          const MaskSizes& n, int variant, double eps, void* stream);
// coeffs: scratch of 2 * B * S * P doubles.
void soft_iou_backward_cuda_launch(DType dtype, bool masks_are_bytes, const void* grad, const void* response,
                                   const void* masks, double* coeffs, void* out, const MaskSizes& n, int variant,
                                   double eps, void* stream);

}  // namespace dapo_fast
