"""Result tables: dotted columns, seed groups with mean and sample standard deviation."""
import math

from dapo_fast.eval.table import format_table, mean_and_spread


def test_single_results_and_seed_groups():
    one = {"pointing": 50.0, "subsets": {"6+": {"pointing": 25.0}}}
    cols = [("PG", "pointing"), ("PG 6+", "subsets.6+.pointing")]
    table = format_table({"a": one}, cols)
    assert table.splitlines()[0] == "| run | PG | PG 6+ |"
    assert "| a | 50.0 | 25.0 |" in table
    group = {"seeds": [dict(one, pointing=40.0), dict(one, pointing=60.0), dict(one, pointing=50.0)]}
    table = format_table({"g": group}, cols)
    assert "| g | 50.0 ± 10.0 | 25.0 ± 0.0 |" in table  # sd of 40, 60, 50 (n-1) = 10


def test_mean_and_spread_by_hand():
    mean, sd = mean_and_spread([1.0, 2.0, 4.0])
    assert math.isclose(mean, 7 / 3)
    assert math.isclose(sd, math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert mean_and_spread([3.0]) == (3.0, 0.0)
