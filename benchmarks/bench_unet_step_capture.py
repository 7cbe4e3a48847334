import pytest

from benchmarks.conftest import params_for, run_forward, run_forward_backward

PARAMS = params_for("unet_step_capture")


@pytest.mark.parametrize("case,impl", PARAMS)
def test_unet_step_capture_forward(benchmark, case, impl):
    run_forward(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", PARAMS)
def test_unet_step_capture_forward_backward(benchmark, case, impl):
    run_forward_backward(benchmark, case, impl)
