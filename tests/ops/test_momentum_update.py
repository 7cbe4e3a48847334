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


def test_reference_reads_each_pair_before_writing_it():
    """A student that is its teacher (or overlaps it) leaves the teacher as the EMA of the old
    values: the reference used to scale the teacher in place before reading the student."""
    base = torch.randn(10, dtype=torch.float64)
    teacher = base.clone()
    reference([teacher], [teacher], 0.9)
    torch.testing.assert_close(teacher, base, **TOL[torch.float64])
    buffer = base.clone()
    reference([buffer[2:8]], [buffer[:6]], 0.5)  # overlapping views of one buffer
    torch.testing.assert_close(buffer[2:8], 0.5 * base[2:8] + 0.5 * base[:6], **TOL[torch.float64])


@pytest.mark.parametrize("backend", ["cpu", "reference", pytest.param("triton", marks=pytest.mark.triton)])
def test_overlapping_tensors_are_refused(backend):
    """The kernels read a student while writing its teacher (through __restrict pointers in C++):
    a teacher that shares memory with any other tensor of the call, or is expanded, is refused."""
    a, b = torch.randn(6), torch.randn(6)
    buffer = torch.randn(20)
    with pytest.raises(ValueError, match=r"student\[0\] shares memory with teacher\[0\]|teacher\[0\] shares"):
        momentum_update_([a], [a], 0.9, backend=backend)
    with pytest.raises(ValueError, match=r"teacher\[1\] shares memory with teacher\[0\]|teacher\[0\] shares"):
        momentum_update_([a, a], [b, b], 0.9, backend=backend)
    with pytest.raises(ValueError, match="shares memory"):
        momentum_update_([buffer[:10]], [buffer[5:15]], 0.9, backend=backend)
    with pytest.raises(ValueError, match=r"teacher\[0\] must not be an expanded tensor"):
        momentum_update_([torch.zeros(1).expand(6)], [b], 0.9, backend=backend)
    students = torch.randn(12)  # students may share memory with each other: they are only read
    momentum_update_([buffer[:10], buffer[10:]], [students[:10], students[2:]], 0.9, backend=backend)
    if backend == "cpu":  # the C++ op checks by itself
        with pytest.raises(RuntimeError, match=r"student\[0\] shares memory with teacher\[0\]"):
            torch.ops.dapo_fast.momentum_update_([a], [a], 0.9)


@pytest.mark.triton
def test_triton_float64_is_computed_in_float64(seed):
    # the Triton kernel used to compute every dtype in float32 (float64 results off by ~1e-8)
    teacher, student = [torch.randn(1000, dtype=torch.float64)], [torch.randn(1000, dtype=torch.float64)]
    want = [t.clone() for t in teacher]
    reference(want, student, 0.99)
    momentum_update_(teacher, student, 0.99, backend="triton")
    torch.testing.assert_close(teacher, want, **TOL[torch.float64])


@pytest.mark.parametrize("momentum", [None, "0.9", True, torch.tensor(0.9), float("nan")])
def test_momentum_must_be_a_number(momentum):
    with pytest.raises((TypeError, ValueError), match="momentum"):
        momentum_update_([torch.zeros(2)], [torch.zeros(2)], momentum)
