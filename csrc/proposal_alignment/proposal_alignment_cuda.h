// Raw-pointer launchers of the proposal_alignment CUDA kernels (no torch or CUDA types). All
// tensors are contiguous; masks are bytes (bool / uint8) when masks_are_bytes, else of the
// response dtype; valid is bool.
#pragma once
#include <cstdint>

#include "../common/dtype.h"
#include "../common/proposal_masks.h"

namespace dapo_fast {

void proposal_alignment_cuda_launch(DType dtype, bool masks_are_bytes, const void* response, const void* masks,
                                    const bool* valid, void* scores, int64_t* argmax, const MaskSizes& n,
                                    void* stream);
// out zero-filled [B, S, HW]; one thread per map adds its proposals' gradients (deterministic).
void proposal_alignment_backward_cuda_launch(DType dtype, bool masks_are_bytes, const void* grad,
                                             const int64_t* argmax, const void* masks, void* out,
                                             const MaskSizes& n, void* stream);

}  // namespace dapo_fast
