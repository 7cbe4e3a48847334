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

NaN and Inf: the features of invalid phrases and regions take no part (a NaN there reaches
neither the loss nor a gradient); a NaN or Inf in a valid one reaches every loss (and gradient)
whose S_b or T_b it is in, as the formula says: a diverging teacher gives a NaN loss, not 0.

``fn_mask[b, b]`` (the diagonal) is ignored. reduction "mean" divides the sum by the number of
valid phrases (at least 1), "sum" sums, "none" returns the [B, Q] matrix. Gradients flow to
``phrase`` and ``region`` only. Half/bfloat16 inputs are computed in float32.
"""
from typing import Optional

import torch

from dapo_fast.ops._reference import compute_dtype

MODES = ("none", "fne", "fnc")
REDUCTIONS = ("mean", "sum", "none")


def _sets(region_valid, fn_mask, mode, images):
    """Boolean [I, 1, B, K] masks of the student set S and the teacher set T of each image b in
    ``images`` (a slice of the batch)."""
    batch = region_valid.shape[0]
    eye = torch.eye(batch, dtype=torch.bool, device=region_valid.device)[images, None, :, None]
    valid = region_valid.bool()[None, None]
    if fn_mask is None or mode == "none":
        fn = torch.zeros_like(eye)
    else:
        fn = fn_mask.bool()[images, None] & ~eye
    in_s = valid & ~fn if mode == "fne" else valid.expand(eye.shape[0], 1, -1, -1)
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
    per_phrase = per_phrase_loss(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask,
                                 tau, teacher_tau, mode)
    return _reduce(per_phrase, phrase_valid, reduction).to(phrase.dtype)


def per_phrase_loss(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask=None,
                    tau=1.0, teacher_tau=1.0, mode="none", images=slice(None)):
    """The [I, Q] loss of the phrases of ``images`` (a slice of the batch; default all) in the
    compute dtype: the reference block by block, so a batch too large for its [B, Q, B, K] logits
    can be checked one slice of images at a time."""
    ct = compute_dtype(phrase.dtype)
    zero = torch.zeros((), dtype=ct, device=phrase.device)
    pv, rv = phrase_valid.bool()[images, :, None], region_valid.bool()[..., None]
    p, r = torch.where(pv, phrase[images].to(ct), zero), torch.where(rv, region.to(ct), zero)
    tp = torch.where(pv, teacher_phrase[images].detach().to(ct), zero)
    tr = torch.where(rv, teacher_region.detach().to(ct), zero)
    in_s, in_t = _sets(region_valid, fn_mask, mode, images)          # [I, 1, B, K]
    s = torch.einsum("bqd,akd->bqak", p, r) / tau                    # [I, Q, B, K]
    t = torch.einsum("bqd,akd->bqak", tp, tr) / teacher_tau
    in_s, in_t = in_s.flatten(2), in_t.flatten(2)                    # [I, 1, B*K]
    row_ok = in_t.any(-1) & pv[..., 0]                               # [I, Q]
    rows = row_ok[..., None]
    # rows without a loss are all zeros, so nothing in them reaches the loss or a gradient
    log_p = torch.where(rows, s.flatten(2).masked_fill(~in_s, -torch.inf), zero).log_softmax(-1)
    pi = torch.where(rows, t.flatten(2).masked_fill(~in_t, -torch.inf), zero).softmax(-1)
    return -torch.where(in_t & rows, pi * log_p, zero).sum(-1)


# MPL's public code marks false negatives for the first 10 phrases of each image only (an [:10]
# slice in flow/inner_similarity.py)
MPL_CODE_FN_PHRASES = 10


def pseudo_label_contrastive_loss_mpl_code_form(phrase, region, teacher_phrase, teacher_region, phrase_valid,
                                                region_valid, fn_mask=None, tau=1.0, teacher_tau=1.0,
                                                mode="none", reduction="mean"):
    """What MPL's public training code computes (mytrain.py, utils/utils_loss.py WSLoss,
    flow/inner_similarity.py), quirks included, at its memory cost ([B, B, Q, K] logits): the
    form to use for MPL's own numbers, and the benchmark baseline. It differs from the paper's
    form (:func:`pseudo_label_contrastive_loss`) in three ways:

    * the student's log-softmax runs over every region of the batch, padded (invalid) ones
      included; only the teacher masks them;
    * false negatives are marked for the first 10 phrases of each image only: mode "fne" drops
      them from those phrases' softmax, mode "fnc" adds them to those phrases' pseudo-labels;
    * reduction "mean" divides by the number of valid phrases of images whose first region is
      valid (the code counts ``x_mask[:, :, 0]``) plus float eps.

    With every region valid and at most 10 phrases per image it equals the paper's form.
    "sum" and "none" reductions sum / return the same per-phrase terms.
    """
    b, q, k = phrase.shape[0], phrase.shape[1], region.shape[1]
    phrase_valid, region_valid = phrase_valid.bool(), region_valid.bool()
    student = torch.einsum("bqd,akd->bqak", phrase, region) / tau                     # [B, Q, B, K]
    with torch.no_grad():
        teacher = torch.einsum("bqd,akd->bqak", teacher_phrase, teacher_region) / teacher_tau
    eye = torch.eye(b, dtype=torch.bool, device=phrase.device)[:, None, :, None]     # [B, 1, B, 1]
    first_phrases = (torch.arange(q, device=phrase.device) < MPL_CODE_FN_PHRASES)[None, :, None, None]
    if fn_mask is None or mode == "none":
        fn = torch.zeros((b, q, b, k), dtype=torch.bool, device=phrase.device)
    else:
        fn = fn_mask.bool()[:, None] & ~eye & first_phrases                            # [B, Q, B, K]
    lowest = torch.finfo(student.dtype).min
    log_p = student.masked_fill(fn, lowest) if mode == "fne" else student
    log_p = log_p.flatten(2).log_softmax(-1).view(b, q, b, k)
    in_t = region_valid[None, None] & (eye | fn if mode == "fnc" else eye) & phrase_valid[:, :, None, None]
    pi = teacher.masked_fill(~in_t, lowest).flatten(2).softmax(-1).view(b, q, b, k) * in_t
    per_phrase = -(pi * log_p).flatten(2).sum(-1)
    if reduction == "none":
        return per_phrase
    if reduction == "sum":
        return per_phrase.sum()
    first_region_valid = region_valid[:, :1] if k else torch.zeros((b, 1), dtype=torch.bool, device=phrase.device)
    counted = (phrase_valid & first_region_valid).sum()
    return per_phrase.sum() / (counted + torch.finfo(per_phrase.dtype).eps)
