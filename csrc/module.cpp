// The Python module dapo_fast._C. Loading it runs the TORCH_LIBRARY registrations of every op
// in csrc/; the only Python-level function is build_info(). Ops are reached as
// torch.ops.dapo_fast.*, never as pybind functions (those would break torch.compile graphs).
#include <ATen/Parallel.h>
#include <pybind11/pybind11.h>

#include <string>

#ifndef DAPO_FAST_VERSION
#define DAPO_FAST_VERSION "unknown"
#endif
#ifndef DAPO_FAST_CUDA_ARCHS
#define DAPO_FAST_CUDA_ARCHS ""
#endif

namespace {

std::string runtime_vector_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // the same levels the DAPO_CPU_CLONES resolver picks between
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (avx512)";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (avx2+fma)";
  return "x86-64 (sse2)";
#elif defined(__aarch64__)
  return "neon";
#else
  return "scalar";
#endif
}

pybind11::dict build_info() {
  pybind11::dict info;
  info["version"] = DAPO_FAST_VERSION;
#ifdef WITH_CUDA
  info["cuda"] = true;
#else
  info["cuda"] = false;
#endif
  info["cuda_archs"] = DAPO_FAST_CUDA_ARCHS;
#ifdef _OPENMP
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
  info["num_threads"] = at::get_num_threads();
  // Hot loops are cloned per ISA (csrc/common/cpu_clones.h); this is the clone the CPU runs.
  info["cpu_vector_isa"] = runtime_vector_isa();
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "dapo_fast compiled kernels: importing registers the torch.ops.dapo_fast.* ops";
  m.def("build_info", &build_info, "Version, CUDA build flag and archs, OpenMP threads, CPU vector ISA in use.");
}
