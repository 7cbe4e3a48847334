import pytest

from benchmarks.conftest import params_for, run_forward, run_forward_backward

PARAMS = params_for("momentum_update_")


@pytest.mark.parametrize("case,impl", PARAMS)
def test_momentum_update__forward(benchmark, case, impl):
    run_forward(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", PARAMS)
def test_momentum_update__forward_backward(benchmark, case, impl):
    run_forward_backward(benchmark, case, impl)
