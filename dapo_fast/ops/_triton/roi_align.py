"""RoIAlign in Triton. One program per (RoI, block of channels) loops over the bins and
their samples with the channel block as the vector; any input strides (channels_last too).
The backward scatters with atomic adds (not bitwise deterministic on GPU; the CPU kernel is)."""
import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from dapo_fast.ops import _checks
from dapo_fast.ops._meta import roi_align as _meta


@triton.jit
def _axis_taps(coord, size, ACC: tl.constexpr):
    # torchvision's bilinear rule along one axis; a NaN coordinate fails `valid` too
    valid = (coord >= -1.0) & (coord <= size)
    c = tl.where(valid, tl.maximum(coord, 0.0), 0.0)
    low = c.to(tl.int32)
    edge = low >= size - 1
    low = tl.where(edge, size - 1, low)
    high = tl.where(edge, size - 1, low + 1)
    c = tl.where(edge, low.to(ACC), c)
    frac = c - low.to(ACC)
    return valid, low, high, 1.0 - frac, frac


@triton.jit
def _geometry(rois_ptr, k, spatial_scale, sampling_ratio, N, PH: tl.constexpr, PW: tl.constexpr,
              ALIGNED: tl.constexpr, ACC: tl.constexpr):
    roi = rois_ptr + k * 5
    batch_value = tl.load(roi).to(ACC)
    batch_ok = (batch_value > -1.0) & (batch_value < N)
    batch = tl.where(batch_ok, batch_value, 0.0).to(tl.int32)
    offset = 0.5 if ALIGNED else 0.0
    start_w = tl.load(roi + 1).to(ACC) * spatial_scale - offset
    start_h = tl.load(roi + 2).to(ACC) * spatial_scale - offset
    roi_w = tl.load(roi + 3).to(ACC) * spatial_scale - offset - start_w
    roi_h = tl.load(roi + 4).to(ACC) * spatial_scale - offset - start_h
    if not ALIGNED:
        roi_w = tl.maximum(roi_w, 1.0)
        roi_h = tl.maximum(roi_h, 1.0)
    adaptive_h = tl.ceil(tl.where(roi_h == roi_h, roi_h, 0.0) / PH).to(tl.int32)
    adaptive_w = tl.ceil(tl.where(roi_w == roi_w, roi_w, 0.0) / PW).to(tl.int32)
    grid_h = tl.maximum(tl.where(sampling_ratio > 0, sampling_ratio, adaptive_h), 0)
    grid_w = tl.maximum(tl.where(sampling_ratio > 0, sampling_ratio, adaptive_w), 0)
    count = tl.maximum(grid_h * grid_w, 1).to(ACC)
    return batch_ok, batch, start_h, start_w, roi_h / PH, roi_w / PW, grid_h, grid_w, count


@triton.jit
def _forward_kernel(input_ptr, rois_ptr, out_ptr, N, C, H, W, s_n, s_c, s_h, s_w, o_k, o_c, o_h, o_w,
                    spatial_scale, sampling_ratio, PH: tl.constexpr, PW: tl.constexpr, ALIGNED: tl.constexpr,
                    ACC: tl.constexpr, BLOCK_C: tl.constexpr):
    k = tl.program_id(0)
    channels = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = channels < C
    batch_ok, batch, start_h, start_w, bin_h, bin_w, grid_h, grid_w, count = _geometry(
        rois_ptr, k, spatial_scale, sampling_ratio, N, PH, PW, ALIGNED, ACC)
    base = input_ptr + batch * s_n + channels * s_c
    for ph in range(PH):
        for pw in range(PW):
            acc = tl.zeros([BLOCK_C], dtype=ACC)
            for iy in range(grid_h):
                y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                y_ok, y_lo, y_hi, wy_lo, wy_hi = _axis_taps(y, H, ACC)
                for ix in range(grid_w):
                    x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                    x_ok, x_lo, x_hi, wx_lo, wx_hi = _axis_taps(x, W, ACC)
                    # scalar m = c_mask & y_ok & x_ok & batch_ok block of int1 trips the interpreter, so combine through where
                    m = tl.where(y_ok & x_ok & batch_ok, c_mask, False)
                    v00 = tl.load(base + y_lo * s_h + x_lo * s_w, mask=m, other=0.0).to(ACC)
                    v01 = tl.load(base + y_lo * s_h + x_hi * s_w, mask=m, other=0.0).to(ACC)
                    v10 = tl.load(base + y_hi * s_h + x_lo * s_w, mask=m, other=0.0).to(ACC)
                    v11 = tl.load(base + y_hi * s_h + x_hi * s_w, mask=m, other=0.0).to(ACC)
                    acc += wy_lo * (wx_lo * v00 + wx_hi * v01) + wy_hi * (wx_lo * v10 + wx_hi * v11)
            result = tl.where(batch_ok, acc / count, float("nan"))
            tl.store(out_ptr + k * o_k + channels * o_c + ph * o_h + pw * o_w,
                     result.to(out_ptr.dtype.element_ty), mask=c_mask)


