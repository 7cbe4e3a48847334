// DAPO loss CPU kernels: one pass over h and a per direction.
//
// Work is split into (sample, chunk of 1024 pixels) tasks. A task first sums the valid
// entities' maps into S (the chunk stays in L1/L2 while it is read again), then either adds
// its loss partials (fit, norm, total) into its own slot or writes the chunk's gradients. The
// per-sample loss adds the slots in chunk order, so results do not depend on the thread count.
// Partial sums use 16 float lanes (vectorisable without reassociation flags) and are added
// into double per chunk.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/cpu_clones.h"
#include "dapo_losses_checks.h"
#include "dapo_losses_common.h"

namespace dapo_fast {
namespace {

using namespace dapo_losses_math;

constexpr int64_t kChunk = 1024;
constexpr int kLanes = 16;

// sum_p (x[p] - y[p])^2, or sum_p x[p]^2 when y is null
template <typename T>
__attribute__((always_inline)) inline double sum_sq_impl(const T* __restrict x, const T* __restrict y, int64_t n) {
  T lanes[kLanes] = {};
  int64_t p = 0;
  if (y != nullptr) {
    for (; p + kLanes <= n; p += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const T diff = x[p + j] - y[p + j];
        lanes[j] += diff * diff;
      }
  } else {
    for (; p + kLanes <= n; p += kLanes)
      for (int j = 0; j < kLanes; ++j) lanes[j] += x[p + j] * x[p + j];
  }
  double sum = 0;
  for (int j = 0; j < kLanes; ++j) sum += static_cast<double>(lanes[j]);
  for (; p < n; ++p) {
    const double diff = static_cast<double>(x[p]) - (y != nullptr ? static_cast<double>(y[p]) : 0.0);
    sum += diff * diff;
  }
  return sum;
}

DAPO_CPU_CLONES double sum_sq(const float* x, const float* y, int64_t n) { return sum_sq_impl(x, y, n); }
DAPO_CPU_CLONES double sum_sq(const double* x, const double* y, int64_t n) { return sum_sq_impl(x, y, n); }

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

DAPO_CPU_CLONES void scaled_diff(const float* __restrict h, const float* __restrict a, float c, float* __restrict g,
                                 int64_t n) {
  for (int64_t p = 0; p < n; ++p) g[p] = c * (h[p] - a[p]);
}
DAPO_CPU_CLONES void scaled_diff(const double* __restrict h, const double* __restrict a, double c,
                                 double* __restrict g, int64_t n) {
  for (int64_t p = 0; p < n; ++p) g[p] = c * (h[p] - a[p]);
}

struct MapSizes {
  int64_t batch, entities, pixels, chunks;
};

MapSizes map_sizes(const at::Tensor& h) {
  const int64_t pixels = h.size(2) * h.size(3);
  return {h.size(0), h.size(1), pixels, (pixels + kChunk - 1) / kChunk};
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
  at::parallel_for(0, s.batch * s.chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> S(kChunk);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / s.chunks;
      const int64_t p0 = (task % s.chunks) * kChunk;
      const int64_t n = std::min(kChunk, s.pixels - p0);
      chunk_sum(a, valid, s, b, p0, n, S.data());
      double fit = 0, norm = 0;
      for (int64_t e = 0; e < s.entities; ++e) {
        if (!valid[b * s.entities + e]) continue;
        const int64_t off = (b * s.entities + e) * s.pixels + p0;
        fit += sum_sq(h + off, a + off, n);
        norm += sum_sq(a + off, static_cast<const T*>(nullptr), n);
      }
      double* slot = partials.data() + task * 3;
      slot[0] = fit;
      slot[1] = norm;
      slot[2] = sum_sq(S.data(), static_cast<const T*>(nullptr), n);
    }
  });
}

