"""self_taught_targets: C++ kernel vs the reference and vs ReIR's per-phrase loop form."""
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


def test_opcheck(seed):
    boxes, scores = clustered_boxes(2, 6), torch.rand(2, 3, 6)
    torch.library.opcheck(torch.ops.dapo_fast.self_taught_targets.default, (boxes, scores, 0.6, 0.1, [10.0, 10, 5, 5]))


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
        torch.ops.dapo_fast.self_taught_targets(torch.zeros(2, 5, 4), torch.zeros(2, 3, 4), 0.6, 0.1, [1.0] * 4)


@pytest.mark.cuda
def test_cuda_matches_loop(seed):
    boxes, scores = clustered_boxes(10, 50), torch.rand(10, 5, 50)
    d, w = self_taught_targets(boxes.cuda(), scores.cuda())
    want_d, want_w = per_phrase_loop(boxes, scores)
    assert torch.equal(w.cpu(), want_w)
    torch.testing.assert_close(d.cpu(), want_d, **TOL[torch.float32])
