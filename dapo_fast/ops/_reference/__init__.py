"""Pure-PyTorch references: the specification of every op, differentiable, and a backend.

One module per op module of ``dapo_fast.ops`` with the same name; this package holds only what
several references share.
"""
import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a reference computes in: float32 for half/bfloat16 inputs, the input's otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
