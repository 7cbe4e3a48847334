"""Builds dapo_fast._C: C++ CPU kernels always, CUDA kernels when available or forced.

Environment:
  FORCE_CUDA=1            build the CUDA kernels even without a visible GPU (needs nvcc / CUDA_HOME)
  FORCE_CUDA=0            never build them
  TORCH_CUDA_ARCH_LIST    CUDA architectures, e.g. "8.0;9.0" (read by torch.utils.cpp_extension)
  MAX_JOBS                parallel compile jobs (read by torch.utils.cpp_extension / ninja)
  DAPO_FAST_DEBUG=1       -O0 -g instead of -O3
"""
import glob
import os
import re

from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(ROOT, "dapo_fast", "version.py")) as f:
        return re.search(r'__version__\s*=\s*"([^"]+)"', f.read()).group(1)


def build_cuda():
    """torchvision's rule: CUDA torch + nvcc + a visible GPU, or FORCE_CUDA=1."""
    forced = os.environ.get("FORCE_CUDA")
    if forced is not None:
        return forced == "1"
    import torch

    return torch.version.cuda is not None and CUDA_HOME is not None and torch.cuda.is_available()


def is_cuda_source(path):
    # pure CUDA kernels (<op>_cuda.cu) and their tensor glue + registration (<op>_cuda_impl.cpp)
    return path.endswith(".cu") or path.endswith("_cuda_impl.cpp")


def extension():
    version = read_version()
    with_cuda = build_cuda()
    sources = sorted(glob.glob("csrc/**/*.cpp", recursive=True) + glob.glob("csrc/**/*.cu", recursive=True))
    sources = [s for s in sources if with_cuda or not is_cuda_source(s)]
    debug = os.environ.get("DAPO_FAST_DEBUG") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "") if with_cuda else ""
    defines = [f'-DDAPO_FAST_VERSION="{version}"', f'-DDAPO_FAST_CUDA_ARCHS="{archs}"']
    # -ffp-contract=off: a vector body and its scalar remainder round alike (no FMA in one and
    # not the other), so results do not depend on where a thread's block boundary falls.
    cxx = opt + ["-fopenmp", "-fno-math-errno", "-ffp-contract=off"] + defines
    kwargs = dict(
        name="dapo_fast._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        # -fopenmp links libgomp.so.1, the same soname torch ships, so one OpenMP runtime runs.
        extra_link_args=["-fopenmp"],
    )
    if with_cuda:
        return CUDAExtension(
            extra_compile_args={"cxx": cxx + ["-DWITH_CUDA"], "nvcc": opt + ["-DWITH_CUDA", "-lineinfo"]},
            define_macros=[("WITH_CUDA", None)],
            **kwargs,
        )
    return CppExtension(extra_compile_args={"cxx": cxx}, **kwargs)


setup(
    version=read_version(),
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
