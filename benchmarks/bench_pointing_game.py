import pytest

from benchmarks.conftest import params_for, run_forward, run_forward_backward

PARAMS = params_for("pointing_game")


@pytest.mark.parametrize("case,impl", PARAMS)
def test_pointing_game_forward(benchmark, case, impl):
    run_forward(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", PARAMS)
def test_pointing_game_forward_backward(benchmark, case, impl):
    run_forward_backward(benchmark, case, impl)
