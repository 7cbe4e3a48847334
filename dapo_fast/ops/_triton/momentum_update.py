"""Momentum (EMA) update in Triton: one fused elementwise kernel per (teacher, student) pair,
in place (Triton has no multi-tensor launch; on a GPU each launch costs a few microseconds)."""
import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from dapo_fast.ops._meta import momentum_update as _meta


@triton.jit
def _ema_kernel(t_ptr, s_ptr, n, momentum, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    t = tl.load(t_ptr + offs, mask=m, other=0.0).to(tl.float32)
    s = tl.load(s_ptr + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(t_ptr + offs, (momentum * t + (1.0 - momentum) * s).to(t_ptr.dtype.element_ty), mask=m)


@triton_op("dapo_fast::momentum_update_triton_", mutates_args={"teacher"})
def momentum_update_triton_(teacher: torch.Tensor, student: torch.Tensor, momentum: float) -> None:
    n = teacher.numel()
    if n == 0:
        return
    block = 1024
    wrap_triton(_ema_kernel)[(triton.cdiv(n, block),)](teacher, student.contiguous(), n, momentum, BLOCK=block)


_meta.register_per_tensor(momentum_update_triton_)


def momentum_update_(teacher, student, momentum):
    for t, s in zip(teacher, student):
        if t.is_contiguous():
            momentum_update_triton_(t, s, momentum)
        else:  # strided views: plain ATen in place
            t.mul_(momentum).add_(s, alpha=1.0 - momentum)
