"""Markdown tables of evaluation results, for any method.

A result is the nested dict a method's ``evaluate`` returns; a column is (header, dotted path into
it), e.g. ("PG 6+", "subsets.6+.pointing"). A row that holds several seeds' results
(``{"seeds": [result, ...]}``) shows the mean and the standard deviation over the seeds.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple


def lookup(result: Dict, path: str) -> float:
    node = result
    for key in path.split("."):
        node = node[key]
    return float(node)


def seed_values(row: Dict, path: str) -> List[float]:
    """The column's value in each seed of a row (one value for a single-run row)."""
    runs = row["seeds"] if "seeds" in row else [row]
    return [lookup(r, path) for r in runs]


def mean_and_spread(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def format_cell(values: Sequence[float]) -> str:
    mean, spread = mean_and_spread(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {spread:.1f}"


def format_table(rows: Dict[str, Dict], columns: Sequence[Tuple[str, str]]) -> str:
    """One row per named result (or per named group of seed results), one column per metric."""
    head = "| run | " + " | ".join(h for h, _ in columns) + " |"
    sep = "|" + "---|" * (1 + len(columns))
    lines = [head, sep]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(format_cell(seed_values(row, path)) for _, path in columns) + " |")
    if any("seeds" in row and len(row["seeds"]) > 1 for row in rows.values()):
        lines.append("")
        lines.append("(mean ± standard deviation over seeds)")
    return "\n".join(lines)
