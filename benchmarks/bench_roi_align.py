import pytest

from benchmarks.conftest import params_for, run_forward, run_forward_backward

PARAMS = params_for("roi_align")


@pytest.mark.parametrize("case,impl", PARAMS)
def test_roi_align_forward(benchmark, case, impl):
    run_forward(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", PARAMS)
def test_roi_align_forward_backward(benchmark, case, impl):
    run_forward_backward(benchmark, case, impl)
