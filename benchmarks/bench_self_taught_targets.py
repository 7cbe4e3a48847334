import pytest

from benchmarks.conftest import params_for, run_forward, run_forward_backward

PARAMS = params_for("self_taught_targets")


@pytest.mark.parametrize("case,impl", PARAMS)
def test_self_taught_targets_forward(benchmark, case, impl):
    run_forward(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", PARAMS)
def test_self_taught_targets_forward_backward(benchmark, case, impl):
    run_forward_backward(benchmark, case, impl)
