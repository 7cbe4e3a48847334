// Diffusion-guided loss (DAPO eq. 5), CPU: one pass over h and a per direction. The forward is
// one task per (sample, entity) (cpu_vec::sum_sq: 16 lanes added into double), the per-sample sum
// adds them in entity order; the backward is (sample, entity, chunk of kChunk pixels) tasks
// (entity_map_loss_cpu.h). Results do not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/cpu_clones.h"
#include "../common/cpu_vec.h"
#include "../common/entity_map_loss_cpu.h"
#include "../common/parallel.h"
#include "diffusion_guided_loss_common.h"
#include "diffusion_guided_loss_prepare.h"

namespace dapo_fast {
namespace {

using namespace map_loss_cpu;

DAPO_CPU_CLONES void scaled_diff(const float* __restrict h, const float* __restrict a, float c, float* __restrict g,
                                 int64_t n) {
  for (int64_t p = 0; p < n; ++p) g[p] = c * (h[p] - a[p]);
}
DAPO_CPU_CLONES void scaled_diff(const double* __restrict h, const double* __restrict a, double c,
                                 double* __restrict g, int64_t n) {
  for (int64_t p = 0; p < n; ++p) g[p] = c * (h[p] - a[p]);
}

struct CpuKernels {
  static constexpr KernelTypes kTypes = KernelTypes::FloatOrDouble;
  static at::Tensor forward(const MapLoss& p);
  static void backward(const DiffusionGuidedBackward& p);
};

// The per-sample loss in double.
at::Tensor CpuKernels::forward(const MapLoss& p) {
  const MapSizes s = map_sizes(p.s);
  std::vector<double> partials(static_cast<size_t>(s.batch * s.entities), 0.0);
  AT_DISPATCH_FLOATING_TYPES(p.h.scalar_type(), "diffusion_guided_loss_cpu", [&] {
    const scalar_t* hp = p.h.data_ptr<scalar_t>();
    const scalar_t* ap = p.a.data_ptr<scalar_t>();
    const bool* vp = p.valid.data_ptr<bool>();
    dapo_fast::parallel_for(0, s.batch * s.entities, 1, [&](int64_t begin, int64_t end) {
      for (int64_t be = begin; be < end; ++be)
        partials[be] = vp[be] ? cpu_vec::sum_sq(hp + be * s.pixels, ap + be * s.pixels, s.pixels) : 0.0;
    });
  });
  at::Tensor loss = at::empty({s.batch}, p.h.options().dtype(at::kDouble));
  double* out = loss.data_ptr<double>();
  for (int64_t b = 0; b < s.batch; ++b) {
    double sum = 0;
    for (int64_t e = 0; e < s.entities; ++e) sum += partials[b * s.entities + e];
    out[b] = sum;
  }
  return loss;
}

void CpuKernels::backward(const DiffusionGuidedBackward& p) {
  const MapSizes s = map_sizes(p.in.s);
  AT_DISPATCH_FLOATING_TYPES(p.in.h.scalar_type(), "diffusion_guided_loss_backward_cpu", [&] {
    const scalar_t* hp = p.in.h.data_ptr<scalar_t>();
    const scalar_t* ap = p.in.a.data_ptr<scalar_t>();
    const bool* vp = p.in.valid.data_ptr<bool>();
    const double* g = p.in.grad.data_ptr<double>();
    scalar_t* ghp = p.grad_h.data_ptr<scalar_t>();
    dapo_fast::parallel_for(0, s.batch * s.entities * s.chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const auto [be, p0, n] = chunk_task(s, task);
        const int64_t off = be * s.pixels + p0;
        if (vp[be])
          scaled_diff(hp + off, ap + off, static_cast<scalar_t>(diffusion_guided_math::grad_scale(g[be / s.entities])),
                      ghp + off, n);
        else
          std::fill(ghp + off, ghp + off + n, scalar_t(0));
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_diffusion_guided_loss<CpuKernels>(m); }

}  // namespace dapo_fast
