"""The public ops: one module per op, stable signatures, ``backend=`` on each.

    from dapo_fast.ops import roi_align
"""
from dapo_fast.ops._backend import BACKENDS, use_backend
# ReIR / detection
from dapo_fast.ops.roi_align import RoIAlign, roi_align
from dapo_fast.ops.box_iou import box_accuracy, box_iou
from dapo_fast.ops.box_coder import box_decode, box_encode
from dapo_fast.ops.self_taught_targets import self_taught_targets
from dapo_fast.ops.weighted_smooth_l1 import weighted_smooth_l1
# PCNet
from dapo_fast.ops.proposal_alignment import proposal_alignment
from dapo_fast.ops.soft_iou import soft_iou
from dapo_fast.ops.region_ambiguity import region_ambiguity
# MPL / QueryMatch
from dapo_fast.ops.false_negative_mask import false_negative_mask
from dapo_fast.ops.pseudo_label_contrastive_loss import pseudo_label_contrastive_loss
from dapo_fast.ops.momentum_update import momentum_update_
from dapo_fast.ops.select_hard_negatives import select_hard_negatives
# DAPO
from dapo_fast.ops.cross_attention_probs_mean import cross_attention_probs_mean
from dapo_fast.ops.attention_guidance_loss import attention_guidance_loss
from dapo_fast.ops.diffusion_guided_loss import diffusion_guided_loss
# grounding metrics (WWbL / DAPO / PCNet evaluation)
from dapo_fast.ops.heatmap_to_box import heatmap_to_box
from dapo_fast.ops.pointing_game import pointing_game, pointing_game_masks, resized_argmax

__all__ = [
    "BACKENDS", "use_backend",
    "roi_align", "RoIAlign", "box_iou", "box_accuracy", "box_encode", "box_decode", "self_taught_targets",
    "weighted_smooth_l1",
    "proposal_alignment", "soft_iou", "region_ambiguity",
    "false_negative_mask", "pseudo_label_contrastive_loss", "momentum_update_", "select_hard_negatives",
    "cross_attention_probs_mean", "attention_guidance_loss", "diffusion_guided_loss",
    "heatmap_to_box", "pointing_game", "pointing_game_masks", "resized_argmax",
]
