"""momentum_update_: the multi-tensor EMA vs the reference loop."""
import pytest
import torch

import dapo_fast
from dapo_fast.ops import momentum_update_
from dapo_fast.ops._reference.momentum_update import momentum_update_ as reference
from dapo_fast.ops._reference.momentum_update import momentum_update_lerp_loop_
from tests._helpers import TOL

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


def tensors(dtype=torch.float32):
    shapes = [(3, 4), (100_003,), (1,), (0,), (7, 5, 3), (40_000, 3)]
    return [torch.randn(s, dtype=dtype) for s in shapes], [torch.randn(s, dtype=dtype) for s in shapes]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("momentum", [0.0, 0.99, 1.0])
def test_matches_reference(seed, dtype, momentum):
    teacher, student = tensors(dtype)
    want = [t.clone() for t in teacher]
    reference(want, student, momentum)
    momentum_update_(teacher, student, momentum, backend="cpu")
    for got, w in zip(teacher, want):
        torch.testing.assert_close(got, w, **TOL[dtype])
    lerp = [t.clone() for t in want]
    momentum_update_lerp_loop_(lerp, student, 0.5)


def test_modules_mixed_dtypes_and_non_contiguous(seed):
    student = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 2).double())
    teacher = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 2).double())
    want = [p.detach().clone() for p in teacher.parameters()]
    reference(want, [p.detach() for p in student.parameters()], 0.9)
    momentum_update_(teacher, student, 0.9)
    for p, w in zip(teacher.parameters(), want):
        torch.testing.assert_close(p.detach(), w)
    base = torch.randn(6, 8)
    view = base[:, ::2]                       # non-contiguous teacher: ATen fallback
    other = torch.randn(6, 4)
    want = view * 0.5 + other * 0.5
    momentum_update_([view], [other], 0.5)
    torch.testing.assert_close(base[:, ::2], want)


def test_opcheck(seed):
    teacher, student = tensors()
    torch.library.opcheck(torch.ops.dapo_fast.momentum_update_.default, (teacher[:3], student[:3], 0.9))


def test_compile_fullgraph(seed):
    teacher, student = tensors()
    eager = [t.clone() for t in teacher]
    compiled = [t.clone() for t in teacher]
    momentum_update_(eager, student, 0.9)
    torch.compile(lambda t, s: momentum_update_(t, s, 0.9), fullgraph=True)(compiled, student)
    for got, want in zip(compiled, eager):
        assert torch.equal(got, want)
    assert not torch.equal(compiled[0], teacher[0])


class TestBadInputs:
    def test_lengths_shapes_dtypes(self):
        with pytest.raises(ValueError, match="same number"):
            momentum_update_([torch.zeros(2)], [], 0.9)
        with pytest.raises(ValueError, match=r"teacher\[0\] and student\[0\]"):
            momentum_update_([torch.zeros(2)], [torch.zeros(3)], 0.9)
        with pytest.raises(TypeError, match=r"teacher\[0\] and student\[0\]"):
            momentum_update_([torch.zeros(2)], [torch.zeros(2, dtype=torch.float64)], 0.9)
        with pytest.raises(TypeError, match=r"teacher\[0\]"):
            momentum_update_([torch.zeros(2, dtype=torch.int64)], [torch.zeros(2, dtype=torch.int64)], 0.9)
        with pytest.raises(ValueError, match=r"student\[0\]"):
            momentum_update_([torch.zeros(2)], [torch.zeros(2, device="meta")], 0.9)
        with pytest.raises(TypeError, match="teacher"):
            momentum_update_(torch.zeros(2), [torch.zeros(2)], 0.9)
        with pytest.raises(RuntimeError, match="same shape"):
            torch.ops.dapo_fast.momentum_update_([torch.zeros(2)], [torch.zeros(3)], 0.9)

    @pytest.mark.parametrize("momentum", [-0.1, 1.5])
    def test_momentum_range(self, momentum):
        with pytest.raises(ValueError, match="momentum"):
            momentum_update_([torch.zeros(2)], [torch.zeros(2)], momentum)
        with pytest.raises(RuntimeError, match="momentum"):
            torch.ops.dapo_fast.momentum_update_([torch.zeros(2)], [torch.zeros(2)], momentum)


@pytest.mark.triton
def test_triton_matches_reference(seed):
    teacher = [torch.randn(3, 4), torch.randn(2000), torch.randn(5, 6)[:, ::2]]
    student = [torch.randn(3, 4), torch.randn(2000), torch.randn(5, 3)]
    want = [t.clone() for t in teacher]
    reference(want, student, 0.99)
    momentum_update_(teacher, student, 0.99, backend="triton")
    for got, w in zip(teacher, want):
        torch.testing.assert_close(got, w, **TOL[torch.float32])


@pytest.mark.triton
def test_triton_opcheck_under_interpreter(seed):
    from dapo_fast.ops._triton.momentum_update import momentum_update_triton_

    torch.library.opcheck(momentum_update_triton_, (torch.randn(100), torch.randn(100), 0.9),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backends(seed, backend):
    teacher, student = tensors()
    want = [t.clone() for t in teacher]
    reference(want, student, 0.9)
    gpu_t, gpu_s = [t.cuda() for t in teacher], [s.cuda() for s in student]
    momentum_update_(gpu_t, gpu_s, 0.9, backend=backend)
    for got, w in zip(gpu_t, want):
        torch.testing.assert_close(got.cpu(), w, **TOL[torch.float32])
    if backend == "cuda":
        torch.library.opcheck(torch.ops.dapo_fast.momentum_update_.default, (gpu_t[:3], gpu_s[:3], 0.9))
