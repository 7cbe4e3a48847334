"""Evaluation: pointing game / bbox accuracy per object-count subset, PNG grids."""
from dapo_fast.eval.grounding import evaluate, format_table, save_grid

__all__ = ["evaluate", "format_table", "save_grid"]
