"""self_taught_targets: C++ kernel vs the reference and vs ReIR's per-phrase loop form; the
exclude_iou_one option vs a restatement of ReIR's public code."""
import pytest
import torch

import dapo_fast
from dapo_fast.ops import box_encode, self_taught_targets
from dapo_fast.ops._reference.box_iou import box_iou
from tests._helpers import TOL, compiled_matches_eager

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


def clustered_boxes(b, j, dtype=torch.float32):
    """Proposals in a few clusters so that many pairs pass IoU 0.6."""
    centres = torch.rand(b, 3, 2, dtype=dtype) * 200
    pick = torch.randint(0, 3, (b, j))
    c = torch.gather(centres, 1, pick[..., None].expand(b, j, 2)) + torch.randn(b, j, 2, dtype=dtype) * 3
    wh = 40 + torch.randn(b, j, 2, dtype=dtype) * 4
    return torch.cat([c - wh / 2, c + wh / 2], -1)


def per_phrase_loop(boxes, scores, iou_threshold=0.6, score_gap=0.1):
    """The paper's code form: one phrase at a time, Python loops over proposals."""
    b, j = boxes.shape[:2]
    p = scores.shape[1]
    deltas = torch.zeros(b, p, j, 4, dtype=boxes.dtype)
    weights = torch.zeros(b, p, j, dtype=boxes.dtype)
    for i in range(b):
        for q in range(p if j else 0):
            best = int(scores[i, q].argmax())
            for k in range(j):
                if k == best:
                    continue
                iou = box_iou(boxes[i, k][None], boxes[i, best][None])[0, 0]
                if iou >= iou_threshold and scores[i, q, best] - scores[i, q, k] >= score_gap:
                    deltas[i, q, k] = box_encode(boxes[i, k], boxes[i, best], backend="reference")
                    weights[i, q, k] = 1
    return deltas, weights


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("shape", [(4, 5, 13), (1, 1, 1), (2, 3, 0), (3, 0, 4)])
def test_matches_loop(seed, poison, backend, shape):
    b, p, j = shape
    boxes = clustered_boxes(b, j)
    scores = torch.rand(b, p, j)
    scores[..., :2] = 0.5  # ties at the top sometimes: the lowest index wins
    got_d, got_w = self_taught_targets(boxes, scores, backend=backend)
    want_d, want_w = per_phrase_loop(boxes, scores)
    assert got_d.shape == (b, p, j, 4) and got_w.shape == (b, p, j)
    assert torch.equal(got_w, want_w)
    torch.testing.assert_close(got_d, want_d, **TOL[torch.float32])
    if b * p * j > 20:
        assert got_w.sum() > 0


def test_tie_rule_and_thresholds_inclusive():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 6], [0, 0, 10, 5.9]]])
    scores = torch.tensor([[[0.75, 0.75, 0.625, 0.5]]])  # tie between 0 and 1: proposal 0 is the pseudo ground truth
    for backend in ("cpu", "reference"):
        # proposal 1: IoU 1 but score gap 0; proposal 2: IoU 0.6 >= 0.6 and gap 0.125 >= 0.125 (both inclusive);
        # proposal 3: IoU 0.59 < 0.6
        d, w = self_taught_targets(boxes, scores, 0.6, 0.125, backend=backend)
        assert w[0, 0].tolist() == [0.0, 0.0, 1.0, 0.0]
        torch.testing.assert_close(d[0, 0, 2], box_encode(boxes[0, 2], boxes[0, 0]))
        assert torch.equal(d[0, 0, [0, 1, 3]], torch.zeros(3, 4))
        _, w = self_taught_targets(boxes, scores, 0.6, 0.126, backend=backend)
        assert w.sum() == 0


