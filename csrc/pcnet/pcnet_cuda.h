// Raw-pointer launchers of the PCNet CUDA kernels (no torch or CUDA types). All tensors are
// contiguous; masks are uint8 (bool) when masks_u8, else of the response dtype; valid is bool
// as uint8. Sizes: B images, S maps per image, P proposals, HW pixels.
#pragma once
#include <cstdint>

#include "../common/dtype.h"

namespace dapo_fast {

struct PcnetSizes {
  int64_t b, s, p, hw;
};

void proposal_alignment_cuda_launch(DType dtype, bool masks_u8, const void* response, const void* masks,
                                    const bool* valid, void* scores, int64_t* argmax, const PcnetSizes& n,
                                    void* stream);
// out zero-filled [B, S, HW]; one thread per map adds its proposals' gradients (deterministic).
void proposal_alignment_backward_cuda_launch(DType dtype, bool masks_u8, const void* grad, const int64_t* argmax,
                                             const void* masks, void* out, const PcnetSizes& n, void* stream);
void soft_iou_cuda_launch(DType dtype, bool masks_u8, const void* response, const void* masks, void* out,
                          const PcnetSizes& n, int variant, double eps, void* stream);
// coeffs: scratch of 2 * B * S * P doubles.
void soft_iou_backward_cuda_launch(DType dtype, bool masks_u8, const void* grad, const void* response,
                                   const void* masks, double* coeffs, void* out, const PcnetSizes& n, int variant,
                                   double eps, void* stream);
// field may be null (no gradient wanted).
void region_ambiguity_cuda_launch(DType dtype, bool masks_u8, const void* response, const void* masks,
                                  const bool* valid, void* ambiguity, int64_t* foreground, void* field,
                                  const PcnetSizes& n, int variant, double eps, void* stream);

}  // namespace dapo_fast
