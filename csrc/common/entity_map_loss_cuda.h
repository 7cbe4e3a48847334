// The forward glue shared by the CUDA entries of the losses over per-entity maps
// (attention_guidance_loss, diffusion_guided_loss): device guard, the partial-sums scratch, the
// loss buffer, the launch. Host C++ for the *_cuda_impl.cpp files.
#pragma once
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda_glue.h"
#include "entity_map_loss_prepare.h"

namespace dapo_fast {

// The per-sample loss [B] in the maps' type. `values` partial sums per (sample, chunk); launch is
// the op's launcher (h, a, valid, partials, loss, sizes, stream).
template <typename Launch>
at::Tensor map_loss_cuda_forward(const MapLoss& p, int64_t values, Launch launch) {
  c10::cuda::CUDAGuard guard(p.h.device());
  at::Tensor partials = at::empty({p.s.batch * map_loss_cuda_chunks(p.s) * values}, p.h.options().dtype(at::kDouble));
  at::Tensor loss = at::empty({p.s.batch}, p.h.options());
  launch(cuda_dtype(p.h), p.h.data_ptr(), p.a.data_ptr(), p.valid.data_ptr<bool>(), partials.data_ptr<double>(),
         loss.data_ptr(), p.s, current_cuda_stream());
  return loss;
}

}  // namespace dapo_fast