def reir_public_code(boxes, scores, reg_iou, score_gap, weights):
    """ReIR's regression targets as its public code computes them (weaklygrounding/loss.py,
    non_maximum_regression_loss_stage1), restated per image: the top-1 proposal of each phrase,
    detectron2's pairwise IoU, IoU == 1 zeroed, then IoU >= reg_iou and a score gap >= score_gap.
    Returns dense (deltas, weights) where the code regresses (weight 1) or not (0)."""
    b, p, j = scores.shape
    deltas = torch.zeros(b, p, j, 4, dtype=boxes.dtype)
    weight = torch.zeros(b, p, j, dtype=boxes.dtype)
    for i in range(b):
        top, index = torch.topk(scores[i], k=1, dim=1)
        top, index = top.reshape(-1), index.reshape(-1)
        best = boxes[i][index]
        area_best = (best[:, 2] - best[:, 0]) * (best[:, 3] - best[:, 1])
        area = (boxes[i][:, 2] - boxes[i][:, 0]) * (boxes[i][:, 3] - boxes[i][:, 1])
        wh = (torch.min(best[:, None, 2:], boxes[i][None, :, 2:]) - torch.max(best[:, None, :2], boxes[i][None, :, :2]))
        inter = wh.clamp(min=0).prod(dim=2)
        ious = torch.where(inter > 0, inter / (area_best[:, None] + area - inter), torch.zeros(1, dtype=inter.dtype))
        ious[ious == 1] = 0
        flags = (ious >= reg_iou).float()
        if flags.sum():
            vx, vy = flags.nonzero().transpose(0, 1)
            score_att = (top[vx] - scores[i][vx, vy]) >= score_gap
            weight[i, vx, vy] = score_att.to(boxes.dtype)
            deltas[i, vx, vy] = box_encode(boxes[i][vy], best[vx], weights, backend="reference")
    deltas = deltas * weight[..., None]
    return deltas, weight


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_exclude_iou_one_reproduces_reirs_public_code(seed, backend):
    """Exact duplicates of the pseudo box (IoU exactly 1) get weight 0, as in ReIR's code; the
    default regresses them (the paper's rule)."""
    boxes = clustered_boxes(3, 12, torch.float64)
    boxes[:, 5] = boxes[:, 2]   # exact duplicates
    boxes[:, 7] = boxes[:, 2]
    scores = torch.rand(3, 4, 12, dtype=torch.float64)
    scores[:, :, 2] = 2.0       # proposal 2 is every phrase's pseudo ground truth
    for reg_iou, gap in ((0.6, 0.1), (0.7, 0.3)):   # the paper's thresholds, then ReIR's config
        want_d, want_w = reir_public_code(boxes, scores, reg_iou, gap, (10.0, 10.0, 5.0, 5.0))
        got_d, got_w = self_taught_targets(boxes, scores, reg_iou, gap, exclude_iou_one=True, backend=backend)
        assert torch.equal(got_w, want_w)
        torch.testing.assert_close(got_d, want_d, **TOL[torch.float64])
        assert (got_w[:, :, [5, 7]] == 0).all()
        _, paper_w = self_taught_targets(boxes, scores, reg_iou, gap, backend=backend)
        assert (paper_w[:, :, [5, 7]] == 1).all()  # zero deltas, weight 1: regressed to stay put
    # float32 boxes: IoU == 1 is decided in the boxes' dtype, as in the code
    b32, s32 = boxes.float(), scores.float()
    want_d, want_w = reir_public_code(b32, s32, 0.6, 0.1, (10.0, 10.0, 5.0, 5.0))
    got_d, got_w = self_taught_targets(b32, s32, exclude_iou_one=True, backend=backend)
    assert torch.equal(got_w, want_w)
    torch.testing.assert_close(got_d, want_d, **TOL[torch.float32])


def test_opcheck(seed):
    boxes, scores = clustered_boxes(2, 6), torch.rand(2, 3, 6)
    for exclude_iou_one in (False, True):
        torch.library.opcheck(torch.ops.dapo_fast.self_taught_targets.default,
                              (boxes, scores, 0.6, 0.1, [10.0, 10, 5, 5], exclude_iou_one))


def test_compile_fullgraph(seed):
    boxes, scores = clustered_boxes(2, 9), torch.rand(2, 3, 9)
    (deltas, weights), _ = compiled_matches_eager(self_taught_targets, boxes, scores)
    assert torch.equal(weights, per_phrase_loop(boxes, scores)[1])


def test_bad_inputs():
    with pytest.raises(ValueError, match="scores"):
        self_taught_targets(torch.zeros(2, 5, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="boxes"):
        self_taught_targets(torch.zeros(2, 5, 3), torch.zeros(2, 3, 5))
    with pytest.raises(RuntimeError, match="scores"):
        torch.ops.dapo_fast.self_taught_targets(torch.zeros(2, 5, 4), torch.zeros(2, 3, 4), 0.6, 0.1, [1.0] * 4, False)


@pytest.mark.cuda
def test_cuda_matches_loop(seed):
    boxes, scores = clustered_boxes(10, 50), torch.rand(10, 5, 50)
    d, w = self_taught_targets(boxes.cuda(), scores.cuda())
    want_d, want_w = per_phrase_loop(boxes, scores)
    assert torch.equal(w.cpu(), want_w)
    torch.testing.assert_close(d.cpu(), want_d, **TOL[torch.float32])
    # exclude_iou_one: exact duplicates of the pseudo box get weight 0 on the GPU too
    rows = torch.arange(boxes.shape[0])
    boxes[rows, 5] = boxes[rows, scores[:, 0].argmax(-1)]
    want_d, want_w = self_taught_targets(boxes, scores, exclude_iou_one=True, backend="cpu")
    d, w = self_taught_targets(boxes.cuda(), scores.cuda(), exclude_iou_one=True)
    assert torch.equal(w.cpu(), want_w)
    torch.testing.assert_close(d.cpu(), want_d, **TOL[torch.float32])
