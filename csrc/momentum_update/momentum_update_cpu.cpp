// Multi-tensor EMA, CPU: every (teacher, student) pair is cut into fixed chunks and one
// parallel_for walks all chunks of all tensors, so a model of hundreds of small parameters
// costs one dispatch instead of one per tensor. Each chunk is owned by one thread.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/cpu_clones.h"
#include "../common/parallel.h"
#include "momentum_update_prepare.h"
#include "momentum_update_common.h"

namespace dapo_fast {
namespace {

using momentum_math::ema;

DAPO_CPU_CLONES void ema_loop(int64_t n, float* __restrict t, const float* __restrict s, float m, float one_m) {
  for (int64_t i = 0; i < n; ++i) t[i] = ema(t[i], s[i], m, one_m);
}
DAPO_CPU_CLONES void ema_loop(int64_t n, double* __restrict t, const double* __restrict s, double m, double one_m) {
  for (int64_t i = 0; i < n; ++i) t[i] = ema(t[i], s[i], m, one_m);
}
template <typename scalar_t>
void ema_loop(int64_t n, scalar_t* t, const scalar_t* s, float m, float one_m) {  // half / bfloat16
  for (int64_t i = 0; i < n; ++i)
    t[i] = static_cast<scalar_t>(ema(static_cast<float>(t[i]), static_cast<float>(s[i]), m, one_m));
}

struct Chunk {
  int64_t tensor, begin, end;
};

constexpr int64_t kChunk = 1 << 15;
constexpr int64_t kParallelElements = 1 << 20;

struct CpuKernels {
  static void run(at::TensorList teacher, const MomentumUpdate& p);
};

void CpuKernels::run(at::TensorList teacher, const MomentumUpdate& p) {
  const std::vector<at::Tensor>& students = p.students;
  const double momentum = p.momentum;
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < teacher.size(); ++i) {
    if (!students[i].defined()) continue;
    const int64_t n = teacher[i].numel();
    for (int64_t b = 0; b < n; b += kChunk) chunks.push_back({static_cast<int64_t>(i), b, std::min(n, b + kChunk)});
  }
  // each task gets at least kParallelElements elements: below that, waking a second thread costs
  // more than the update (and a model of many tiny tensors runs inline on the calling thread)
  int64_t total = 0;
  for (const Chunk& ch : chunks) total += ch.end - ch.begin;
  const int64_t n_chunks = static_cast<int64_t>(chunks.size());
  const int64_t grain = total > 0 ? std::max<int64_t>(1, n_chunks * kParallelElements / total) : 1;
  dapo_fast::parallel_for(0, n_chunks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const Chunk& ch = chunks[c];
      const at::Tensor& t = teacher[ch.tensor];
      const at::Tensor& s = students[ch.tensor];
      if (ch.end == ch.begin) continue;
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "momentum_update_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        ema_loop(ch.end - ch.begin, t.data_ptr<scalar_t>() + ch.begin, s.data_ptr<scalar_t>() + ch.begin,
                 static_cast<acc_t>(momentum), static_cast<acc_t>(1.0 - momentum));
      });
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_momentum_update<CpuKernels>(m); }

}  // namespace dapo_fast
