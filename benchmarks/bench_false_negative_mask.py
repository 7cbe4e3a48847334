import pytest

from benchmarks.conftest import params_for, run_forward, run_forward_backward

PARAMS = params_for("false_negative_mask")


@pytest.mark.parametrize("case,impl", PARAMS)
def test_false_negative_mask_forward(benchmark, case, impl):
    run_forward(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", PARAMS)
def test_false_negative_mask_forward_backward(benchmark, case, impl):
    run_forward_backward(benchmark, case, impl)
