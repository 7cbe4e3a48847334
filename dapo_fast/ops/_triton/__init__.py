"""Triton kernels. They JIT on CUDA; on a CPU machine they run under TRITON_INTERPRET=1 (set it
before triton is imported), which is how the tests check them."""
try:
    import triton  # noqa: F401
    import triton.language  # noqa: F401

    AVAILABLE = True
except ImportError:
    AVAILABLE = False
