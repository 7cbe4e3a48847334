"""cross_attention_probs_mean in Triton.

Forward: one program per (batch, block of query rows) loops over the heads: q-block @ k^T with
tl.dot (full-precision fp32: the maps must match an explicit capture to 1e-5), row softmax in
registers, running head-sum; the [B, heads, HW, T] probabilities never exist in memory.
Backward: one program per (batch, head) walks its row blocks, recomputes the probabilities,
writes dq per block and keeps dk in registers (no atomics: deterministic).
T and d are padded to powers of two (77 -> 128, 160 -> 256), fine for SD's sizes.
"""
import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from dapo_fast.ops._meta import cross_attention_probs_mean as _meta


@triton.jit
def _probs(q, k, bias, key_ok, scale, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr):
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
    if HAS_BIAS:
        s = s + bias[None, :]
    s = tl.where(key_ok[None, :], s, float("-inf"))
    row_max = tl.max(s, axis=1)
    p = tl.exp(s - row_max[:, None])
    return p / tl.sum(p, axis=1)[:, None]


@triton.jit
def _forward_kernel(q_ptr, k_ptr, bias_ptr, out_ptr, HEADS, HW, T, D, qs0, qs1, qs2, ks0, ks1, ks2, os0, os1, os2,
                    scale, weight, HAS_BIAS: tl.constexpr, ACCUMULATE: tl.constexpr, PRECISION: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    keys = tl.arange(0, BLOCK_T)
    dims = tl.arange(0, BLOCK_D)
    row_ok = rows < HW
    key_ok = keys < T
    dim_ok = dims < D
    bias = tl.zeros([BLOCK_T], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + b * T + keys, mask=key_ok, other=0.0).to(tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_T], dtype=tl.float32)
    for h in range(HEADS):
        q = tl.load(q_ptr + b * qs0 + h * qs1 + rows[:, None] * qs2 + dims[None, :],
                    mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
        k = tl.load(k_ptr + b * ks0 + h * ks1 + keys[:, None] * ks2 + dims[None, :],
                    mask=key_ok[:, None] & dim_ok[None, :], other=0.0)
        acc += _probs(q, k, bias, key_ok, scale, HAS_BIAS, PRECISION)
    result = acc * (weight / HEADS)
    ptrs = out_ptr + b * os0 + rows[:, None] * os1 + keys[None, :] * os2
    mask = row_ok[:, None] & key_ok[None, :]
    if ACCUMULATE:
        result += tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
    tl.store(ptrs, result.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_kernel(grad_ptr, q_ptr, k_ptr, bias_ptr, dq_ptr, dk_ptr, HEADS, HW, T, D, gs0, gs1, gs2, qs0, qs1,
                     qs2, ks0, ks1, ks2, scale, weight, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    keys = tl.arange(0, BLOCK_T)
    dims = tl.arange(0, BLOCK_D)
    key_ok = keys < T
    dim_ok = dims < D
    bias = tl.zeros([BLOCK_T], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + b * T + keys, mask=key_ok, other=0.0).to(tl.float32)
    kd_mask = key_ok[:, None] & dim_ok[None, :]
    k = tl.load(k_ptr + b * ks0 + h * ks1 + keys[:, None] * ks2 + dims[None, :], mask=kd_mask, other=0.0)
    dk = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    w = weight / HEADS
    for m0 in range(0, HW, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_ok = rows < HW
        qd_mask = row_ok[:, None] & dim_ok[None, :]
        q = tl.load(q_ptr + b * qs0 + h * qs1 + rows[:, None] * qs2 + dims[None, :], mask=qd_mask, other=0.0)
        p = _probs(q, k, bias, key_ok, scale, HAS_BIAS, PRECISION)
        g = tl.load(grad_ptr + b * gs0 + rows[:, None] * gs1 + keys[None, :] * gs2,
                    mask=row_ok[:, None] & key_ok[None, :], other=0.0).to(tl.float32) * w
        ds = p * (g - tl.sum(p * g, axis=1)[:, None]) * scale
        ds = tl.where(row_ok[:, None] & key_ok[None, :], ds, 0.0)
        dq = tl.dot(ds, k.to(tl.float32), input_precision=PRECISION)
        tl.store(dq_ptr + ((b * HEADS + h) * HW + rows[:, None]) * D + dims[None, :],
                 dq.to(dq_ptr.dtype.element_ty), mask=qd_mask)
        dk += tl.dot(tl.trans(ds), q.to(tl.float32), input_precision=PRECISION)
    tl.store(dk_ptr + ((b * HEADS + h) * T + keys[:, None]) * D + dims[None, :], dk.to(dk_ptr.dtype.element_ty),
             mask=kd_mask)


def _blocks(keys: int, dim: int):
    return max(16, triton.next_power_of_2(keys)), max(16, triton.next_power_of_2(dim))


def _precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"


def _operand(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _launch_forward(out, q, k, key_bias, scale, weight, accumulate):
    batch, heads, rows, dim = q.shape
    keys = k.shape[2]
    if out.numel() == 0:
        return
    if heads == 0:
        out.fill_(float("nan"))
        return
    q, k = _operand(q), _operand(k)
    bias = key_bias.contiguous() if key_bias is not None else q
    block_t, block_d = _blocks(keys, dim)
    block_m = 32
    grid = (batch, triton.cdiv(rows, block_m))
    wrap_triton(_forward_kernel)[grid](
        q, k, bias, out, heads, rows, keys, dim, q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1),
        k.stride(2), out.stride(0), out.stride(1), out.stride(2), scale, weight, HAS_BIAS=key_bias is not None,
        ACCUMULATE=accumulate, PRECISION=_precision(q.dtype), BLOCK_M=block_m, BLOCK_T=block_t, BLOCK_D=block_d)


@triton_op("dapo_fast::cross_attention_probs_mean_triton", mutates_args=())
def cross_attention_probs_mean_triton(q: torch.Tensor, k: torch.Tensor, scale: float,
                                      key_bias: torch.Tensor | None, weight: float) -> torch.Tensor:
    out = q.new_empty((q.shape[0], q.shape[2], k.shape[2]))
    _launch_forward(out, q, k, key_bias, scale, weight, False)
    return out


@triton_op("dapo_fast::cross_attention_probs_mean_accumulate_triton", mutates_args=("out",))
def cross_attention_probs_mean_accumulate_triton(out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, scale: float,
                                                 key_bias: torch.Tensor | None, weight: float) -> None:
    _launch_forward(out, q, k, key_bias, scale, weight, True)


@triton_op("dapo_fast::cross_attention_probs_mean_backward_triton", mutates_args=())
def cross_attention_probs_mean_backward_triton(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, scale: float,
                                               key_bias: torch.Tensor | None,
                                               weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    batch, heads, rows, dim = q.shape
    keys = k.shape[2]
    dq = q.new_empty((batch, heads, rows, dim))
    dk = k.new_empty((batch, heads, keys, dim))
    if batch * heads == 0:
        return dq, dk
    if rows == 0 or keys == 0 or dim == 0:
        return dq.zero_(), dk.zero_()
    q, k = _operand(q), _operand(k)
    bias = key_bias.contiguous() if key_bias is not None else q
    block_t, block_d = _blocks(keys, dim)
    wrap_triton(_backward_kernel)[(batch, heads)](
        grad, q, k, bias, dq, dk, heads, rows, keys, dim, grad.stride(0), grad.stride(1), grad.stride(2),
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2), scale, weight,
        HAS_BIAS=key_bias is not None, PRECISION=_precision(q.dtype), BLOCK_M=32, BLOCK_T=block_t, BLOCK_D=block_d)
    return dq, dk


_meta.register(cross_attention_probs_mean_triton, cross_attention_probs_mean_accumulate_triton,
               cross_attention_probs_mean_backward_triton)

