// false_negative_mask, CPU: BLAS tiles of region dot products (false_negative_mask_driver.h),
// then a threshold + OR-reduction per image pair. Each image pair (i < a) is owned by one task,
// which writes out[i, a, :] and out[a, i, :]: no races, no atomics.
// Branch-free selects on floats are only if-converted (and so vectorised) without trapping math.
#pragma GCC optimize("no-trapping-math")
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <vector>

#include "../common/cpu_clones.h"
#include "../common/parallel.h"
#include "false_negative_mask_prepare.h"
#include "false_negative_mask_driver.h"

namespace dapo_fast {
namespace {

using namespace false_negative_math;

// One K x K block: dot rows are regions of image i (stride ld), columns regions of image a.
// col_hit[l] |= OR_k hit(k, l); row_hit[k] = OR_l hit(k, l).
template <typename T>
inline void block_or_impl(int64_t k, const T* dot, int64_t ld, const T* inv_i, const T* inv_a, const uint8_t* valid_i,
                          const uint8_t* valid_a, T threshold, uint8_t* row_hit, uint8_t* col_hit) {
  for (int64_t r = 0; r < k; ++r) {
    if (!valid_i[r]) {
      row_hit[r] = 0;
      continue;
    }
    const T* row = dot + r * ld;
    const T scale = inv_i[r];
    uint8_t any = 0;
    for (int64_t c = 0; c < k; ++c) {
      const uint8_t hit = static_cast<uint8_t>(valid_a[c] & (row[c] * scale * inv_a[c] > threshold));
      col_hit[c] |= hit;
      any |= hit;
    }
    row_hit[r] = any;
  }
}

DAPO_CPU_CLONES void block_or(int64_t k, const float* dot, int64_t ld, const float* inv_i, const float* inv_a,
                              const uint8_t* valid_i, const uint8_t* valid_a, float threshold, uint8_t* row_hit,
                              uint8_t* col_hit) {
  block_or_impl(k, dot, ld, inv_i, inv_a, valid_i, valid_a, threshold, row_hit, col_hit);
}
void block_or(int64_t k, const double* dot, int64_t ld, const double* inv_i, const double* inv_a,
              const uint8_t* valid_i, const uint8_t* valid_a, double threshold, uint8_t* row_hit, uint8_t* col_hit) {
  block_or_impl(k, dot, ld, inv_i, inv_a, valid_i, valid_a, threshold, row_hit, col_hit);
}

template <typename T>
void tile_kernel_cpu(const FalseNegativeTile& t, at::Tensor& out, const T* inv_norm, const uint8_t* valid,
                     T threshold) {
  const T* dot = t.dot.data_ptr<T>();
  const int64_t ld = t.dot.stride(0), k = t.k, b = out.size(0);
  bool* o = out.data_ptr<bool>();
  static_assert(sizeof(bool) == sizeof(uint8_t), "bool is one byte");
  dapo_fast::parallel_for(0, t.ni * t.na, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> row_hit(k), col_hit(k);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = t.i0 + task / t.na, a = t.a0 + task % t.na;
      if (a <= i) continue;
      std::fill(col_hit.begin(), col_hit.end(), uint8_t(0));
      block_or(k, dot + (i - t.i0) * k * ld + (a - t.a0) * k, ld, inv_norm + i * k, inv_norm + a * k, valid + i * k,
               valid + a * k, threshold, row_hit.data(), col_hit.data());
      uint8_t* to_a = reinterpret_cast<uint8_t*>(o + (i * b + a) * k);  // out[i, a, :]
      uint8_t* to_i = reinterpret_cast<uint8_t*>(o + (a * b + i) * k);  // out[a, i, :]
      for (int64_t l = 0; l < k; ++l) to_a[l] = col_hit[l];
      for (int64_t l = 0; l < k; ++l) to_i[l] = row_hit[l];
    }
  });
}

constexpr int64_t kCpuTileRows = 1024;

struct CpuKernels {
  static at::Tensor tiles(const FalseNegativeMask& p) {
    const double threshold = p.threshold;
    return false_negative_mask_tiles(p.feats, kCpuTileRows, [&](const FalseNegativeTile& t, at::Tensor& out) {
      if (p.feats.scalar_type() == at::kDouble)
        tile_kernel_cpu<double>(t, out, p.inv_norm.data_ptr<double>(), p.valid.data_ptr<uint8_t>(), threshold);
      else
        tile_kernel_cpu<float>(t, out, p.inv_norm.data_ptr<float>(), p.valid.data_ptr<uint8_t>(),
                               static_cast<float>(threshold));
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_false_negative_mask<CpuKernels>(m); }

}  // namespace dapo_fast
