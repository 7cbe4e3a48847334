// Argument checks shared by every op's C++ entry point. Messages name the argument so a user
// calling torch.ops.dapo_fast.* directly gets the same clarity as the Python front.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>

namespace dapo_fast {

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), name, " must be a floating-point tensor, got ",
              t.scalar_type());
}

inline void check_dim(const at::Tensor& t, int64_t dim, const char* name) {
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions, got shape ", t.sizes());
}

inline void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  TORCH_CHECK(a.device() == b.device(), a_name, " and ", b_name, " must be on the same device, got ", a.device(),
              " and ", b.device());
}

inline void check_same_dtype(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), a_name, " and ", b_name, " must have the same dtype, got ",
              a.scalar_type(), " and ", b.scalar_type());
}

constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();

// An integer the kernels hold in a 32-bit int must fit [lowest, hi]: a narrowing cast would
// silently wrap it (2^32 + 3 becomes 3, -2^31 - 1 becomes 2^31 - 1).
inline int checked_int(int64_t value, const char* name, int64_t lowest = std::numeric_limits<int32_t>::min(),
                       int64_t hi = kIntMax) {
  TORCH_CHECK(value >= lowest && value <= hi, name, " must be in [", lowest, ", ", hi,
              "] (the kernels hold it in a 32-bit int), got ", value);
  return static_cast<int>(value);
}

// The floating types a device's kernels are compiled for: some CPU kernels only for float and
// double (half / bfloat16 inputs then run in float), the CUDA kernels for all four.
enum class KernelTypes { FloatOrDouble, AllFloating };

inline at::ScalarType compute_type(at::ScalarType type, KernelTypes kernels) {
  return kernels == KernelTypes::AllFloating || type == at::kDouble ? type : at::kFloat;
}

// An output whose sizes come from integer arguments: refused, naming them, when its element
// count overflows int64, before an allocation is tried.
inline void check_output_numel(c10::IntArrayRef sizes, const char* what) {
  for (int64_t s : sizes) {
    TORCH_CHECK(s >= 0, what, " = ", sizes, " has a negative size");
    if (s == 0) return;
  }
  int64_t numel = 1;
  for (int64_t s : sizes) {
    TORCH_CHECK(numel <= std::numeric_limits<int64_t>::max() / s, what, " = ", sizes,
                " has more elements than an int64 counts");
    numel *= s;
  }
}

// True when the tensor is laid out NHWC in memory (and not also plainly contiguous, which
// happens for C == 1 or H == W == 1). The Python fake impls use the same rule.
inline bool is_channels_last(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

}  // namespace dapo_fast