at::Tensor attention_guidance_loss_cpu(const at::Tensor& heatmaps, const at::Tensor& attn,
                                       const at::Tensor& entity_valid) {
  check_map_loss_args(heatmaps, attn, "attn", entity_valid);
  const at::ScalarType type = heatmaps.scalar_type();
  const at::ScalarType compute = type == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor h = heatmaps.to(compute).contiguous(), a = attn.to(compute).contiguous();
  const at::Tensor valid = entity_valid.contiguous();
  const MapSizes s = map_sizes(h);
  at::Tensor loss = at::empty({s.batch}, h.options().dtype(at::kDouble));
  const std::vector<int> counts = valid_counts(valid.data_ptr<bool>(), s);
  std::vector<double> partials;
  AT_DISPATCH_FLOATING_TYPES(compute, "attention_guidance_loss_cpu", [&] {
    guidance_forward<scalar_t>(h.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), valid.data_ptr<bool>(), s, partials);
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
  return loss.to(type);
}

std::tuple<at::Tensor, at::Tensor> attention_guidance_loss_backward_cpu(const at::Tensor& grad_in,
                                                                        const at::Tensor& heatmaps,
                                                                        const at::Tensor& attn,
                                                                        const at::Tensor& entity_valid,
                                                                        bool heatmaps_grad) {
  check_map_loss_args(heatmaps, attn, "attn", entity_valid);
  check_loss_grad(grad_in, heatmaps);
  const at::ScalarType type = heatmaps.scalar_type();
  const at::ScalarType compute = type == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor h = heatmaps.to(compute).contiguous(), a = attn.to(compute).contiguous();
  const at::Tensor valid = entity_valid.contiguous();
  const at::Tensor grad = grad_in.to(at::kDouble).contiguous();
  const MapSizes s = map_sizes(h);
  at::Tensor ga = at::empty(h.sizes(), h.options());
  at::Tensor gh = heatmaps_grad ? at::empty(h.sizes(), h.options()) : at::empty({0}, h.options());
  const std::vector<int> counts = valid_counts(valid.data_ptr<bool>(), s);
  AT_DISPATCH_FLOATING_TYPES(compute, "attention_guidance_loss_backward_cpu", [&] {
    const scalar_t* hp = h.data_ptr<scalar_t>();
    const scalar_t* ap = a.data_ptr<scalar_t>();
    const bool* vp = valid.data_ptr<bool>();
    const double* g = grad.data_ptr<double>();
    scalar_t* gap = ga.data_ptr<scalar_t>();
    scalar_t* ghp = heatmaps_grad ? gh.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, s.batch * s.chunks, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> S(kChunk);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / s.chunks;
        const int64_t p0 = (task % s.chunks) * kChunk;
        const int64_t n = std::min(kChunk, s.pixels - p0);
        const GuidanceGrad c = guidance_grad(g[b], counts[b]);
        chunk_sum(ap, vp, s, b, p0, n, S.data());
        for (int64_t e = 0; e < s.entities; ++e) {
          const int64_t off = (b * s.entities + e) * s.pixels + p0;
          if (vp[b * s.entities + e]) {
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
  return {gh.to(type), ga.to(type)};
}

at::Tensor diffusion_guided_loss_cpu(const at::Tensor& heatmaps, const at::Tensor& targets,
                                     const at::Tensor& entity_valid) {
  check_map_loss_args(heatmaps, targets, "targets", entity_valid);
  const at::ScalarType type = heatmaps.scalar_type();
  const at::ScalarType compute = type == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor h = heatmaps.to(compute).contiguous(), a = targets.to(compute).contiguous();
  const at::Tensor valid = entity_valid.contiguous();
  const MapSizes s = map_sizes(h);
  std::vector<double> partials(static_cast<size_t>(s.batch * s.entities), 0.0);
  AT_DISPATCH_FLOATING_TYPES(compute, "diffusion_guided_loss_cpu", [&] {
    const scalar_t* hp = h.data_ptr<scalar_t>();
    const scalar_t* ap = a.data_ptr<scalar_t>();
    const bool* vp = valid.data_ptr<bool>();
    at::parallel_for(0, s.batch * s.entities, 1, [&](int64_t begin, int64_t end) {
      for (int64_t be = begin; be < end; ++be)
        partials[be] = vp[be] ? sum_sq(hp + be * s.pixels, ap + be * s.pixels, s.pixels) : 0.0;
    });
  });
  at::Tensor loss = at::empty({s.batch}, h.options().dtype(at::kDouble));
  double* out = loss.data_ptr<double>();
  for (int64_t b = 0; b < s.batch; ++b) {
    double sum = 0;
    for (int64_t e = 0; e < s.entities; ++e) sum += partials[b * s.entities + e];
    out[b] = sum;
  }
  return loss.to(type);
}

at::Tensor diffusion_guided_loss_backward_cpu(const at::Tensor& grad_in, const at::Tensor& heatmaps,
                                              const at::Tensor& targets, const at::Tensor& entity_valid) {
  check_map_loss_args(heatmaps, targets, "targets", entity_valid);
  check_loss_grad(grad_in, heatmaps);
  const at::ScalarType type = heatmaps.scalar_type();
  const at::ScalarType compute = type == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor h = heatmaps.to(compute).contiguous(), a = targets.to(compute).contiguous();
  const at::Tensor valid = entity_valid.contiguous();
  const at::Tensor grad = grad_in.to(at::kDouble).contiguous();
  const MapSizes s = map_sizes(h);
  at::Tensor gh = at::empty(h.sizes(), h.options());
  AT_DISPATCH_FLOATING_TYPES(compute, "diffusion_guided_loss_backward_cpu", [&] {
    const scalar_t* hp = h.data_ptr<scalar_t>();
    const scalar_t* ap = a.data_ptr<scalar_t>();
    const bool* vp = valid.data_ptr<bool>();
    const double* g = grad.data_ptr<double>();
    scalar_t* ghp = gh.data_ptr<scalar_t>();
    at::parallel_for(0, s.batch * s.entities * s.chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t be = task / s.chunks;
        const int64_t p0 = (task % s.chunks) * kChunk;
        const int64_t n = std::min(kChunk, s.pixels - p0);
        const int64_t off = be * s.pixels + p0;
        if (vp[be])
          scaled_diff(hp + off, ap + off, static_cast<scalar_t>(2.0 * g[be / s.entities]), ghp + off, n);
        else
          std::fill(ghp + off, ghp + off + n, scalar_t(0));
      }
    });
  });
  return gh.to(type);
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) {
  m.impl("attention_guidance_loss", &attention_guidance_loss_cpu);
  m.impl("attention_guidance_loss_backward", &attention_guidance_loss_backward_cpu);
  m.impl("diffusion_guided_loss", &diffusion_guided_loss_cpu);
  m.impl("diffusion_guided_loss_backward", &diffusion_guided_loss_backward_cpu);
}

}  // namespace dapo_fast
