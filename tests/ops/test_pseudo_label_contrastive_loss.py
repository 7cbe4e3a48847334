"""pseudo_label_contrastive_loss: every backend vs the reference and MPL's code form; the
compiled training step that uses false_negative_mask + the loss + momentum_update_."""
import random

import pytest
import torch

import dapo_fast
from dapo_fast.ops import false_negative_mask, momentum_update_, pseudo_label_contrastive_loss
from dapo_fast.ops._reference.false_negative_mask import false_negative_mask as fn_reference
from dapo_fast.ops._reference.pseudo_label_contrastive_loss import (
    pseudo_label_contrastive_loss as reference, pseudo_label_contrastive_loss_mpl_code_form as code_form)
from tests._helpers import TOL, non_contiguous

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")

MODES = ["none", "fne", "fnc"]
REDUCTIONS = ["mean", "sum", "none"]


def make(b=None, q=None, k=None, d=None, dtype=torch.float32, dt=None, threshold=None):
    """Random batch; validity masks with all-invalid phrases, regions and whole images."""
    b = b or random.randint(1, 8)
    q = q or random.randint(1, 4)
    k = k or random.randint(1, 12)
    d = d or random.randint(8, 64)
    dt = dt or d
    phrase = torch.randn(b, q, d, dtype=dtype)
    region = torch.randn(b, k, d, dtype=dtype)
    teacher_phrase = torch.randn(b, q, dt, dtype=dtype)
    teacher_region = torch.randn(b, k, dt, dtype=dtype)
    phrase_valid = torch.rand(b, q) > 0.25
    region_valid = torch.rand(b, k) > 0.25
    if b > 1:
        region_valid[random.randrange(b)] = False  # an image without any valid region
        phrase_valid[random.randrange(b)] = False  # an image without any valid phrase
    threshold = random.choice([-1.0, 0.0, 0.2, 0.95, 1.0]) if threshold is None else threshold
    fn_mask = fn_reference(torch.randn(b, k, 6), region_valid, threshold)
    return [phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask]


def run(fn, args, tau, teacher_tau, mode, reduction, **kw):
    p = args[0].detach().clone().requires_grad_()
    r = args[1].detach().clone().requires_grad_()
    out = fn(p, r, *args[2:], tau=tau, teacher_tau=teacher_tau, mode=mode, reduction=reduction, **kw)
    upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    gp, gr = torch.autograd.grad(out, (p, r), upstream)
    return out.detach(), gp, gr


