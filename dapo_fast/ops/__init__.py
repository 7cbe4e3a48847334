"""The public ops: one module per op, stable signatures, ``backend=`` on each.

    from dapo_fast.ops import roi_align
"""
from dapo_fast.ops._backend import BACKENDS, use_backend
from dapo_fast.ops.roi_align import RoIAlign, roi_align

__all__ = ["BACKENDS", "use_backend", "roi_align", "RoIAlign"]
from dapo_fast.ops.box_iou import box_accuracy, box_iou
from dapo_fast.ops.heatmap_to_box import heatmap_to_box
from dapo_fast.ops.pointing_game import pointing_game, pointing_game_masks, resized_argmax

__all__ += ["box_iou", "box_accuracy", "heatmap_to_box", "pointing_game", "pointing_game_masks", "resized_argmax"]
from dapo_fast.ops.proposal_alignment import proposal_alignment
from dapo_fast.ops.region_ambiguity import region_ambiguity
from dapo_fast.ops.soft_iou import soft_iou

__all__ += ["proposal_alignment", "region_ambiguity", "soft_iou"]
from dapo_fast.ops.box_coder import box_decode, box_encode
from dapo_fast.ops.self_taught_targets import self_taught_targets
from dapo_fast.ops.weighted_smooth_l1 import weighted_smooth_l1

__all__ += ["box_encode", "box_decode", "self_taught_targets", "weighted_smooth_l1"]
from dapo_fast.ops.cross_attention_probs_mean import cross_attention_probs_mean  # noqa: E402
from dapo_fast.ops.dapo_losses import attention_guidance_loss, diffusion_guided_loss  # noqa: E402

__all__ += ["cross_attention_probs_mean", "attention_guidance_loss", "diffusion_guided_loss"]
