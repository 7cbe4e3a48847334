"""Markdown tables of evaluation results, for any method, with 95% confidence intervals.

A result is the nested dict a method's ``evaluate`` returns; a column is (header, dotted path into
it), e.g. ("PG 6+", "subsets.6+.pointing"). A single run's cell shows the value and, when the
result holds it next to the value (``"pointing_ci": [low, high]``), its bootstrap interval over test
samples. A row that holds several seeds' results (``{"seeds": [result, ...]}``) shows the mean over
the seeds and Student's t interval over the seeds (:mod:`dapo_fast.eval.stats`).

``format_differences`` compares every row with a baseline row: for single runs a paired bootstrap
over the test samples (from the results' ``per_entity`` values), for seed groups the t interval of
the per-seed differences (seed i of a row against seed i of the baseline).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from dapo_fast.eval.stats import Interval, paired_bootstrap_difference, t_interval

BOOTSTRAP_NOTE = "value [95% bootstrap interval over test samples]"
SEEDS_NOTE = "mean over seeds [95% t interval over seeds]"


def lookup(result: Dict, path: str):
    node = result
    for key in path.split("."):
        node = node[key]
    return node


def seed_values(row: Dict, path: str) -> List[float]:
    """The column's value in each seed of a row (one value for a single-run row)."""
    return [float(lookup(r, path)) for r in runs_of(row)]


def runs_of(row: Dict) -> List[Dict]:
    return row["seeds"] if "seeds" in row else [row]


def interval_of(result: Dict, path: str) -> Optional[Interval]:
    """The value at ``path`` with its stored interval (the ``<key>_ci`` entry beside it), or None."""
    parent, _, key = path.rpartition(".")
    node = lookup(result, parent) if parent else result
    ci = node.get(key + "_ci")
    return None if ci is None else Interval(float(node[key]), float(ci[0]), float(ci[1]))


def cell(row: Dict, path: str) -> Interval:
    """A row's entry for one column: the run's value and interval, or the seeds' mean and t interval.
    Every column of these tables is a percentage, so a t interval reaching past 0 or 100 (few
    seeds, a wide spread) is cut at the range; the mean is unchanged."""
    runs = runs_of(row)
    if len(runs) > 1:
        ci = t_interval(seed_values(row, path))
        return Interval(ci.mean, max(ci.low, 0.0), min(ci.high, 100.0), ci.level) if ci.low == ci.low else ci
    ci = interval_of(runs[0], path)
    if ci is None:
        nan = float("nan")
        return Interval(float(lookup(runs[0], path)), nan, nan)
    return ci


def format_value(ci: Interval) -> str:
    """``"97.5 [96.8, 98.1]"``, or ``"97.5"`` when there is no interval (NaN bounds)."""
    return f"{ci.mean:.1f}" if ci.low != ci.low else ci.format()


def _markdown(rows: Dict[str, List[str]], headers: Sequence[str]) -> List[str]:
    lines = ["| run | " + " | ".join(headers) + " |", "|" + "---|" * (1 + len(headers))]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows.items()]
    return lines


def _note(rows: Dict[str, Dict]) -> str:
    several = [len(runs_of(row)) > 1 for row in rows.values()]
    return "; ".join(([SEEDS_NOTE] if any(several) else []) + ([BOOTSTRAP_NOTE] if not all(several) else []))


def format_table(rows: Dict[str, Dict], columns: Sequence[Tuple[str, str]]) -> str:
    """One row per named result (or per named group of seed results), one column per metric."""
    cells = {name: [format_value(cell(row, path)) for _, path in columns] for name, row in rows.items()}
    return "\n".join(_markdown(cells, [h for h, _ in columns]) + ["", f"({_note(rows)})"])


def difference(row: Dict, baseline: Dict, path: str) -> Interval:
    """``row`` minus ``baseline`` in the top-level metric ``path``, with a 95% interval: paired
    bootstrap over the test samples for single runs, t interval of per-seed differences for seeds."""
    runs, base = runs_of(row), runs_of(baseline)
    if len(runs) != len(base):
        raise ValueError(f"rows must have the same number of seeds to be compared, got {len(runs)} and {len(base)}")
    if len(runs) > 1:
        return t_interval([float(lookup(a, path)) - float(lookup(b, path)) for a, b in zip(runs, base)])
    a, b = runs[0]["per_entity"], base[0]["per_entity"]
    if a["sample"] != b["sample"]:
        raise ValueError("single runs can only be compared on the same test entities")
    d = paired_bootstrap_difference(a[path], b[path], a["sample"])
    return Interval(100.0 * d.mean, 100.0 * d.low, 100.0 * d.high)


def format_differences(rows: Dict[str, Dict], columns: Sequence[Tuple[str, str]], baseline: str) -> str:
    """Every row except ``baseline`` minus the baseline in the top-level columns (e.g. "pointing",
    "bbox"; for single runs those with ``per_entity`` values), in percentage points; "" if none."""
    first = runs_of(rows[baseline])[0]
    several = len(runs_of(rows[baseline])) > 1
    cols = [(h, p) for h, p in columns if "." not in p and (several or p in first.get("per_entity", {}))]
    if not cols:
        return ""
    cells = {name: [format_value(difference(row, rows[baseline], p)) for _, p in cols]
             for name, row in rows.items() if name != baseline}
    note = ("mean of per-seed differences [95% t interval]" if several
            else "difference [95% paired bootstrap interval over test samples]")
    return "\n".join(_markdown(cells, [f"Δ {h} vs {baseline}" for h, _ in cols]) + ["", f"({note})"])
