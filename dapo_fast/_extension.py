"""Loads the compiled extension once; everything else asks this module whether it is there."""
import warnings

import torch  # noqa: F401  (loads libc10/libtorch, which _C links against)

try:
    from dapo_fast import _C  # noqa: F401  (import registers the ops with the dispatcher)

    HAS_C = True
    _IMPORT_ERROR = None
except ImportError as err:  # not built (e.g. a source checkout without `pip install`)
    _C = None
    HAS_C = False
    _IMPORT_ERROR = err

_warned = False


def build_info() -> dict:
    """Version, whether CUDA kernels were compiled (and for which archs), OpenMP threads, CPU ISA."""
    if not HAS_C:
        return {"version": None, "cuda": False, "cuda_archs": "", "openmp": False, "num_threads": 0,
                "cpu_vector_isa": None, "error": str(_IMPORT_ERROR)}
    return dict(_C.build_info())


def has_cuda_kernels() -> bool:
    return HAS_C and bool(_C.build_info()["cuda"])


def warn_missing_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"dapo_fast._C is not built ({_IMPORT_ERROR}); falling back to the pure-PyTorch reference ops. "
            "Run `pip install --no-build-isolation .` to compile the kernels.",
            RuntimeWarning,
            stacklevel=3,
        )
