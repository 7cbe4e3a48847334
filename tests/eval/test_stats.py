import itertools
import math

import pytest
import torch

from dapo_fast.eval.stats import (Interval, bootstrap_interval, paired_bootstrap_difference, student_t_quantile,
                                  t_interval)


def test_bootstrap_interval_hand_computed():
    # one hit among four samples: a resample's mean is k/4 with k ~ Binomial(4, 1/4),
    # P(k <= 0) = 0.316 and P(k <= 2) = 0.949 < 0.975 < P(k <= 3) = 0.996: the 95% interval is [0, 3/4]
    ci = bootstrap_interval([0.0, 0.0, 0.0, 1.0], resamples=20000, seed=0)
    assert ci == Interval(0.25, 0.0, 0.75, 0.95)


def test_bootstrap_resamples_whole_test_samples():
    # image A has two hits, B, C, D one miss each; resampling images (not entities): enumerate the
    # 4^4 equally likely resamples for the exact distribution of hits / entities
    values, groups = [1.0, 1.0, 0.0, 0.0, 0.0], [7, 7, 3, 5, 9]
    per_image = [(2, 2), (0, 1), (0, 1), (0, 1)]
    stats = sorted(sum(per_image[i][0] for i in pick) / sum(per_image[i][1] for i in pick)
                   for pick in itertools.product(range(4), repeat=4))
    cdf = lambda x: sum(s <= x + 1e-12 for s in stats) / len(stats)  # noqa: E731
    lo_exact = min(s for s in stats if cdf(s) >= 0.025)
    hi_exact = min(s for s in stats if cdf(s) >= 0.975)
    assert (lo_exact, hi_exact) == (0.0, 6 / 7)  # by hand: P(at most two A) = 243/256 = 0.949 < 0.975, three A and one other = 6/7
    ci = bootstrap_interval(values, groups, resamples=20000, seed=1)
    assert ci.mean == pytest.approx(0.4)
    assert ci.low == lo_exact and ci.high == pytest.approx(hi_exact)
    # resampling entities instead would give a different (narrower) interval
    assert bootstrap_interval(values, resamples=20000, seed=1).high < hi_exact


def test_bootstrap_is_seeded_and_constant_data_has_zero_width():
    v = torch.rand(300, generator=torch.Generator().manual_seed(3))
    assert bootstrap_interval(v, seed=5) == bootstrap_interval(v, seed=5)
    assert bootstrap_interval(v, seed=5) != bootstrap_interval(v, seed=6)
    ci = bootstrap_interval(torch.full((50,), 0.7))
    assert ci.low == pytest.approx(0.7) and ci.high == pytest.approx(0.7)
    ci = bootstrap_interval(v)
    assert ci.low < ci.mean < ci.high


def test_bootstrap_width_matches_the_normal_approximation():
    # 2000 Bernoulli(0.8) values: the 95% interval's half-width is about 1.96 * sqrt(p(1-p)/n)
    v = (torch.rand(2000, generator=torch.Generator().manual_seed(0)) < 0.8).double()
    ci = bootstrap_interval(v, resamples=4000)
    p = float(v.mean())
    half = 1.96 * math.sqrt(p * (1 - p) / 2000)
    assert (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.1)


def test_bootstrap_empty_nan_and_bad_arguments():
    assert all(math.isnan(x) for x in (bootstrap_interval([]).mean, bootstrap_interval([]).low))
    ci = bootstrap_interval([1.0, float("nan"), 0.0])
    assert math.isnan(ci.mean) and math.isnan(ci.low) and math.isnan(ci.high)
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval([1.0], level=1.5)
    with pytest.raises(ValueError, match="groups"):
        bootstrap_interval([1.0, 0.0], groups=[0])
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_interval([1.0], resamples=0)


def test_paired_difference():
    a = [1.0, 1.0, 1.0, 0.0]
    b = [0.0, 1.0, 1.0, 0.0]
    # a - b = [1, 0, 0, 0]: the same binomial case as above, shifted to the difference
    assert paired_bootstrap_difference(a, b, resamples=20000) == Interval(0.25, 0.0, 0.75, 0.95)
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap_difference([1.0], [1.0, 0.0])


def test_student_t_quantile_against_closed_forms():
    # df = 1 (Cauchy): tan(pi (p - 1/2)); df = 2: (2p - 1) / sqrt(2 p (1 - p))
    for p in (0.6, 0.9, 0.975, 0.995):
        assert student_t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-8)
        assert student_t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-8)
    assert student_t_quantile(0.025, 2) == pytest.approx(-student_t_quantile(0.975, 2))
    assert student_t_quantile(0.975, 3) == pytest.approx(3.182446305284263, rel=1e-8)  # printed tables: 3.182
    assert student_t_quantile(0.975, 100000) == pytest.approx(1.959963984540054, rel=1e-4)  # the normal's
    with pytest.raises(ValueError, match="df"):
        student_t_quantile(0.9, 0)
    with pytest.raises(ValueError, match="p must"):
        student_t_quantile(1.0, 3)


def test_t_interval_hand_computed():
    # seeds giving 1, 2, 3: mean 2, s = 1, half-width t_{0.975, 2} / sqrt(3) = 4.3027 / 1.7321 = 2.4841
    ci = t_interval([1.0, 2.0, 3.0])
    assert ci.mean == 2.0
    assert ci.low == pytest.approx(2 - 2.4841377, abs=1e-6) and ci.high == pytest.approx(2 + 2.4841377, abs=1e-6)
    one = t_interval([97.5])
    assert one.mean == 97.5 and math.isnan(one.low) and math.isnan(one.high)
    assert Interval(97.5, 96.81, 98.14).format() == "97.5 [96.8, 98.1]"
