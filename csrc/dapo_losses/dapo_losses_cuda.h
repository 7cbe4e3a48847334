// Raw-pointer launchers of the DAPO loss CUDA kernels (plain C++ header).
#pragma once
#include <cstdint>

#include "../common/dtype.h"

namespace dapo_fast {

struct MapLossSizes {
  int64_t batch, entities, pixels;
};

// h, a: contiguous [B, E, P]; valid: bool [B, E]; partials: double workspace of
// partial_slots(s) values; loss: [B] of the input dtype. Deterministic (fixed-order sums).
int64_t map_loss_chunks(const MapLossSizes& s);
void attention_guidance_loss_cuda_launch(DType dtype, const void* h, const void* a, const bool* valid,
                                         double* partials, void* loss, const MapLossSizes& s, void* stream);
// grad: [B] double. grad_h may be null (not wanted).
void attention_guidance_loss_backward_cuda_launch(DType dtype, const double* grad, const void* h, const void* a,
                                                  const bool* valid, void* grad_h, void* grad_a,
                                                  const MapLossSizes& s, void* stream);
void diffusion_guided_loss_cuda_launch(DType dtype, const void* h, const void* a, const bool* valid,
                                       double* partials, void* loss, const MapLossSizes& s, void* stream);
void diffusion_guided_loss_backward_cuda_launch(DType dtype, const double* grad, const void* h, const void* a,
                                                const bool* valid, void* grad_h, const MapLossSizes& s,
                                                void* stream);

}  // namespace dapo_fast
