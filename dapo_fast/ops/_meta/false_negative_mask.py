"""Fake of false_negative_mask (``dapo_fast::false_negative_mask`` and its ``_triton`` twin); no
autograd (frozen detector features)."""
import torch


def fake_false_negative_mask(region_feats, region_valid, threshold):
    torch._check(region_feats.dim() == 3, lambda: "region_feats must be [B, K, D]")
    b, k = region_feats.shape[:2]
    return region_feats.new_empty((b, b, k), dtype=torch.bool)


def register(forward) -> None:
    torch.library.register_fake(forward, fake_false_negative_mask)
