"""False-negative retrieval of MPL, in plain PyTorch: the specification.

``out[i, a, l]`` is True iff ``a != i``, region ``l`` of image ``a`` is valid and some valid
region ``k`` of image ``i`` has cosine similarity ``> threshold`` with it. Cosine similarity of
``x / max(|x|, 1e-12)`` vectors (``F.normalize``), computed in float32 for half/bfloat16 input.
This reference materialises the [B, B, K, K] similarity; the kernels never do.
"""
import torch
import torch.nn.functional as F

from dapo_fast.ops._reference import compute_dtype

NORM_EPS = 1e-12


def false_negative_mask(region_feats: torch.Tensor, region_valid: torch.Tensor, threshold: float) -> torch.Tensor:
    batch = region_feats.shape[0]
    f = F.normalize(region_feats.detach().to(compute_dtype(region_feats.dtype)), dim=-1, eps=NORM_EPS)
    sim = torch.einsum("ikd,ald->iakl", f, f)  # [i, a, k, l]
    valid = region_valid.bool()
    hit = (sim > threshold) & valid[:, None, :, None] & valid[None, :, None, :]
    out = hit.any(dim=2)  # OR over the regions k of image i -> [i, a, l]
    eye = torch.eye(batch, dtype=torch.bool, device=region_feats.device)
    return out & ~eye[:, :, None]


def false_negative_mask_mpl_code_form(region_feats: torch.Tensor, region_valid: torch.Tensor,
                                      threshold: float) -> torch.Tensor:
    """MPL's public-code form (flow/inner_similarity.py): normalise with ``|x| + eps``, one einsum to
    the full [B, B, K, K] similarity, blank the diagonal blocks, threshold, then reduce. The
    benchmark baseline; it differs from the spec only in the normalisation epsilon (and uses the
    spec's strict ``>``; the public code has ``>=``)."""
    b, k = region_feats.shape[:2]
    f = region_feats.detach()
    f = f / (f.norm(dim=-1, keepdim=True) + torch.finfo(f.dtype).eps)
    inner_sim = torch.einsum("b k d, a q d -> b a k q", f, f)
    eye_mask = torch.eye(b, dtype=torch.bool, device=f.device)[:, :, None, None].expand(-1, -1, k, k)
    inner_sim = inner_sim.masked_fill(eye_mask, -2.0)
    valid = region_valid.bool()
    bool_mask = (inner_sim > threshold) & valid[:, None, :, None] & valid[None, :, None, :]
    return bool_mask.any(dim=2)