@triton.jit
def _backward_kernel(grad_ptr, rois_ptr, gin_ptr, N, C, H, W, g_k, g_c, g_h, g_w, s_n, s_c, s_h, s_w,
                     spatial_scale, sampling_ratio, PH: tl.constexpr, PW: tl.constexpr, ALIGNED: tl.constexpr,
                     ACC: tl.constexpr, BLOCK_C: tl.constexpr):
    k = tl.program_id(0)
    channels = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = channels < C
    batch_ok, batch, start_h, start_w, bin_h, bin_w, grid_h, grid_w, count = _geometry(
        rois_ptr, k, spatial_scale, sampling_ratio, N, PH, PW, ALIGNED, ACC)
    base = gin_ptr + batch * s_n + channels * s_c
    for ph in range(PH):
        for pw in range(PW):
            g = tl.load(grad_ptr + k * g_k + channels * g_c + ph * g_h + pw * g_w, mask=c_mask, other=0.0).to(ACC)
            g = g / count
            for iy in range(grid_h):
                y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                y_ok, y_lo, y_hi, wy_lo, wy_hi = _axis_taps(y, H, ACC)
                for ix in range(grid_w):
                    x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                    x_ok, x_lo, x_hi, wx_lo, wx_hi = _axis_taps(x, W, ACC)
                    # scalar m = c_mask & y_ok & x_ok & batch_ok block of int1 trips the interpreter, so combine through where
                    m = tl.where(y_ok & x_ok & batch_ok, c_mask, False)
                    tl.atomic_add(base + y_lo * s_h + x_lo * s_w, g * wy_lo * wx_lo, mask=m)
                    tl.atomic_add(base + y_lo * s_h + x_hi * s_w, g * wy_lo * wx_hi, mask=m)
                    tl.atomic_add(base + y_hi * s_h + x_lo * s_w, g * wy_hi * wx_lo, mask=m)
                    tl.atomic_add(base + y_hi * s_h + x_hi * s_w, g * wy_hi * wx_hi, mask=m)


def _acc_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _block_c(channels: int) -> int:
    return min(triton.next_power_of_2(max(channels, 1)), 128)


@triton_op("dapo_fast::roi_align_triton", mutates_args=())
def roi_align_triton(input: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
                     pooled_width: int, sampling_ratio: int, aligned: bool) -> torch.Tensor:
    num_rois, channels = rois.shape[0], input.shape[1]
    if _checks.is_channels_last(input):
        out = input.new_empty((num_rois, pooled_height, pooled_width, channels)).permute(0, 3, 1, 2)
    else:
        out = input.new_empty((num_rois, channels, pooled_height, pooled_width))
    if out.numel() == 0:
        return out
    if input.shape[2] == 0 or input.shape[3] == 0:
        return out.zero_()
    rois = rois.contiguous()
    block = _block_c(channels)
    grid = (num_rois, triton.cdiv(channels, block))
    wrap_triton(_forward_kernel)[grid](
        input, rois, out, input.shape[0], channels, input.shape[2], input.shape[3], *input.stride(), *out.stride(),
        spatial_scale, sampling_ratio, PH=pooled_height, PW=pooled_width, ALIGNED=aligned,
        ACC=_acc_dtype(input.dtype), BLOCK_C=block)
    return out


@triton_op("dapo_fast::roi_align_backward_triton", mutates_args=())
def roi_align_backward_triton(grad: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
                              pooled_width: int, batch_size: int, channels: int, height: int, width: int,
                              sampling_ratio: int, aligned: bool) -> torch.Tensor:
    fmt = torch.channels_last if _checks.is_channels_last(grad) else torch.contiguous_format
    acc_dtype = torch.float64 if grad.dtype == torch.float64 else torch.float32
    grad_input = torch.empty((batch_size, channels, height, width), dtype=acc_dtype, device=grad.device,
                             memory_format=fmt).zero_()
    if grad_input.numel() != 0 and rois.shape[0] != 0:
        rois = rois.contiguous()
        block = _block_c(channels)
        grid = (rois.shape[0], triton.cdiv(channels, block))
        wrap_triton(_backward_kernel)[grid](
            grad, rois, grad_input, batch_size, channels, height, width, *grad.stride(), *grad_input.stride(),
            spatial_scale, sampling_ratio, PH=pooled_height, PW=pooled_width, ALIGNED=aligned,
            ACC=_acc_dtype(grad.dtype), BLOCK_C=block)
    return grad_input.to(grad.dtype)


_meta.register(roi_align_triton, roi_align_backward_triton)
