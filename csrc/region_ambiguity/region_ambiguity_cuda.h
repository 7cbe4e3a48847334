// Raw-pointer launcher of the region_ambiguity CUDA kernel (no torch or CUDA types). All tensors
// are contiguous; masks are bytes (bool / uint8) when masks_are_bytes, else of the response
// dtype; valid is bool.
#pragma once
#include <cstdint>

#include "../common/dtype.h"
#include "../common/proposal_masks.h"

namespace dapo_fast {

// field may be null (no gradient wanted).
void region_ambiguity_cuda_launch(DType dtype, bool masks_are_bytes, const void* response, const void* masks,
                                  const bool* valid, void* ambiguity, int64_t* foreground, void* field,
                                  const MaskSizes& n, int variant, double eps, void* stream);

}  // namespace dapo_fast