def assert_close_all(got, want, dtype=torch.float32, scale=1.0):
    # float32 logits here reach |q||k|/tau ~ 100, so rounding is ~1e-5 relative to the logits,
    # not to the (possibly small) loss or gradient entries: float32 tolerances are 10x TOL
    if dtype == torch.float32:
        scale *= 10
    tol = {k: v * scale for k, v in TOL[dtype].items()}
    for g, w in zip(got, want):
        assert not torch.isnan(g).any()
        torch.testing.assert_close(g, w, **tol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cpu_matches_reference(seed, poison, mode, reduction):
    for _ in range(3):
        args = make()
        tau, ttau = random.choice([(1.0, 0.3), (0.5, 0.1), (0.07, 1.0)])
        want = run(reference, args, tau, ttau, mode, reduction)
        got = run(pseudo_label_contrastive_loss, args, tau, ttau, mode, reduction, backend="cpu")
        assert_close_all(got, want, scale=10 if tau < 0.1 else 1)


def mpl_public_code(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask, tau,
                    teacher_tau, mode):
    """MPL's training loss as its public code computes it, restated from reading mytrain.py (the
    train loop), utils/utils_loss.py (WSLoss.forward, false_negative_forward, its log_softmax) and
    flow/inner_similarity.py (get_mask_similarity_matrix_by_threshold): [B, B, Q, K] logits and
    masks built the way the code builds them. fn_mask[b, a, k] marks region k of image a as a
    false negative of image b (what the code's region-similarity threshold finds)."""
    finf, eps = torch.finfo(phrase.dtype).max, torch.finfo(phrase.dtype).eps

    def log_softmax(x):
        x = x - x.amax(dim=-1, keepdim=True)
        return x - torch.logsumexp(x, dim=-1, keepdim=True)

    b, q, k = phrase.shape[0], phrase.shape[1], region.shape[1]
    atten = torch.einsum("b q d, a k d -> b a q k", phrase, region)
    x_mask = torch.einsum("b q, b k -> b q k", phrase_valid, region_valid)
    atten_mask = torch.zeros(b, b, q, k, dtype=torch.bool)
    for i, a, d in fn_mask.nonzero().tolist():
        if i != a:  # the code zeroes the similarity of an image with itself first
            atten_mask[i, a, :10, d] = True
    phrase_mask = x_mask[:, :, 0] if k else torch.zeros(b, q, dtype=torch.bool)
    if mode == "fnc":  # mytrain.py's args.falsenegative branch + WSLoss.false_negative_forward
        with torch.no_grad():
            batch_out = torch.einsum("b q d, a k d -> b a q k", teacher_phrase, teacher_region)
            x_mask_b2b = torch.einsum("d b q, d a k -> b a q k", phrase_valid[None], region_valid[None])
            diag_x_mask = torch.zeros(b, b, q, k, dtype=torch.bool)
            for j in range(b):
                diag_x_mask[j][j] = x_mask[j]
            maskout = batch_out.masked_fill(~((x_mask_b2b & atten_mask) | diag_x_mask), -1e11)
            maskout = maskout.permute(0, 2, 1, 3).reshape(b, q, b * k)
            negative = maskout < -1e9
            target = (maskout / teacher_tau).softmax(dim=-1).masked_fill(negative, 0.0)
            target = target.reshape(b, q, b, k).permute(0, 2, 1, 3)
        output = (atten / tau).permute(0, 2, 1, 3).reshape(b, q, b * k)
        logits = log_softmax(output).reshape(b, q, b, k).permute(0, 2, 1, 3)
        return -(target * logits).sum() / (phrase_mask.sum() + eps)
    with torch.no_grad():  # mytrain.py: pseudo target from the teacher, image by image
        target = torch.einsum("b q d, b k d -> b q k", teacher_phrase, teacher_region)
        target = (target.masked_fill(~x_mask, -finf) / teacher_tau).softmax(dim=-1)
    if mode == "fne":
        atten = atten.masked_fill(atten_mask, -finf)
    output = (atten / tau).permute(0, 2, 1, 3).reshape(b, q, b * k)
    logits = log_softmax(output).reshape(b, q, b, k).permute(0, 2, 1, 3)
    logit = torch.einsum("i i q k -> i q k", logits)
    target = target.masked_fill(~x_mask, 0)
    loss = -(target * logit).sum(-1)
    return loss.sum() / (phrase_mask.sum() + eps)


@pytest.mark.parametrize("mode", MODES)
def test_mpl_code_form_reproduces_the_public_code(seed, mode):
    """Padded regions in the student's softmax and false negatives for the first 10 phrases only:
    the code form equals the restated public code to float64 rounding (loss and gradients)."""
    for q in (3, 14):
        args = make(b=5, q=q, k=9, d=16, dtype=torch.float64, threshold=random.choice([0.0, 0.2]))
        tau, ttau = random.choice([(1.0, 0.3), (0.5, 0.1), (0.07, 1.0)])
        want = run(lambda *a, **kw: mpl_public_code(*a[:7], kw["tau"], kw["teacher_tau"], kw["mode"]), args, tau,
                   ttau, mode, "mean")
        got = run(code_form, args, tau, ttau, mode, "mean")
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_mpl_code_form_equals_the_paper_form_without_padding_and_with_ten_phrases(seed, mode):
    args = make(b=5, q=10, k=7, d=16, dtype=torch.float64)
    args[4][:] = True
    args[5][:] = True
    want = run(reference, args, 1.0, 0.3, mode, "mean")
    got = run(code_form, args, 1.0, 0.3, mode, "mean")
    assert_close_all(got, want, torch.float64)
    fused = run(pseudo_label_contrastive_loss, args, 1.0, 0.3, mode, "mean")
    assert_close_all(fused, want, torch.float64)
    # padding (student) and an 11th phrase with false negatives (fne / fnc): the quirks show
    args = make(b=5, q=12, k=7, d=16, dtype=torch.float64, threshold=0.0)
    args[4][:] = True
    args[5][:, -2:] = False
    paper, code = run(reference, args, 1.0, 0.3, mode, "none"), run(code_form, args, 1.0, 0.3, mode, "none")
    assert not torch.allclose(paper[0], code[0])


def test_tiles_span_several_images(seed, monkeypatch):
    """Large enough that the CPU kernel uses several row tiles (4 MB logits tile)."""
    args = make(b=40, q=30, k=30, d=16, threshold=0.3)
    for mode in MODES:
        want = run(reference, args, 1.0, 0.5, mode, "mean")
        got = run(pseudo_label_contrastive_loss, args, 1.0, 0.5, mode, "mean")
        assert_close_all(got, want)


def test_non_contiguous_and_float64(seed):
    args = make(b=5, q=3, k=7, d=12, dtype=torch.float64)
    want = run(reference, args, 0.7, 0.2, "fnc", "sum")
    nc = [non_contiguous(a) if a.dtype == torch.float64 else a for a in args[:4]] + args[4:]
    nc[6] = args[6].transpose(0, 1).contiguous().transpose(0, 1)
    got = run(pseudo_label_contrastive_loss, nc, 0.7, 0.2, "fnc", "sum")
    assert_close_all(got, want, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_computes_in_float(seed, dtype):
    args = make(b=4, q=3, k=6, d=16)
    args = [a.to(dtype) if a.is_floating_point() else a for a in args]
    up = [a.float() if a.is_floating_point() else a for a in args]
    want = pseudo_label_contrastive_loss(*up, mode="fne", reduction="none", backend="reference")
    got = pseudo_label_contrastive_loss(*args, mode="fne", reduction="none")
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, **TOL[dtype])


def test_rows_without_regions_give_zero_loss_and_gradient(seed):
    args = make(b=3, q=2, k=4, d=8)
    args[5][1] = False           # image 1: no valid region -> its phrases have no pseudo-label
    args[6][1] = False           # (and so no false negatives either, as false_negative_mask would say)
    args[4][2] = False           # image 2: no valid phrase
    for mode in MODES:
        out, gp, gr = run(pseudo_label_contrastive_loss, args, 1.0, 1.0, mode, "none")
        assert (out[1:] == 0).all() and (gp[1:] == 0).all() and torch.isfinite(gr).all()
    args[5][:] = False           # nothing valid at all
    out, gp, gr = run(pseudo_label_contrastive_loss, args, 1.0, 1.0, "fnc", "mean")
    assert out == 0 and (gp == 0).all() and (gr == 0).all()


def test_empty_shapes(seed):
    for b, q, k in ((0, 2, 3), (2, 0, 3), (2, 2, 0)):
        args = make(b=b or 1, q=q or 1, k=k or 1, d=8)
        args = [a[:b] if i in (0, 2, 4) else a for i, a in enumerate(args)]
        p = torch.randn(b, q, 8, requires_grad=True)
        r = torch.randn(b, k, 8, requires_grad=True)
        out = pseudo_label_contrastive_loss(p, r, torch.randn(b, q, 8), torch.randn(b, k, 8),
                                            torch.ones(b, q, dtype=torch.bool), torch.ones(b, k, dtype=torch.bool))
        out.backward()
        assert out == 0 and p.grad.shape == p.shape and r.grad.shape == r.shape


def test_no_gradient_to_teacher(seed):
    args = make(b=3, q=2, k=4, d=8)
    args[2].requires_grad_()
    args[3].requires_grad_()
    out = pseudo_label_contrastive_loss(args[0].requires_grad_(), *args[1:], mode="fnc")
    out.backward()
    assert args[2].grad is None and args[3].grad is None and args[0].grad is not None


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_float64(seed, mode):
    args = make(b=3, q=2, k=3, d=5, dtype=torch.float64, threshold=0.0)
    p, r = args[0].requires_grad_(), args[1].requires_grad_()
    for reduction in ("mean", "none"):  # "mean": gradient from the forward; "none": backward op
        fn = lambda p, r: pseudo_label_contrastive_loss(p, r, *args[2:], tau=0.5, teacher_tau=0.3,  # noqa: E731
                                                        mode=mode, reduction=reduction)
        assert torch.autograd.gradcheck(fn, (p, r))
    ref = lambda p, r: reference(p, r, *args[2:], 0.5, 0.3, mode, "mean")  # noqa: E731
    assert torch.autograd.gradcheck(ref, (p, r))


def test_opcheck(seed):
    args = make(b=3, q=2, k=4, d=8)
    for mode, reduction, wgp, wgr in (("none", "mean", True, True), ("fne", "none", False, False),
                                      ("fnc", "sum", True, False)):
        a = [args[0].clone().requires_grad_(), args[1].clone().requires_grad_()] + args[2:]
        fn_mask = a[6] if mode != "none" else None
        torch.library.opcheck(torch.ops.dapo_fast.pseudo_label_contrastive_loss.default,
                              (*a[:6], fn_mask, 0.5, 0.3, mode, reduction, wgp, wgr))
    torch.library.opcheck(torch.ops.dapo_fast.pseudo_label_contrastive_loss_backward.default,
                          (torch.rand(3, 2), *args, 0.5, 0.3, "fnc", "none"))


@pytest.mark.slow
def test_compile_fullgraph_mpl_training_step(seed):
    """One MPL step: false negatives from detector features, the fused loss against a momentum
    teacher, then the EMA of the teacher; compiled whole, compared with eager."""
    torch.manual_seed(seed)
    b, q, k, d_raw, d = 4, 3, 5, 16, 8
    student = torch.nn.ModuleDict({"p": torch.nn.Linear(d, d), "r": torch.nn.Linear(d_raw, d)})
    teacher = torch.nn.ModuleDict({"p": torch.nn.Linear(d, d), "r": torch.nn.Linear(d_raw, d)})
    teacher.load_state_dict(student.state_dict())
    for prm in teacher.parameters():
        prm.requires_grad_(False)
    words = torch.randn(b, q, d)
    raw = torch.randn(b, k, d_raw)
    phrase_valid = torch.rand(b, q) > 0.2
    region_valid = torch.rand(b, k) > 0.2

    def step(student, teacher, words, raw):
        fn = false_negative_mask(raw, region_valid, 0.1)
        with torch.no_grad():
            tp, tr = teacher["p"](words), teacher["r"](raw)
        loss = pseudo_label_contrastive_loss(student["p"](words), student["r"](raw), tp, tr, phrase_valid,
                                             region_valid, fn, tau=1.0, teacher_tau=0.3, mode="fnc")
        momentum_update_(list(teacher.parameters()), list(student.parameters()), 0.9)
        return loss

    import copy

    s2, t2 = copy.deepcopy(student), copy.deepcopy(teacher)
    want = step(student, teacher, words, raw)
    want.backward()
    compiled = torch.compile(step, fullgraph=True)
    got = compiled(s2, t2, words, raw)
    got.backward()
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    for (n1, p1), (_, p2) in zip(student.named_parameters(), s2.named_parameters()):
        torch.testing.assert_close(p2.grad, p1.grad, **TOL[torch.float32], msg=n1)
    for p1, p2 in zip(teacher.parameters(), t2.parameters()):
        torch.testing.assert_close(p2, p1, **TOL[torch.float32])


class TestBadInputs:
    def args(self):
        return make(b=2, q=2, k=3, d=4, threshold=0.0)

    def test_shapes(self, seed):
        a = self.args()
        with pytest.raises(ValueError, match="region"):
            pseudo_label_contrastive_loss(a[0], a[1][:, :, :3], *a[2:])
        with pytest.raises(ValueError, match="teacher_region"):
            pseudo_label_contrastive_loss(*a[:3], a[3][:1], *a[4:])
        with pytest.raises(ValueError, match="phrase_valid"):
            pseudo_label_contrastive_loss(*a[:4], a[4][:, :1], *a[5:])
        with pytest.raises(ValueError, match="fn_mask"):
            pseudo_label_contrastive_loss(*a[:6], a[6][:1], mode="fne")
        with pytest.raises(RuntimeError, match="region"):
            torch.ops.dapo_fast.pseudo_label_contrastive_loss(a[0], a[1][:1], *a[2:], 1.0, 1.0, "none", "mean",
                                                              False, False)

    def test_dtypes_and_devices(self, seed):
        a = self.args()
        with pytest.raises(TypeError, match="phrase and region"):
            pseudo_label_contrastive_loss(a[0], a[1].double(), *a[2:])
        with pytest.raises(TypeError, match="region_valid"):
            pseudo_label_contrastive_loss(*a[:5], a[5].float(), *a[6:])
        with pytest.raises(ValueError, match="teacher_phrase"):
            pseudo_label_contrastive_loss(*a[:2], a[2].to("meta"), *a[3:])

    def test_values(self, seed):
        a = self.args()
        with pytest.raises(ValueError, match="tau"):
            pseudo_label_contrastive_loss(*a, tau=0.0)
        with pytest.raises(ValueError, match="teacher_tau"):
            pseudo_label_contrastive_loss(*a, teacher_tau=-1.0)
        with pytest.raises(ValueError, match="mode"):
            pseudo_label_contrastive_loss(*a, mode="fnx")
        with pytest.raises(ValueError, match="fn_mask"):
            pseudo_label_contrastive_loss(*a[:6], None, mode="fnc")
        with pytest.raises(ValueError, match="reduction"):
            pseudo_label_contrastive_loss(*a, reduction="max")
        with pytest.raises(RuntimeError, match="tau"):
            torch.ops.dapo_fast.pseudo_label_contrastive_loss(*a, 0.0, 1.0, "none", "mean", False, False)
        with pytest.raises(RuntimeError, match="mode"):
            torch.ops.dapo_fast.pseudo_label_contrastive_loss(*a, 1.0, 1.0, "bad", "mean", False, False)


@pytest.mark.triton
@pytest.mark.parametrize("mode", MODES)
def test_triton_matches_reference(seed, mode):
    args = make(b=3, q=3, k=5, d=12, threshold=0.0)
    for reduction in ("mean", "none"):
        want = run(reference, args, 0.5, 0.3, mode, reduction)
        got = run(pseudo_label_contrastive_loss, args, 0.5, 0.3, mode, reduction, backend="triton")
        assert_close_all(got, want)


@pytest.mark.triton
def test_triton_opcheck_under_interpreter(seed):
    # aot_dispatch cannot run Triton's interpreter on fake storages; the full opcheck is the cuda test below
    from dapo_fast.ops._triton.pseudo_label_contrastive_loss import pseudo_label_contrastive_loss_triton

    a = make(b=2, q=2, k=3, d=8, threshold=0.0)
    torch.library.opcheck(pseudo_label_contrastive_loss_triton, (a[0].requires_grad_(), *a[1:], 0.5, 0.3, "fnc"),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backends(seed, backend):
    args = make(b=6, q=4, k=12, d=32, threshold=0.2)
    for mode in MODES:
        want = run(reference, args, 0.5, 0.3, mode, "mean")
        gpu = [a.cuda() for a in args]
        got = run(pseudo_label_contrastive_loss, gpu, 0.5, 0.3, mode, "mean", backend=backend)
        assert_close_all([g.cpu() for g in got], want)
    if backend == "cuda":
        torch.library.opcheck(torch.ops.dapo_fast.pseudo_label_contrastive_loss.default,
                              (gpu[0].requires_grad_(), *gpu[1:], 0.5, 0.3, "fnc", "mean", True, True))
    else:
        from dapo_fast.ops._triton.pseudo_label_contrastive_loss import pseudo_label_contrastive_loss_triton

        torch.library.opcheck(pseudo_label_contrastive_loss_triton, (gpu[0].requires_grad_(), *gpu[1:], 0.5, 0.3, "fnc"))


BACKENDS = ["cpu", "reference", pytest.param("triton", marks=pytest.mark.triton)]


def batch_with_invalid_rows():
    """A float64 batch whose first phrase and region of every image are invalid and second valid."""
    args = make(b=3, q=3, k=4, d=5, dtype=torch.float64)
    phrase_valid, region_valid = args[4], args[5]
    phrase_valid[:, 0], region_valid[:, 0] = False, False
    phrase_valid[:, 1], region_valid[:, 1] = True, True
    return args


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_nan_in_invalid_phrases_and_regions_takes_no_part(seed, backend, mode):
    """NaN or Inf in the features of invalid phrases or regions change neither the loss nor the
    gradients (the reference used to multiply them by 0 in its products and gradients)."""
    args = batch_with_invalid_rows()
    phrase_valid, region_valid = args[4], args[5]
    want = run(pseudo_label_contrastive_loss, args, 0.5, 0.3, mode, "none", backend=backend)
    bad = [t.clone() for t in args]
    for i, valid in ((0, phrase_valid), (1, region_valid), (2, phrase_valid), (3, region_valid)):
        bad[i][~valid] = float("nan")
        bad[i][~valid, 0] = float("inf")
    got = run(pseudo_label_contrastive_loss, bad, 0.5, 0.3, mode, "none", backend=backend)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("student_fill", [1e3, float("nan")])
def test_invalid_rows_take_no_part_with_fused_gradients(seed, backend, mode, student_fill):
    """The same with reduction "mean", whose forward computes the gradients: finite values in the
    student's invalid rows (read in place, not copied) and NaN in the teacher's change nothing."""
    args = batch_with_invalid_rows()
    phrase_valid, region_valid = args[4], args[5]
    want = run(pseudo_label_contrastive_loss, args, 0.5, 0.3, mode, "mean", backend=backend)
    bad = [t.clone() for t in args]
    for i, valid in ((0, phrase_valid), (1, region_valid)):
        bad[i][~valid] = student_fill * torch.randn_like(bad[i][~valid])
    for i, valid in ((2, phrase_valid), (3, region_valid)):
        bad[i][~valid] = float("nan")
    got = run(pseudo_label_contrastive_loss, bad, 0.5, 0.3, mode, "mean", backend=backend)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("where", ["teacher_phrase", "teacher_region", "phrase", "region"])
def test_nan_in_a_valid_input_gives_nan_loss_and_gradient(backend, where):
    """A diverging teacher is not hidden: the kernels used to give loss 0 and gradient 0 for a
    phrase whose pseudo-labels were NaN."""
    args = make(b=2, q=2, k=3, d=4, dtype=torch.float64)
    args[4][:], args[5][:] = True, True
    index = {"phrase": 0, "region": 1, "teacher_phrase": 2, "teacher_region": 3}[where]
    args[index][0, 0, 0] = float("nan")
    loss, grad_phrase, grad_region = run(pseudo_label_contrastive_loss, args, 1.0, 1.0, "none", "none",
                                         backend=backend)
    want = run(reference, args, 1.0, 1.0, "none", "none")
    assert torch.isnan(loss).any()
    for g, w in zip((loss, grad_phrase, grad_region), want):  # (Triton computes in float32)
        torch.testing.assert_close(g, w, equal_nan=True, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_invalid_phrases_and_regions_get_zero_gradient_beside_a_non_finite_valid_one(backend, value):
    """An invalid phrase or region takes no part, so its gradient is 0 even when a valid feature on
    the other side is NaN or Inf (the kernels' products gave it 0 * Inf = NaN); valid ones follow
    the reference."""
    args = make(b=2, q=3, k=3, d=4, dtype=torch.float64)
    args[4][:], args[5][:] = True, True
    args[4][1, 2], args[5][0, 1] = False, False
    args[0][0, 0, 1] = args[1][1, 0, 2] = value
    got = run(pseudo_label_contrastive_loss, args, 0.5, 0.3, "fnc", "sum", backend=backend)
    want = run(reference, args, 0.5, 0.3, "fnc", "sum")
    assert (got[1][1, 2] == 0).all() and (got[2][0, 1] == 0).all()
    for g, w in zip(got, want):  # (Triton computes in float32)
        torch.testing.assert_close(g, w, equal_nan=True, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_upstream_gradient_of_one_and_a_retained_graph(seed, reduction):
    """The forward's gradients (for an upstream 1) are scaled, never handed over: a retained graph's
    second backward must still see them unchanged, and other upstream values scale them."""
    args = make(b=5, q=3, k=7, d=16, threshold=0.2)
    want = run(reference, args, 0.7, 0.3, "fnc", reduction)
    p = args[0].detach().clone().requires_grad_()
    r = args[1].detach().clone().requires_grad_()
    loss = pseudo_label_contrastive_loss(p, r, *args[2:], tau=0.7, teacher_tau=0.3, mode="fnc", reduction=reduction)
    loss.backward(retain_graph=True)
    first = (p.grad.clone(), r.grad.clone())
    assert_close_all(first, (want[1] / 0.5, want[2] / 0.5))  # `run` scales by an upstream 0.5
    loss.backward(retain_graph=True)
    assert_close_all((p.grad, r.grad), (2 * first[0], 2 * first[1]))
    (3 * loss).backward()
    assert_close_all((p.grad, r.grad), (5 * first[0], 5 * first[1]))
