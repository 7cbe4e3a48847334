// Raw-pointer launchers of the attention guidance loss CUDA kernels (plain C++ header).
#pragma once
#include <cstdint>

#include "../common/dtype.h"
#include "../common/entity_map_loss.h"

namespace dapo_fast {

// h, a: contiguous [B, E, P]; valid: bool [B, E]; partials: double scratch of
// 3 * B * map_loss_cuda_chunks(s) values; loss: [B] of the input dtype. Deterministic
// (fixed-order sums).
void attention_guidance_loss_cuda_launch(DType dtype, const void* h, const void* a, const bool* valid,
                                         double* partials, void* loss, const MapLossSizes& s, void* stream);
// grad: [B] double. grad_h may be null (not wanted).
void attention_guidance_loss_backward_cuda_launch(DType dtype, const double* grad, const void* h, const void* a,
                                                  const bool* valid, void* grad_h, void* grad_a,
                                                  const MapLossSizes& s, void* stream);

}  // namespace dapo_fast
