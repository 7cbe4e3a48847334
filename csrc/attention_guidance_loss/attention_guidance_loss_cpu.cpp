// Attention guidance loss (DAPO eq. 3), CPU: one pass over h and a per direction.
//
// Work is split into (sample, chunk of kChunk pixels) tasks (entity_map_loss_cpu.h). A task first
// sums the valid entities' maps into S (the chunk stays in L1/L2 while it is read again), then
// either adds its loss partials (fit, norm, total) into its own slot or writes the chunk's
// gradients. The per-sample loss adds the slots in chunk order, so results do not depend on the
// thread count. Partial sums use 16 lanes (cpu_vec::sum_sq) added into double per chunk.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
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
#include "attention_guidance_loss_common.h"
#include "attention_guidance_loss_prepare.h"

namespace dapo_fast {
namespace {

using namespace attention_guidance_math;
using namespace map_loss_cpu;

DAPO_CPU_CLONES void add_into(float* __restrict s, const float* __restrict x, int64_t n) {
  for (int64_t p = 0; p < n; ++p) s[p] += x[p];
}
DAPO_CPU_CLONES void add_into(double* __restrict s, const double* __restrict x, int64_t n) {
  for (int64_t p = 0; p < n; ++p) s[p] += x[p];
}

// grad_h = ch (h - a) (optional); grad_a = -ch (h - a) + ca a + cs S
template <typename T>
__attribute__((always_inline)) inline void guidance_grad_impl(const T* __restrict h, const T* __restrict a,
                                                              const T* __restrict s, T ch, T ca, T cs,
                                                              T* __restrict gh, T* __restrict ga, int64_t n) {
  for (int64_t p = 0; p < n; ++p) ga[p] = ch * (a[p] - h[p]) + ca * a[p] + cs * s[p];
  if (gh != nullptr)
    for (int64_t p = 0; p < n; ++p) gh[p] = ch * (h[p] - a[p]);
}

DAPO_CPU_CLONES void guidance_grad_chunk(const float* h, const float* a, const float* s, float ch, float ca, float cs,
                                         float* gh, float* ga, int64_t n) {
  guidance_grad_impl(h, a, s, ch, ca, cs, gh, ga, n);
}
DAPO_CPU_CLONES void guidance_grad_chunk(const double* h, const double* a, const double* s, double ch, double ca,
                                         double cs, double* gh, double* ga, int64_t n) {
  guidance_grad_impl(h, a, s, ch, ca, cs, gh, ga, n);
}

std::vector<int> valid_counts(const bool* valid, const MapSizes& s) {
  std::vector<int> counts(s.batch, 0);
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t e = 0; e < s.entities; ++e) counts[b] += valid[b * s.entities + e] ? 1 : 0;
  return counts;
}

// The chunk's S = sum of the valid entities' a (zeros when none is valid).
template <typename T>
void chunk_sum(const T* a, const bool* valid, const MapSizes& s, int64_t b, int64_t p0, int64_t n, T* S) {
  std::fill(S, S + n, T(0));
  for (int64_t e = 0; e < s.entities; ++e)
    if (valid[b * s.entities + e]) add_into(S, a + (b * s.entities + e) * s.pixels + p0, n);
}

// partials[(b * chunks + c) * 3 + {0,1,2}] = (fit, norm, total) of that chunk
template <typename T>
void guidance_forward(const T* h, const T* a, const bool* valid, const MapSizes& s, std::vector<double>& partials) {
  partials.assign(static_cast<size_t>(s.batch * s.chunks * 3), 0.0);
  dapo_fast::parallel_for(0, s.batch * s.chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> S(kChunk);
    for (int64_t task = begin; task < end; ++task) {
      const auto [b, p0, n] = chunk_task(s, task);
      chunk_sum(a, valid, s, b, p0, n, S.data());
      double fit = 0, norm = 0;
      for (int64_t e = 0; e < s.entities; ++e) {
        if (!valid[b * s.entities + e]) continue;
        const int64_t off = (b * s.entities + e) * s.pixels + p0;
        fit += cpu_vec::sum_sq(h + off, a + off, n);
        norm += cpu_vec::sum_sq(a + off, static_cast<const T*>(nullptr), n);
      }
      double* slot = partials.data() + task * 3;
      slot[0] = fit;
      slot[1] = norm;
      slot[2] = cpu_vec::sum_sq(S.data(), static_cast<const T*>(nullptr), n);
    }
  });
}

