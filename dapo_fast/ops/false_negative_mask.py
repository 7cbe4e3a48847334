"""MPL's false-negative retrieval: which regions of other images look like a region of mine.

``out[i, a, l]`` is True iff ``a != i``, region ``l`` of image ``a`` is valid, and some valid region
of image ``i`` has cosine similarity ``> threshold`` with it (MPL: phi = 0.85 for FNE, 0.95 for
FNC, on the raw 2048-d detector features). Feed it to
:func:`~dapo_fast.ops.pseudo_label_contrastive_loss` as ``fn_mask``.

CPU/CUDA kernels tile the product of the region features (one BLAS call per pair of image
tiles), threshold and OR-reduce each K x K block in both directions, so only the blocks with
i < a are computed (about half the full product) and neither [B, B, K, K] nor [B*K, B*K] is
ever allocated. No gradient (frozen detector features).
"""
import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import false_negative_mask as _meta
from dapo_fast.ops._reference import false_negative_mask as _reference

__all__ = ["false_negative_mask", "false_negative_mask_mpl_code_form"]

false_negative_mask_mpl_code_form = _reference.false_negative_mask_mpl_code_form


def _check_args(region_feats, region_valid, threshold):
    _checks.tensor(region_feats, "region_feats", dim=3)
    b, k = region_feats.shape[:2]
    _checks.tensor(region_valid, "region_valid", dtypes=(torch.bool,), device=region_feats.device, shape=(b, k))
    if not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a float, got {type(threshold).__name__}")
    if not -1.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [-1, 1], got {threshold}")


def false_negative_mask(region_feats: Tensor, region_valid: Tensor, threshold: float, *,
                        backend: str = "auto") -> Tensor:
    """Cross-image false-negative regions of every image.

    Args:
        region_feats: Tensor[B, K, D] region features (any float dtype; fp32 math for half/bf16).
        region_valid: bool Tensor[B, K].
        threshold: cosine similarity threshold in [-1, 1] (strict ``>``).
        backend: "auto" | "cpu" | "cuda" | "triton" | "reference".

    Returns:
        bool Tensor[B, B, K]; ``out[i, i]`` is all False.
    """
    _check_args(region_feats, region_valid, threshold)
    threshold = float(threshold)
    region_feats = region_feats.detach()
    chosen = _backend.resolve(backend, region_feats.device)
    if chosen == "reference":
        return _reference.false_negative_mask(region_feats, region_valid, threshold)
    if chosen == "triton":
        from dapo_fast.ops._triton import false_negative_mask as _triton

        return _triton.false_negative_mask_triton(region_feats, region_valid, threshold)
    return torch.ops.dapo_fast.false_negative_mask(region_feats, region_valid, threshold)


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.false_negative_mask.default)
