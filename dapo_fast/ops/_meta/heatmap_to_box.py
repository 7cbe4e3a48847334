"""Fakes of heatmap_to_box (``dapo_fast::heatmap_to_box`` and ``dapo_fast::heatmap_to_box_wwbl``);
no autograd (a box per map)."""
import torch


def fake_heatmap_to_box(heatmaps, rel_threshold, conf_threshold, tozero):
    torch._check(heatmaps.dim() == 3, lambda: "heatmaps must have 3 dimensions")
    return heatmaps.new_empty((heatmaps.shape[0], 4), dtype=torch.float32)


def fake_heatmap_to_box_wwbl(heatmaps, gray_table, rel_threshold, conf_threshold, nms_threshold):
    return fake_heatmap_to_box(heatmaps, rel_threshold, conf_threshold, False)


def register(components, wwbl) -> None:
    torch.library.register_fake(components, fake_heatmap_to_box)
    torch.library.register_fake(wwbl, fake_heatmap_to_box_wwbl)
