"""Evaluation: metrics through dapo_fast.ops, result tables, PNG grids."""
from dapo_fast.eval.grounding import evaluate, save_grid
from dapo_fast.eval.table import format_table

__all__ = ["evaluate", "format_table", "save_grid"]
