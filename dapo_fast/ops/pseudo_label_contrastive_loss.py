"""MPL's pseudo-label guided contrastive loss, fused: no [B, B, Q, K] tensor is ever built.

For every valid phrase (b, q): student logits ``<phrase[b,q], region[a,k]> / tau`` over the valid
regions of the whole batch, teacher pseudo-labels ``softmax(<teacher_phrase[b,q],
teacher_region[a,k]> / teacher_tau)`` over the valid regions of image b, and
``loss = -sum(pi * log_softmax(student))``. Modes (false negatives from
:func:`~dapo_fast.ops.false_negative_mask`): "fne" drops ``fn_mask[b]`` regions from the student
softmax, "fnc" adds them to the teacher's pseudo-label softmax. See
``dapo_fast/ops/_reference/pseudo_label_contrastive_loss.py`` for the exact specification and
MPL's public-code form (``pseudo_label_contrastive_loss_mpl_code_form``, the benchmark baseline).

How the CPU/CUDA kernels run: phrase rows are processed in tiles of whole images; each tile's
logits against all B*K regions come from one BLAS call, the masked softmaxes, the loss and
``d loss / d logits`` are fused in one row kernel, and two more BLAS calls turn that into the
gradients. With reduction "mean"/"sum" and inputs that require grad, the forward already
produces the gradients (like Liger-Kernel's fused linear cross-entropy), so backward only scales
them: three logits-sized products in all, the minimum. Memory beyond inputs and outputs: one
logits tile (about 4 MB on CPU). First-order gradients only (no double backward).
"""
from typing import Optional

import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import pseudo_label_contrastive_loss as _meta
from dapo_fast.ops._reference import pseudo_label_contrastive_loss as _reference
from dapo_fast.ops._reference.pseudo_label_contrastive_loss import MODES, REDUCTIONS

__all__ = ["pseudo_label_contrastive_loss", "pseudo_label_contrastive_loss_mpl_code_form"]

pseudo_label_contrastive_loss_mpl_code_form = _reference.pseudo_label_contrastive_loss_mpl_code_form


def _check_args(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask, tau,
                teacher_tau, mode, reduction):
    _checks.tensor(phrase, "phrase", dim=3)
    b, q, d = phrase.shape
    dev = phrase.device
    _checks.tensor(region, "region", dim=3, device=dev, shape=(b, None, d))
    k = region.shape[1]
    _checks.tensor(teacher_phrase, "teacher_phrase", dim=3, device=dev, shape=(b, q, None))
    _checks.tensor(teacher_region, "teacher_region", dim=3, device=dev, shape=(b, k, teacher_phrase.shape[2]))
    for t, name in ((region, "region"), (teacher_phrase, "teacher_phrase"), (teacher_region, "teacher_region")):
        _checks.same_dtype(phrase, "phrase", t, name)
    _checks.tensor(phrase_valid, "phrase_valid", dtypes=(torch.bool,), device=dev, shape=(b, q))
    _checks.tensor(region_valid, "region_valid", dtypes=(torch.bool,), device=dev, shape=(b, k))
    if fn_mask is not None:
        _checks.tensor(fn_mask, "fn_mask", dtypes=(torch.bool,), device=dev, shape=(b, b, k))
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode != "none" and fn_mask is None:
        raise ValueError(f"fn_mask is required for mode {mode!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not float(tau) > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if not float(teacher_tau) > 0:
        raise ValueError(f"teacher_tau must be > 0, got {teacher_tau}")


def pseudo_label_contrastive_loss(phrase: Tensor, region: Tensor, teacher_phrase: Tensor, teacher_region: Tensor,
                                  phrase_valid: Tensor, region_valid: Tensor, fn_mask: Optional[Tensor] = None,
                                  tau: float = 1.0, teacher_tau: float = 1.0, mode: str = "none",
                                  reduction: str = "mean", *, backend: str = "auto") -> Tensor:
    """Pseudo-label contrastive loss of MPL (eq. FNE/FNC of the paper), fused.

    Args:
        phrase: Tensor[B, Q, D] student phrase features (gradient flows).
        region: Tensor[B, K, D] student region features (gradient flows).
        teacher_phrase: Tensor[B, Q, D'] momentum-teacher phrase features (no gradient).
        teacher_region: Tensor[B, K, D'] momentum-teacher region features (no gradient).
        phrase_valid: bool Tensor[B, Q]; region_valid: bool Tensor[B, K].
        fn_mask: bool Tensor[B, B, K] (from ``false_negative_mask``); required for "fne"/"fnc".
            The diagonal ``fn_mask[b, b]`` is ignored.
        tau: student temperature (> 0); teacher_tau: pseudo-label temperature (> 0; MPL's code
            decays it 0.3 -> 0.1 over training on Flickr30k).
        mode: "none" | "fne" (false-negative elimination) | "fnc" (false-negative conversion).
        reduction: "mean" (over valid phrases) | "sum" | "none" (Tensor[B, Q]).
        backend: "auto" | "cpu" | "cuda" | "triton" | "reference".

    Returns:
        scalar Tensor (mean/sum) or Tensor[B, Q] (none) of phrase.dtype. Rows without a valid
        region give 0 loss and 0 gradient.
    """
    _check_args(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask, tau,
                teacher_tau, mode, reduction)
    tau, teacher_tau = float(tau), float(teacher_tau)
    chosen = _backend.resolve(backend, phrase.device)
    if chosen == "reference":
        return _reference.pseudo_label_contrastive_loss(phrase, region, teacher_phrase, teacher_region, phrase_valid,
                                                        region_valid, fn_mask, tau, teacher_tau, mode, reduction)
    teacher_phrase, teacher_region = teacher_phrase.detach(), teacher_region.detach()
    if chosen == "triton":
        from dapo_fast.ops._triton import pseudo_label_contrastive_loss as _triton

        return _triton.pseudo_label_contrastive_loss(phrase, region, teacher_phrase, teacher_region, phrase_valid,
                                                     region_valid, fn_mask, tau, teacher_tau, mode, reduction)
    grad_on = torch.is_grad_enabled()
    loss, _, _ = torch.ops.dapo_fast.pseudo_label_contrastive_loss(
        phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask, tau, teacher_tau, mode,
        reduction, grad_on and phrase.requires_grad, grad_on and region.requires_grad)
    return loss


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.pseudo_label_contrastive_loss.default,
                   torch.ops.dapo_fast.pseudo_label_contrastive_loss_backward.default)
