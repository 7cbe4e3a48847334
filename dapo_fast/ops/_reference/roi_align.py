"""RoIAlign in plain PyTorch: the specification (torchvision semantics), differentiable.

Every bin is the mean of grid_h x grid_w bilinear samples. A sample outside [-1, H] x [-1, W]
(or NaN) contributes 0; inside, coordinates below 0 clamp to 0 and the last row/column
clamps to itself. Computed in float32 for half/bfloat16 inputs.
"""
import torch

from dapo_fast.ops._reference import compute_dtype


def _axis_taps(coord: torch.Tensor, size: int):
    """Bilinear taps along one axis: (low, high, w_low, w_high), weights 0 where invalid."""
    valid = (coord >= -1) & (coord <= size)
    c = torch.where(valid, coord, torch.zeros_like(coord)).clamp(min=0)
    low = c.to(torch.int64)  # c >= 0, so truncation is floor
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    c = torch.where(at_edge, low.to(c.dtype), c)
    frac = c - low.to(c.dtype)
    w_low = torch.where(valid, 1 - frac, torch.zeros_like(frac))
    w_high = torch.where(valid, frac, torch.zeros_like(frac))
    return low, high, w_low, w_high


def roi_align(input: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
              pooled_width: int, sampling_ratio: int, aligned: bool) -> torch.Tensor:
    num_rois, channels = rois.shape[0], input.shape[1]
    height, width = input.shape[2], input.shape[3]
    out_dtype = input.dtype
    compute = compute_dtype(input.dtype)
    feats = input.to(compute)
    r = rois.to(compute)
    if num_rois == 0 or height == 0 or width == 0:
        # nothing to sample; `+ 0 * sum` keeps the result attached to the autograd graph
        zeros = feats.new_zeros((num_rois, channels, pooled_height, pooled_width))
        return (zeros + 0 * feats.sum()).to(out_dtype)

    offset = 0.5 if aligned else 0.0
    start_w = r[:, 1] * spatial_scale - offset
    start_h = r[:, 2] * spatial_scale - offset
    roi_w = r[:, 3] * spatial_scale - offset - start_w
    roi_h = r[:, 4] * spatial_scale - offset - start_h
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h = roi_h / pooled_height
    bin_w = roi_w / pooled_width
    if sampling_ratio > 0:
        grid_h = torch.full_like(roi_h, sampling_ratio)
        grid_w = torch.full_like(roi_w, sampling_ratio)
    else:
        grid_h = torch.nan_to_num(torch.ceil(roi_h / pooled_height), nan=0.0).clamp(min=0)
        grid_w = torch.nan_to_num(torch.ceil(roi_w / pooled_width), nan=0.0).clamp(min=0)
    max_gh = max(int(grid_h.max()), 1)
    max_gw = max(int(grid_w.max()), 1)
    count = (grid_h * grid_w).clamp(min=1)

    # sample coordinates: y [K, PH, GH], x [K, PW, GW]; samples past a RoI's own grid are masked
    iy = torch.arange(max_gh, device=input.device, dtype=compute)
    ix = torch.arange(max_gw, device=input.device, dtype=compute)
    ph = torch.arange(pooled_height, device=input.device, dtype=compute)
    pw = torch.arange(pooled_width, device=input.device, dtype=compute)
    gh = grid_h.clamp(min=1)[:, None, None]
    gw = grid_w.clamp(min=1)[:, None, None]
    y = start_h[:, None, None] + ph[None, :, None] * bin_h[:, None, None] + (iy[None, None, :] + 0.5) * bin_h[:, None, None] / gh
    x = start_w[:, None, None] + pw[None, :, None] * bin_w[:, None, None] + (ix[None, None, :] + 0.5) * bin_w[:, None, None] / gw
    y_in_grid = (iy[None, None, :] < grid_h[:, None, None]).to(compute)
    x_in_grid = (ix[None, None, :] < grid_w[:, None, None]).to(compute)

    y_lo, y_hi, wy_lo, wy_hi = _axis_taps(y, height)
    x_lo, x_hi, wx_lo, wx_hi = _axis_taps(x, width)
    wy_lo, wy_hi = wy_lo * y_in_grid, wy_hi * y_in_grid
    wx_lo, wx_hi = wx_lo * x_in_grid, wx_hi * x_in_grid

    batch = r[:, 0].to(torch.int64)[:, None, None, None, None]

    def corner(yi, xi):  # -> [K, PH, GH, PW, GW, C]
        return feats[batch, :, yi[:, :, :, None, None], xi[:, None, None, :, :]]

    def expand_y(w):
        return w[:, :, :, None, None, None]

    def expand_x(w):
        return w[:, None, None, :, :, None]

    samples = (
        expand_y(wy_lo) * expand_x(wx_lo) * corner(y_lo, x_lo)
        + expand_y(wy_lo) * expand_x(wx_hi) * corner(y_lo, x_hi)
        + expand_y(wy_hi) * expand_x(wx_lo) * corner(y_hi, x_lo)
        + expand_y(wy_hi) * expand_x(wx_hi) * corner(y_hi, x_hi)
    )
    out = samples.sum(dim=(2, 4)) / count[:, None, None, None]  # [K, PH, PW, C]
    return out.permute(0, 3, 1, 2).contiguous().to(out_dtype)
