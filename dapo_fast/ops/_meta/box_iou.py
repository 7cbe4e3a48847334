"""Fake of box_iou (``dapo_fast::box_iou``); the kernel has no autograd (the front runs the
differentiable reference when a gradient is needed). box_accuracy is a composite of tensor ops."""
import torch


def fake_box_iou(a, b):
    return a.new_empty((a.shape[0], a.shape[1], b.shape[1]))


def register(forward) -> None:
    torch.library.register_fake(forward, fake_box_iou)
