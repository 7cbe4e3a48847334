"""MPL's pseudo-label guided contrastive loss, in plain PyTorch: the specification.

For a valid phrase q of image b (features ``phrase[b, q]``, teacher features ``teacher_phrase[b, q]``):

* student logits ``s[a, k] = <phrase[b, q], region[a, k]> / tau`` over the student set S_b:
  every valid region of the batch; mode "fne" removes the false negatives
  ``{(a, k): a != b, fn_mask[b, a, k]}``;
* teacher pseudo-labels ``pi = softmax(<teacher_phrase[b, q], teacher_region[a, k]> / teacher_tau)``
  over the teacher set T_b: the valid regions of image b, plus in mode "fnc" the valid false
  negatives; zero outside T_b (T_b is always inside S_b);
* ``loss[b, q] = -sum_{T_b} pi * log_softmax_{S_b}(s)``; 0 for invalid phrases and for phrases
  whose T_b is empty (no valid region), with zero gradient.

``fn_mask[b, b]`` (the diagonal) is ignored. reduction "mean" divides the sum by the number of
valid phrases (at least 1), "sum" sums, "none" returns the [B, Q] matrix. Gradients flow to
``phrase`` and ``region`` only. Half/bfloat16 inputs are computed in float32.
"""
from typing import Optional

import torch

from dapo_fast.ops._reference import compute_dtype

MODES = ("none", "fne", "fnc")
REDUCTIONS = ("mean", "sum", "none")


def _sets(region_valid, fn_mask, mode, batch):
    """Boolean [B, 1, B, K] masks of the student set S and the teacher set T of each image b."""
    eye = torch.eye(batch, dtype=torch.bool, device=region_valid.device)[:, None, :, None]
    valid = region_valid.bool()[None, None]
    if fn_mask is None or mode == "none":
        fn = torch.zeros_like(eye)
    else:
        fn = fn_mask.bool()[:, None] & ~eye
    in_s = valid & ~fn if mode == "fne" else valid.expand(batch, 1, -1, -1)
    in_t = valid & (eye | fn) if mode == "fnc" else valid & eye
    return in_s, in_t


def _reduce(per_phrase, phrase_valid, reduction):
    if reduction == "none":
        return per_phrase
    total = per_phrase.sum()
    if reduction == "sum":
        return total
    return total / phrase_valid.sum().clamp(min=1)


def pseudo_label_contrastive_loss(phrase: torch.Tensor, region: torch.Tensor, teacher_phrase: torch.Tensor,
                                  teacher_region: torch.Tensor, phrase_valid: torch.Tensor,
                                  region_valid: torch.Tensor, fn_mask: Optional[torch.Tensor] = None,
                                  tau: float = 1.0, teacher_tau: float = 1.0, mode: str = "none",
                                  reduction: str = "mean") -> torch.Tensor:
    batch, num_q = phrase.shape[:2]
    out_dtype = phrase.dtype
    ct = compute_dtype(phrase.dtype)
    p, r = phrase.to(ct), region.to(ct)
    tp, tr = teacher_phrase.detach().to(ct), teacher_region.detach().to(ct)
    in_s, in_t = _sets(region_valid, fn_mask, mode, batch)           # [B, 1, B, K]
    s = torch.einsum("bqd,akd->bqak", p, r) / tau                    # [B, Q, B, K]
    t = torch.einsum("bqd,akd->bqak", tp, tr) / teacher_tau
    lowest = torch.finfo(ct).min
    log_p = s.masked_fill(~in_s, lowest).flatten(2).log_softmax(-1)  # finite even for an empty S
    pi = t.masked_fill(~in_t, lowest).flatten(2).softmax(-1) * in_t.flatten(2)
    row_ok = in_t.flatten(2).any(-1) & phrase_valid.bool()           # [B, Q]
    per_phrase = -(pi * log_p).sum(-1)
    per_phrase = torch.where(row_ok, per_phrase, torch.zeros_like(per_phrase))
    return _reduce(per_phrase, phrase_valid, reduction).to(out_dtype)


def pseudo_label_contrastive_loss_mpl_code_form(phrase, region, teacher_phrase, teacher_region, phrase_valid,
                                                region_valid, fn_mask=None, tau=1.0, teacher_tau=1.0,
                                                mode="none", reduction="mean"):
    """MPL's public-code form (utils/utils_loss.py, flow/inner_similarity.py): einsum the student and
    teacher logits to [B, B, Q, K], expand the masks to [B, B, Q, K], rearrange to [B, Q, B*K],
    masked_fill, log_softmax / softmax, multiply, sum. Same numbers as the spec; it is the
    benchmark baseline (its memory is what the fused kernel removes)."""
    b, q = phrase.shape[:2]
    k = region.shape[1]
    output = torch.einsum("b q d, a k d -> b a q k", phrase, region) / tau          # [B, B, Q, K]
    with torch.no_grad():
        target_logits = torch.einsum("b q d, a k d -> b a q k", teacher_phrase, teacher_region) / teacher_tau
    eye = torch.eye(b, dtype=torch.bool, device=phrase.device)[:, :, None, None].expand(b, b, q, k)
    valid = region_valid.bool()[None, :, None, :].expand(b, b, q, k)
    fn = (fn_mask.bool()[:, :, None, :].expand(b, b, q, k) & ~eye) if (fn_mask is not None and mode != "none") \
        else torch.zeros_like(eye)
    s_mask = valid & ~fn if mode == "fne" else valid
    t_mask = valid & (eye | fn) if mode == "fnc" else valid & eye
    finf = torch.finfo(output.dtype).max
    output = output.permute(0, 2, 1, 3).reshape(b, q, b * k)                           # b q (a k)
    log_p = output.masked_fill(~s_mask.permute(0, 2, 1, 3).reshape(b, q, b * k), -finf).log_softmax(-1)
    t_flat = t_mask.permute(0, 2, 1, 3).reshape(b, q, b * k)
    pseudo_target = target_logits.permute(0, 2, 1, 3).reshape(b, q, b * k).masked_fill(~t_flat, -finf)
    pseudo_target = pseudo_target.softmax(-1).masked_fill(~t_flat, 0)
    pseudo_target = pseudo_target.masked_fill(~phrase_valid.bool()[:, :, None], 0)
    pseudo_target = pseudo_target.masked_fill(~t_flat.any(-1, keepdim=True), 0)
    per_phrase = -(pseudo_target * log_p).sum(-1)
    return _reduce(per_phrase, phrase_valid, reduction)
