"""dapo_fast: fast, correct PyTorch ops and a training stack for weakly supervised visual grounding.

Importing the package loads the compiled kernels (``dapo_fast._C``) when they were built,
which registers every op as ``torch.ops.dapo_fast.*``. The public ops live in ``dapo_fast.ops``.
"""
from dapo_fast._extension import HAS_C, build_info
from dapo_fast.version import __version__

__all__ = ["HAS_C", "build_info", "__version__"]
