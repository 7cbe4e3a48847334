"""false_negative_mask: every backend vs the reference and MPL's code form."""
import random

import pytest
import torch

import dapo_fast
from dapo_fast.ops import false_negative_mask
from dapo_fast.ops._reference.false_negative_mask import false_negative_mask as reference
from dapo_fast.ops._reference.false_negative_mask import false_negative_mask_mpl_code_form as code_form
from tests._helpers import compiled_matches_eager, non_contiguous

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")

THRESHOLDS = [-1.0, 0.0, 0.3, 0.95, 1.0]


def make(b=None, k=None, d=None, dtype=torch.float32):
    b = b or random.randint(1, 8)
    k = k or random.randint(1, 12)
    d = d or random.randint(8, 64)
    feats = torch.randn(b, k, d, dtype=dtype)
    valid = torch.rand(b, k) > 0.25
    if b > 1:
        valid[random.randrange(b)] = False
    return feats, valid


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_cpu_matches_reference(seed, poison, threshold):
    for _ in range(4):
        feats, valid = make()
        got = false_negative_mask(feats, valid, threshold, backend="cpu")
        assert got.dtype == torch.bool and got.shape == (feats.shape[0], feats.shape[0], feats.shape[1])
        assert torch.equal(got, reference(feats, valid, threshold))


def test_matches_mpl_code_form_and_is_symmetric_in_structure(seed):
    feats, valid = make(b=7, k=9, d=32)
    # near-duplicate regions across images so that there are hits at a high threshold
    feats[3, 2] = feats[5, 4] + 0.01 * torch.randn(32)
    got = false_negative_mask(feats, valid, 0.95)
    assert torch.equal(got, code_form(feats, valid, 0.95))
    assert not got.diagonal(dim1=0, dim2=1).any()
    if valid[3, 2] and valid[5, 4]:
        assert got[3, 5, 4] and got[5, 3, 2]


def test_several_tiles_layouts_dtypes(seed):
    feats, valid = make(b=23, k=50, d=16)  # 23 * 50 rows: several 1024-row tiles on CPU
    want = reference(feats, valid, 0.2)
    assert torch.equal(false_negative_mask(feats, valid, 0.2), want)
    assert torch.equal(false_negative_mask(non_contiguous(feats), valid, 0.2), want)
    assert torch.equal(false_negative_mask(feats.double(), valid, 0.2), reference(feats.double(), valid, 0.2))
    half = feats.half()
    assert torch.equal(false_negative_mask(half, valid, 0.2), reference(half, valid, 0.2))


def test_empty_and_single_image():
    for b, k in ((0, 3), (1, 4), (3, 0)):
        feats, valid = torch.randn(b, k, 8), torch.ones(b, k, dtype=torch.bool)
        out = false_negative_mask(feats, valid, 0.0)
        assert out.shape == (b, b, k) and not out.any()


def test_zero_features_have_zero_similarity():
    feats = torch.zeros(2, 3, 4)
    valid = torch.ones(2, 3, dtype=torch.bool)
    assert false_negative_mask(feats, valid, -0.5).all() == False  # noqa: E712  (diagonal is False)
    assert false_negative_mask(feats, valid, -0.5)[0, 1].all()
    assert not false_negative_mask(feats, valid, 0.0).any()


def test_opcheck(seed):
    feats, valid = make(b=4, k=5, d=8)
    for thr in (0.0, 0.95):
        torch.library.opcheck(torch.ops.dapo_fast.false_negative_mask.default, (feats, valid, thr))


def test_compile_fullgraph(seed):
    feats, valid = make(b=5, k=6, d=8)
    (got,), _ = compiled_matches_eager(lambda f, v: false_negative_mask(f, v, 0.2), feats, valid)
    assert torch.equal(got, reference(feats, valid, 0.2))


class TestBadInputs:
    def test_shape_dtype_device(self):
        with pytest.raises(ValueError, match="region_feats"):
            false_negative_mask(torch.randn(2, 3), torch.ones(2, 3, dtype=torch.bool), 0.5)
        with pytest.raises(ValueError, match="region_valid"):
            false_negative_mask(torch.randn(2, 3, 4), torch.ones(2, 4, dtype=torch.bool), 0.5)
        with pytest.raises(TypeError, match="region_valid"):
            false_negative_mask(torch.randn(2, 3, 4), torch.ones(2, 3), 0.5)
        with pytest.raises(TypeError, match="region_feats"):
            false_negative_mask(torch.ones(2, 3, 4, dtype=torch.int32), torch.ones(2, 3, dtype=torch.bool), 0.5)
        with pytest.raises(ValueError, match="region_valid"):
            false_negative_mask(torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool, device="meta"), 0.5)
        with pytest.raises(RuntimeError, match="region_valid"):
            torch.ops.dapo_fast.false_negative_mask(torch.randn(2, 3, 4), torch.ones(2, 3), 0.5)

    @pytest.mark.parametrize("threshold", [-1.5, 1.01, float("nan")])
    def test_threshold_range(self, threshold):
        with pytest.raises(ValueError, match="threshold"):
            false_negative_mask(torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), threshold)
        with pytest.raises(RuntimeError, match="threshold"):
            torch.ops.dapo_fast.false_negative_mask(torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool),
                                                    threshold)


@pytest.mark.triton
def test_triton_matches_reference(seed):
    feats, valid = make(b=4, k=6, d=20)
    for threshold in THRESHOLDS:
        assert torch.equal(false_negative_mask(feats, valid, threshold, backend="triton"),
                           reference(feats, valid, threshold))


@pytest.mark.triton
def test_triton_opcheck_under_interpreter(seed):
    from dapo_fast.ops._triton.false_negative_mask import false_negative_mask_triton

    feats, valid = make(b=3, k=4, d=8)
    torch.library.opcheck(false_negative_mask_triton, (feats, valid, 0.2),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backends(seed, backend):
    feats, valid = make(b=12, k=40, d=64)
    for threshold in THRESHOLDS:
        got = false_negative_mask(feats.cuda(), valid.cuda(), threshold, backend=backend)
        assert torch.equal(got.cpu(), reference(feats, valid, threshold))
    op = (torch.ops.dapo_fast.false_negative_mask.default if backend == "cuda"
          else torch.ops.dapo_fast.false_negative_mask_triton.default)
    torch.library.opcheck(op, (feats.cuda(), valid.cuda(), 0.3))