struct CpuKernels {
  static constexpr KernelTypes kTypes = KernelTypes::FloatOrDouble;
  static at::Tensor forward(const MapLoss& p);
  static void backward(const AttentionGuidanceBackward& p);
};

// The per-sample loss in double.
at::Tensor CpuKernels::forward(const MapLoss& p) {
  const MapSizes s = map_sizes(p.s);
  at::Tensor loss = at::empty({s.batch}, p.h.options().dtype(at::kDouble));
  const std::vector<int> counts = valid_counts(p.valid.data_ptr<bool>(), s);
  std::vector<double> partials;
  AT_DISPATCH_FLOATING_TYPES(p.h.scalar_type(), "attention_guidance_loss_cpu", [&] {
    guidance_forward<scalar_t>(p.h.data_ptr<scalar_t>(), p.a.data_ptr<scalar_t>(), p.valid.data_ptr<bool>(), s,
                               partials);
  });
  double* out = loss.data_ptr<double>();
  for (int64_t b = 0; b < s.batch; ++b) {
    double fit = 0, norm = 0, total = 0;
    for (int64_t c = 0; c < s.chunks; ++c) {
      const double* slot = partials.data() + (b * s.chunks + c) * 3;
      fit += slot[0];
      norm += slot[1];
      total += slot[2];
    }
    out[b] = guidance_loss(fit, norm, total, counts[b]);
  }
  return loss;
}

void CpuKernels::backward(const AttentionGuidanceBackward& p) {
  const MapSizes s = map_sizes(p.in.s);
  const std::vector<int> counts = valid_counts(p.in.valid.data_ptr<bool>(), s);
  AT_DISPATCH_FLOATING_TYPES(p.in.h.scalar_type(), "attention_guidance_loss_backward_cpu", [&] {
    const scalar_t* hp = p.in.h.data_ptr<scalar_t>();
    const scalar_t* ap = p.in.a.data_ptr<scalar_t>();
    const bool* vp = p.in.valid.data_ptr<bool>();
    const double* g = p.in.grad.data_ptr<double>();
    scalar_t* gap = p.grad_a.data_ptr<scalar_t>();
    scalar_t* ghp = p.heatmaps_grad ? p.grad_h.data_ptr<scalar_t>() : nullptr;
    dapo_fast::parallel_for(0, s.batch * s.chunks, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> S(kChunk);
      for (int64_t task = begin; task < end; ++task) {
        const auto [b, p0, n] = chunk_task(s, task);
        const GuidanceGrad c = guidance_grad(g[b], counts[b]);
        chunk_sum(ap, vp, s, b, p0, n, S.data());
        for (int64_t e = 0; e < s.entities; ++e) {
          const int64_t off = (b * s.entities + e) * s.pixels + p0;
          // with fewer than two valid entities the loss is 0 whatever the maps hold: gradient 0,
          // not 0 * (a NaN or Inf in them)
          if (vp[b * s.entities + e] && counts[b] >= 2) {
            guidance_grad_chunk(hp + off, ap + off, S.data(), static_cast<scalar_t>(c.ch), static_cast<scalar_t>(c.ca),
                                static_cast<scalar_t>(c.cs), ghp != nullptr ? ghp + off : nullptr, gap + off, n);
          } else {
            std::fill(gap + off, gap + off + n, scalar_t(0));
            if (ghp != nullptr) std::fill(ghp + off, ghp + off + n, scalar_t(0));
          }
        }
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_attention_guidance_loss<CpuKernels>(m); }

}  // namespace dapo_fast
