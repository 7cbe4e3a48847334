"""Fake of resized_argmax (``dapo_fast::resized_argmax``), the op under pointing_game and
pointing_game_masks (composites of tensor ops around it); no autograd (indices)."""
import torch


def fake_resized_argmax(heatmaps, sizes):
    torch._check(heatmaps.dim() == 3, lambda: "heatmaps must have 3 dimensions")
    return heatmaps.new_empty((heatmaps.shape[0], 2), dtype=torch.int64)


def register(forward) -> None:
    torch.library.register_fake(forward, fake_resized_argmax)
