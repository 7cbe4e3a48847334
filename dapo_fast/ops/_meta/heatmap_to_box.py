"""Fake of heatmap_to_box (``dapo_fast::heatmap_to_box``); no autograd (a box per map)."""
import torch


def fake_heatmap_to_box(heatmaps, rel_threshold, conf_threshold, tozero):
    torch._check(heatmaps.dim() == 3, lambda: "heatmaps must have 3 dimensions")
    return heatmaps.new_empty((heatmaps.shape[0], 4), dtype=torch.float32)


def register(forward) -> None:
    torch.library.register_fake(forward, fake_heatmap_to_box)
