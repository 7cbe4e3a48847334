"""Result tables: dotted columns, intervals over test samples for single runs, over seeds for seed groups."""
import pytest

from dapo_fast.eval.table import BOOTSTRAP_NOTE, SEEDS_NOTE, difference, format_differences, format_table

COLS = [("PG", "pointing"), ("PG 6+", "subsets.6+.pointing")]


def _run(pointing, ci=None, hits=None):
    r = {"pointing": pointing, "subsets": {"6+": {"pointing": 25.0}}}
    if ci is not None:
        r["pointing_ci"] = ci
    if hits is not None:
        r["per_entity"] = {"pointing": hits, "sample": list(range(len(hits)))}
    return r


def test_single_results_show_their_bootstrap_interval():
    table = format_table({"a": _run(50.0, [40.0, 60.0])}, COLS)
    lines = table.splitlines()
    assert lines[0] == "| run | PG | PG 6+ |"
    assert "| a | 50.0 [40.0, 60.0] | 25.0 |" in table  # the subset has no interval stored: value only
    assert lines[-1] == f"({BOOTSTRAP_NOTE})"


def test_seed_groups_show_the_mean_and_the_t_interval_over_seeds():
    group = {"seeds": [_run(40.0, [30.0, 50.0]), _run(60.0), _run(50.0)]}
    table = format_table({"g": group}, COLS)
    # mean 50, s = 10, half-width t_{0.975, 2} * 10 / sqrt(3) = 4.3027 * 5.7735 = 24.84
    assert "| g | 50.0 [25.2, 74.8] | 25.0 [25.0, 25.0] |" in table
    assert table.splitlines()[-1] == f"({SEEDS_NOTE})"
    mixed = format_table({"g": group, "a": _run(50.0, [40.0, 60.0])}, COLS)
    assert mixed.splitlines()[-1] == f"({SEEDS_NOTE}; {BOOTSTRAP_NOTE})"


def test_seed_intervals_stay_inside_the_percentage_range():
    # mean 80, s = 20: the t interval 80 +- 49.7 is cut at 100 (and one at 0 from below)
    high = format_table({"g": {"seeds": [_run(100.0), _run(60.0), _run(80.0)]}}, COLS)
    assert "| g | 80.0 [30.3, 100.0] |" in high
    low = format_table({"g": {"seeds": [_run(0.0), _run(40.0), _run(20.0)]}}, COLS)
    assert "| g | 20.0 [0.0, 69.7] |" in low


def test_differences_paired_over_test_samples_for_single_runs():
    rows = {"none": _run(50.0, hits=[0.0, 1.0, 1.0, 0.0]), "both": _run(75.0, hits=[1.0, 1.0, 1.0, 0.0])}
    # per-entity differences [1, 0, 0, 0]: a resample's mean is k/4, k ~ Binomial(4, 1/4): 95% [0, 3/4]
    d = difference(rows["both"], rows["none"], "pointing")
    assert (d.mean, d.low, d.high) == (25.0, 0.0, 75.0)
    table = format_differences(rows, COLS, "none")
    assert "| run | Δ PG vs none |" in table and "| both | 25.0 [0.0, 75.0] |" in table
    assert "paired bootstrap" in table.splitlines()[-1]
    other_test_set = _run(75.0, hits=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="same test entities"):
        difference(other_test_set, rows["none"], "pointing")


def test_differences_over_seeds_pair_seed_i_with_seed_i():
    rows = {"none": {"seeds": [_run(40.0), _run(55.0), _run(62.0)]},
            "both": {"seeds": [_run(50.0), _run(60.0), _run(70.0)]}}
    # differences 10, 5, 8: mean 7.667, s = 2.5166, half-width 4.3027 * 2.5166 / sqrt(3) = 6.252
    d = difference(rows["both"], rows["none"], "pointing")
    assert d.mean == pytest.approx(23 / 3) and d.low == pytest.approx(23 / 3 - 6.2516, abs=1e-3)
    assert "| both | 7.7 [1.4, 13.9] |" in format_differences(rows, COLS, "none")
    with pytest.raises(ValueError, match="same number of seeds"):
        difference({"seeds": [_run(1.0), _run(2.0)]}, rows["none"], "pointing")
