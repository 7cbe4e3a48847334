import pytest

from benchmarks.conftest import params_for, run_forward, run_forward_backward

PARAMS = params_for("select_hard_negatives")


@pytest.mark.parametrize("case,impl", PARAMS)
def test_select_hard_negatives_forward(benchmark, case, impl):
    run_forward(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", PARAMS)
def test_select_hard_negatives_forward_backward(benchmark, case, impl):
    run_forward_backward(benchmark, case, impl)
