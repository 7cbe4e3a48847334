import pytest

from benchmarks.conftest import params_for, run_forward, run_forward_backward

PARAMS = params_for("diffusion_guided_loss")


@pytest.mark.parametrize("case,impl", PARAMS)
def test_diffusion_guided_loss_forward(benchmark, case, impl):
    run_forward(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", PARAMS)
def test_diffusion_guided_loss_forward_backward(benchmark, case, impl):
    run_forward_backward(benchmark, case, impl)
