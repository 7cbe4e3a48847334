"""The public ops: one module per op, stable signatures, ``backend=`` on each.

    from dapo_fast.ops import roi_align
"""
from dapo_fast.ops._backend import BACKENDS, use_backend
from dapo_fast.ops.roi_align import RoIAlign, roi_align

__all__ = ["BACKENDS", "use_backend", "roi_align", "RoIAlign"]
