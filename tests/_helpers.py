"""Small helpers the op tests share."""
import torch

# tolerance per dtype for comparing a backend with the reference
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=1e-2, atol=1e-2),
    torch.bfloat16: dict(rtol=5e-2, atol=5e-2),
}

CPU_BACKENDS = ["cpu", "reference"]


def poisoned_empty_like(t: torch.Tensor) -> torch.Tensor:
    """NaN-filled buffer: a kernel that forgets to write an element leaves NaN behind."""
    return torch.full_like(t, float("nan"))


def non_contiguous(t: torch.Tensor) -> torch.Tensor:
    """Same values, non-contiguous strides (every other element of a twice-wider last dim)."""
    wide = torch.empty(*t.shape[:-1], t.shape[-1] * 2, dtype=t.dtype, device=t.device)
    out = wide[..., ::2]
    out.copy_(t)
    assert not out.is_contiguous() or t.numel() <= 1
    return out.requires_grad_(t.requires_grad)
