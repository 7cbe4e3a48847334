"""Confidence intervals for evaluation tables.

* ``bootstrap_interval``: percentile bootstrap of a mean over test samples. The values are per entity
  (a pointing-game hit, a bbox hit), but the unit that was sampled is the test image: an image's
  entities share its scene and succeed or fail together, so whole images are resampled (a cluster
  bootstrap) and the statistic is hits / entities over the resampled images.
* ``paired_bootstrap_difference``: the same resampling applied to two runs evaluated on the same test
  samples, giving an interval for the difference of their means (whether two methods differ on this
  test set).
* ``t_interval``: across training seeds, Student's t interval of the mean of the per-seed results
  (few seeds: the bootstrap would understate the spread).

Every function returns an :class:`Interval` (``mean``, ``low``, ``high``); resampling is seeded, so
the same inputs give the same interval.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional, Sequence

import torch

DEFAULT_RESAMPLES = 2000


@dataclasses.dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    level: float = 0.95

    def format(self, digits: int = 1) -> str:
        """``"97.5 [96.8, 98.1]"``."""
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def as_dict(self):
        return dataclasses.asdict(self)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _as_values(values) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float64).flatten()


def _group_sums(values: torch.Tensor, groups: Optional[torch.Tensor]):
    """Per-group sums and sizes [G] (groups relabelled 0..G-1); every value its own group when None."""
    if groups is None:
        return values, torch.ones_like(values)
    g = torch.as_tensor(groups).flatten()
    if g.shape != values.shape:
        raise ValueError(f"groups must have one entry per value ({values.numel()}), got {g.numel()}")
    _, label = torch.unique(g, return_inverse=True)
    G = int(label.max()) + 1 if label.numel() else 0
    sums = torch.zeros(G, dtype=torch.float64).index_add_(0, label, values)
    sizes = torch.zeros(G, dtype=torch.float64).index_add_(0, label, torch.ones_like(values))
    return sums, sizes


def _resample_indices(num_groups: int, resamples: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(num_groups, (resamples, num_groups), generator=gen)


def _percentiles(stats: torch.Tensor, level: float):
    alpha = (1.0 - level) / 2
    q = torch.quantile(stats, torch.tensor([alpha, 1.0 - alpha], dtype=stats.dtype))
    return float(q[0]), float(q[1])


def bootstrap_interval(values, groups=None, *, level: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                       seed: int = 0) -> Interval:
    """Percentile-bootstrap interval of ``mean(values)``.

    values: [N] per-entity numbers (hits as 0/1, or any score); groups: [N] the test sample each
    value belongs to (resampled as a whole; None = every value its own sample). ``mean`` is the plain
    mean of ``values``. Empty input gives NaNs; a NaN value makes every field NaN.
    """
    _check_level(level)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    v = _as_values(values)
    if v.numel() == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, level)
    sums, sizes = _group_sums(v, groups)
    idx = _resample_indices(sums.numel(), resamples, seed)
    stats = sums[idx].sum(1) / sizes[idx].sum(1)
    mean = float(v.mean())
    if math.isnan(mean):
        return Interval(mean, mean, mean, level)
    low, high = _percentiles(stats, level)
    return Interval(mean, low, high, level)


def percent_with_intervals(columns: Dict[str, torch.Tensor], groups=None) -> Dict[str, object]:
    """``{name: 100 * mean, name + "_ci": [low, high]}`` (percent) of each column's per-entity values
    (0/1 hits or scores in [0, 1]), with its percentile-bootstrap interval over ``groups`` (the test
    sample of each value; None = every value its own sample)."""
    out: Dict[str, object] = {}
    for name, values in columns.items():
        ci = bootstrap_interval(values, groups)
        out[name] = 100.0 * ci.mean
        out[name + "_ci"] = [100.0 * ci.low, 100.0 * ci.high]
    return out


def paired_bootstrap_difference(values_a, values_b, groups=None, *, level: float = 0.95,
                                resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Interval:
    """Interval for ``mean(values_a) - mean(values_b)`` when both were measured on the same entities
    (same order, same ``groups``): each resample draws the same test samples for both."""
    _check_level(level)
    a, b = _as_values(values_a), _as_values(values_b)
    if a.shape != b.shape:
        raise ValueError(f"values_a and values_b must be paired (same length), got {a.numel()} and {b.numel()}")
    return bootstrap_interval(a - b, groups, level=level, resamples=resamples, seed=seed)


def student_t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t distribution with ``df`` degrees of freedom: bisection on its CDF.

    With t = sqrt(df) * tan(u) the CDF is 0.5 + c * sqrt(df) * integral_0^atan(x / sqrt(df)) cos(u)^(df-1) du
    (c the density's normalising constant): a smooth, bounded integrand that Simpson's rule
    integrates to ~1e-10."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(math.pi))

    def cdf(x: float) -> float:
        n = 400  # even
        h = math.atan(x / math.sqrt(df)) / n
        total = sum(math.cos(i * h) ** (df - 1) * (1 if i in (0, n) else 4 if i % 2 else 2) for i in range(n + 1))
        return 0.5 + scale * total * h / 3

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Student's t interval of the mean of independent runs (e.g. one result per training seed):
    mean +- t_{(1+level)/2, n-1} * s / sqrt(n). One value gives NaN bounds (no spread to measure)."""
    _check_level(level)
    v = _as_values(values)
    n = v.numel()
    if n == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, level)
    mean = float(v.mean())
    if n == 1:
        return Interval(mean, float("nan"), float("nan"), level)
    half = student_t_quantile((1 + level) / 2, n - 1) * float(v.std(unbiased=True)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, level)
