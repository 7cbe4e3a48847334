"""Random heatmaps for the metric tests: smooth multi-blob maps, flat maps, single-pixel peaks."""
import torch


def blobs(h: int, w: int, count: int, generator=None, dtype=torch.float32) -> torch.Tensor:
    """Sum of `count` Gaussian blobs of random centre, width and height on a [h, w] grid."""
    y = torch.arange(h, dtype=torch.float64)[:, None]
    x = torch.arange(w, dtype=torch.float64)[None, :]
    out = torch.zeros(h, w, dtype=torch.float64)
    for _ in range(count):
        cy, cx = torch.rand(2, generator=generator, dtype=torch.float64) * torch.tensor([h, w])
        sy, sx = 0.5 + torch.rand(2, generator=generator, dtype=torch.float64) * torch.tensor([h, w]) / 5
        amp = 0.2 + torch.rand((), generator=generator, dtype=torch.float64)
        out += amp * torch.exp(-((y - cy) / sy) ** 2 / 2 - ((x - cx) / sx) ** 2 / 2)
    return out.to(dtype)


def single_pixels(h: int, w: int, count: int, generator=None, dtype=torch.float32) -> torch.Tensor:
    out = torch.zeros(h * w, dtype=torch.float64)
    count = min(count, h * w)
    idx = torch.randperm(h * w, generator=generator)[:count]
    out[idx] = torch.rand(count, generator=generator, dtype=torch.float64) + 0.01
    return out.reshape(h, w).to(dtype)


def mixed_maps(n: int, h: int, w: int, generator=None, dtype=torch.float32) -> torch.Tensor:
    """n maps cycling through: blobs (1-6), flat, single-pixel peaks, blobs + noise, negative blobs."""
    maps = []
    for i in range(n):
        kind = i % 6
        if kind in (0, 1):
            m = blobs(h, w, 1 + i % 6, generator, torch.float64)
        elif kind == 2:
            m = torch.full((h, w), float(torch.rand((), generator=generator)) - 0.5, dtype=torch.float64)
        elif kind == 3:
            m = single_pixels(h, w, 1 + i % 4, generator, torch.float64)
        elif kind == 4:
            m = blobs(h, w, 3, generator, torch.float64) + 0.05 * torch.rand(h, w, generator=generator,
                                                                                dtype=torch.float64)
        else:
            m = -blobs(h, w, 2, generator, torch.float64) * 3 + 1
        maps.append(m)
    return torch.stack(maps).to(dtype)
