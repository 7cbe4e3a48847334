"""The public ops: one module per op, stable signatures, ``backend=`` on each.

    from dapo_fast.ops import roi_align
"""
from dapo_fast.ops._backend import BACKENDS, use_backend
from dapo_fast.ops.roi_align import RoIAlign, roi_align

__all__ = ["BACKENDS", "use_backend", "roi_align", "RoIAlign"]
from dapo_fast.ops.false_negative_mask import false_negative_mask  # noqa: E402
from dapo_fast.ops.momentum_update import momentum_update_  # noqa: E402
from dapo_fast.ops.pseudo_label_contrastive_loss import pseudo_label_contrastive_loss  # noqa: E402
from dapo_fast.ops.select_hard_negatives import select_hard_negatives  # noqa: E402

__all__ += ["false_negative_mask", "pseudo_label_contrastive_loss", "momentum_update_", "select_hard_negatives"]
