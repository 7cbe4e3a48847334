"""Backend choice shared by every op: ``backend=`` argument or the ``use_backend`` context.

auto      the compiled kernel for the tensor's device; Triton on CUDA for ops that only have a
          Triton kernel; the reference when ``_C`` was not built (with a one-time warning)
cpu       C++ kernel (CPU tensors)
cuda      CUDA kernel (CUDA tensors, CUDA build)
triton    Triton kernel (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1)
reference pure PyTorch (any device; the spec)
"""
import contextlib
import os

import torch

from dapo_fast import _extension

BACKENDS = ("auto", "cpu", "cuda", "triton", "reference")

# A plain module global (not a ContextVar) so torch.compile reads it without a graph break.
_default_backend = "auto"


@contextlib.contextmanager
def use_backend(name: str):
    """Run the ops inside the block with ``backend=name`` unless a call passes its own."""
    global _default_backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    previous, _default_backend = _default_backend, name
    try:
        yield
    finally:
        _default_backend = previous


def triton_available() -> bool:
    from dapo_fast.ops import _triton

    return _triton.AVAILABLE


def resolve(backend: str, device: torch.device, *, has_cpp: bool = True, has_triton: bool = True) -> str:
    """Turn ``backend`` (possibly "auto") into the backend that will run, or raise ValueError."""
    if backend == "auto":
        backend = _default_backend
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device.type == "cpu" and has_cpp:
            if _extension.HAS_C:
                return "cpu"
            _extension.warn_missing_once()
            return "reference"
        if device.type == "cuda":
            if has_cpp and _extension.has_cuda_kernels():
                return "cuda"
            if has_triton and triton_available():
                return "triton"
        return "reference"
    if backend == "cpu":
        if not has_cpp:
            raise ValueError("backend='cpu': this op has no C++ kernel")
        if device.type != "cpu":
            raise ValueError(f"backend='cpu' needs CPU tensors, got tensors on {device}")
        if not _extension.HAS_C:
            raise RuntimeError(f"backend='cpu' needs the compiled dapo_fast._C: {_extension.build_info()['error']}")
    elif backend == "cuda":
        if not has_cpp:
            raise ValueError("backend='cuda': this op has no CUDA kernel")
        if device.type != "cuda":
            raise ValueError(f"backend='cuda' needs CUDA tensors, got tensors on {device}")
        if not _extension.has_cuda_kernels():
            raise RuntimeError("backend='cuda': dapo_fast._C was built without CUDA (rebuild with FORCE_CUDA=1)")
    elif backend == "triton":
        if not has_triton:
            raise ValueError("backend='triton': this op has no Triton kernel")
        if not triton_available():
            raise RuntimeError("backend='triton' needs the triton package")
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1), got tensors on {device}")
    return backend
