"""The public ops: one module per op, stable signatures, ``backend=`` on each.

    from dapo_fast.ops import roi_align
"""
from dapo_fast.ops._backend import BACKENDS, use_backend
from dapo_fast.ops.roi_align import RoIAlign, roi_align

__all__ = ["BACKENDS", "use_backend", "roi_align", "RoIAlign"]
from dapo_fast.ops.cross_attention_probs_mean import cross_attention_probs_mean  # noqa: E402
from dapo_fast.ops.dapo_losses import attention_guidance_loss, diffusion_guided_loss  # noqa: E402

__all__ += ["cross_attention_probs_mean", "attention_guidance_loss", "diffusion_guided_loss"]
