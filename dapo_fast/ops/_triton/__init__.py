"""Triton kernels, one module per op module. They JIT on CUDA; on a CPU machine they run under
TRITON_INTERPRET=1 (set it before triton is imported), which is how the tests check them.

This package module holds only what several Triton modules share and imports without triton.
"""
import torch

try:
    import triton  # noqa: F401
    import triton.language  # noqa: F401

    AVAILABLE = True
except ImportError:
    AVAILABLE = False


def entity_map_operands(heatmaps: torch.Tensor, maps: torch.Tensor, entity_valid: torch.Tensor):
    """What the per-entity loss kernels read: contiguous [B, E, H, W] heatmaps and maps, the
    validity flags as uint8, and the pixel count H * W."""
    pixels = heatmaps.shape[2] * heatmaps.shape[3]
    return heatmaps.contiguous(), maps.contiguous(), entity_valid.contiguous().view(torch.uint8), pixels
