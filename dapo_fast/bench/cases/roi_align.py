"""RoIAlign at ReIR's size: C4 map [10, 1024, 38, 50], 50 boxes per image of an 800x600 image.
For a channels_last map, ours reads the map in place either way and runs with torchvision's layout
(the default: NCHW output and input gradient) and with keep_channels_last=True (both channels_last)."""
import torch

from dapo_fast.bench.registry import Case, backend_impls, register, to_device
from dapo_fast.ops import roi_align
from dapo_fast.ops._reference.roi_align import roi_align as reference


def reir_rois(images: int, per_image: int, width: float = 800.0, height: float = 600.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height])
    corner = torch.rand(images, per_image, 2, generator=g) * size
    extent = torch.rand(images, per_image, 2, generator=g) * size * 0.5 + 8
    boxes = torch.cat([corner, torch.minimum(corner + extent, size)], dim=-1).reshape(-1, 4)
    index = torch.arange(images).repeat_interleave(per_image)[:, None].float()
    return torch.cat([index, boxes], dim=1)


def _case(size, shape, per_image, channels_last, quick):
    args = dict(output_size=7, spatial_scale=1 / 16, sampling_ratio=2, aligned=True)

    def make(device="cpu"):
        torch.manual_seed(0)
        x = torch.randn(*shape)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return to_device({"input": x.requires_grad_(), "rois": reir_rois(shape[0], per_image)}, device)

    compiled = torch.compile(reference, dynamic=False)
    backends = backend_impls(lambda i, b: roi_align(i["input"], i["rois"], **args, backend=b), ("cpu", "cuda", "triton"))
    impls = {
        **backends,
        "reference": lambda i: reference(i["input"], i["rois"], 1 / 16, 7, 7, 2, True),
        "reference[compile]": lambda i: compiled(i["input"], i["rois"], 1 / 16, 7, 7, 2, True),
    }
    try:
        import torchvision

        impls["torchvision"] = lambda i: torchvision.ops.roi_align(i["input"], i["rois"], **args)
    except ImportError:
        pass
    ours = list(backends)
    if channels_last:
        impls["dapo_fast[cpu,keep_channels_last]"] = lambda i: roi_align(i["input"], i["rois"], **args, backend="cpu",
                                                                        keep_channels_last=True)
        ours.append("dapo_fast[cpu,keep_channels_last]")
    n, c = shape[0], shape[1]
    k = n * per_image
    bytes_moved = 4 * (shape[0] * c * shape[2] * shape[3] + k * c * 49)
    # per output value: 2x2 samples of 4 bilinear taps (a multiply-add each) and their mean; the
    # backward scatters the same taps
    flops = k * c * 49 * (4 * 4 * 2 + 4)
    return register(Case(
        op="roi_align", size=size, make_inputs=make, impls=impls, ours=ours,
        baselines=[b for b in ("torchvision", "reference", "reference[compile]") if b in impls],
        grad_inputs=["input"], bytes_moved=bytes_moved, bytes_moved_fwd_bwd=2 * bytes_moved, flops=flops,
        flops_fwd_bwd=2 * flops, quick=quick,
        note="aligned=True, sampling_ratio=2, spatial_scale=1/16, 7x7",
    ))


_case("reir", (10, 1024, 38, 50), 50, False, quick=False)
_case("reir-channels_last", (10, 1024, 38, 50), 50, True, quick=False)
_case("small", (2, 256, 38, 50), 50, False, quick=True)
