"""Head-mean of cross-attention probabilities, accumulated into a running buffer.

Attend-and-Excite (and DAPO after it) average Stable Diffusion's cross-attention maps over the
heads and layers of one resolution. Instead of materialising softmax(q k^T) for every head
([B, heads, HW, T]) and averaging afterwards, this op computes each row's softmax on the fly
and adds ``weight * mean_h`` straight into ``out`` ([B, HW, T]).

Backends: ``cpu`` (C++, tiles of query rows per thread, deterministic), ``cuda``, ``triton``,
``reference``. Differentiable in q and k (the recomputing backward never stores the
probabilities either), which is what the attention-guided latent update (DAPO eq. 4) needs.
"""
from typing import Optional

import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import cross_attention_probs_mean as _meta
from dapo_fast.ops._reference import cross_attention_probs_mean as _reference

__all__ = ["cross_attention_probs_mean"]


def _check(q: Tensor, k: Tensor, key_bias: Optional[Tensor], out: Optional[Tensor]) -> None:
    _checks.tensor(q, "q", dim=4)
    _checks.tensor(k, "k", dim=4, device=q.device)
    _checks.same_dtype(q, "q", k, "k")
    if k.shape[0] != q.shape[0] or k.shape[1] != q.shape[1] or k.shape[3] != q.shape[3]:
        raise ValueError(f"k must have shape [B, heads, T, d] matching q {tuple(q.shape)}, got {tuple(k.shape)}")
    batch, rows, keys = q.shape[0], q.shape[2], k.shape[2]
    if key_bias is not None:
        _checks.tensor(key_bias, "key_bias", shape=(batch, keys), device=q.device)
    if out is not None:
        _checks.tensor(out, "out", shape=(batch, rows, keys), device=q.device)


def cross_attention_probs_mean(q: Tensor, k: Tensor, scale: float, out: Optional[Tensor] = None,
                               weight: float = 1.0, *, key_bias: Optional[Tensor] = None,
                               backend: str = "auto") -> Tensor:
    """``weight * mean_h softmax(q[:, h] @ k[:, h]^T * scale + key_bias)``, added into ``out``.

    Args:
        q: Tensor[B, heads, HW, d] queries (any strides; the [B, HW, heads, d] view diffusers
            makes is read in place).
        k: Tensor[B, heads, T, d] keys, same dtype and device.
        scale: softmax temperature, usually d ** -0.5 (diffusers' ``attn.scale``).
        out: optional Tensor[B, HW, T] running buffer; the result is added into it in place and
            it is returned. Without it a new tensor is returned.
        weight: factor on the head mean (e.g. 1 / number_of_layers for a layer mean).
        key_bias: optional Tensor[B, T] added to every score row (an additive attention mask:
            0 keeps a token, -inf or a large negative drops it).
        backend: "auto" | "cpu" | "cuda" | "triton" | "reference".

    Returns:
        Tensor[B, HW, T] (``out`` itself when given).
    """
    _check(q, k, key_bias, out)
    scale, weight = float(scale), float(weight)
    chosen = _backend.resolve(backend, q.device)
    if chosen == "reference":
        result = _reference.cross_attention_probs_mean(q, k, scale, key_bias, weight)
    else:
        if chosen == "triton":
            from dapo_fast.ops._triton import cross_attention_probs_mean as _triton

            forward = _triton.cross_attention_probs_mean_triton
            accumulate = _triton.cross_attention_probs_mean_accumulate_triton
        else:
            forward = torch.ops.dapo_fast.cross_attention_probs_mean
            accumulate = torch.ops.dapo_fast.cross_attention_probs_mean_accumulate
        differentiable = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
        if out is not None and not differentiable and out.dtype == q.dtype:
            accumulate(out, q, k, scale, key_bias, weight)
            return out
        result = forward(q, k, scale, key_bias, weight)
    if out is None:
        return result
    return out.add_(result.to(out.dtype))


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.cross_attention_probs_mean.default,
                   torch.ops.dapo_fast.cross_attention_probs_mean_accumulate.default,
                   torch.ops.dapo_fast.cross_attention_probs_mean_backward.default)
