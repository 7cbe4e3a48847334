"""TRIS's L_cls and PCNet's RaS / IaD: the paper's equations, the public code's forms against our
re-statement of what that code computes, gradients, compile."""
import pytest
import torch
import torch.nn.functional as F

import dapo_fast
from dapo_fast.losses.pcnet import (classification_loss, iad_loss, instance_disambiguation_loss, ras_loss,
                                    region_shrinking_loss, straight_through_onehot)
from dapo_fast.ops._reference.proposal_alignment import proposal_alignment as reference_alignment
from dapo_fast.ops._reference.region_ambiguity import region_ambiguity as reference_ambiguity
from tests._helpers import TOL

BACKENDS = ["reference"] + (["cpu"] if dapo_fast.HAS_C else [])


# ---------------------------------------------------------------- re-statements of the public code
def _code_soft_iou(pred, masks):
    """The code's dice_loss + division: I / ((sum pred + sum mask + 1e-5) + 1e-5) per mask."""
    inter = (pred[:, None] * masks).flatten(2).sum(-1)
    union = (pred[:, None] + masks).flatten(2).sum(-1) + 1e-5
    return inter / (union + 1e-5)


def code_shrink_terms(response, masks, clip_score):
    """One stage of the code's SAM_shrink_loss on maps already normalised to [0, 1] at the
    proposals' size: (left, right) = masked batch means of the foreground IoU (proposal ranked first
    by the external score) and of the best IoU over the other proposals one by one."""
    order = torch.argsort(clip_score, dim=1, descending=True, stable=True)
    sorted_masks = torch.stack([masks[i][order[i]] for i in range(len(masks))])
    left_masks, right_masks = sorted_masks[:, :1], sorted_masks[:, 1:]
    max_left = _code_soft_iou(response, left_masks).max(-1)[0]
    max_right = _code_soft_iou(response, right_masks).max(-1)[0]
    hard = response.gt(1e-9).to(response.dtype)
    left_keep = _code_soft_iou(hard, left_masks).max(-1)[0] > 0.0
    right_keep = _code_soft_iou(hard, right_masks).max(-1)[0] < 1.0
    left = (max_left * left_keep).sum() / (left_keep.sum() + 0.0001)
    right = (max_right * right_keep).sum() / (right_keep.sum() + 0.0001)
    return left, right


def code_ras(response_stages, masks, clip_score):
    """shrink_loss for each consecutive pair (the code draws one at random) and the anchor loss."""
    terms = [code_shrink_terms(r, masks, clip_score) for r in response_stages]
    k = len(terms)
    shrink = [1.0 - (terms[j][1] - terms[j + 1][1]) for j in range(k - 1)]
    anchor = sum(1.0 - t[0] for t in terms) / k
    return shrink, anchor


def code_diversify_scores(s, s_diff, mark):
    """The code's SAM_diversify_loss from the two texts' alignment scores [B, P]."""
    def st(logits):
        onehot = torch.zeros_like(logits).scatter(-1, logits.argmax(-1, keepdim=True), 1)
        c = (onehot - torch.softmax(logits, -1)).detach()
        return c + torch.softmax(logits, -1)

    return 1.0 - ((st(s) - st(s_diff)).abs().sum(-1) * mark).sum() / (2 * mark.sum() + 0.0001)


def code_diversify(pred, pred_diff, masks, mark):
    """The code's SAM_diversify_loss on maps at the proposals' size."""
    b, n = masks.shape[:2]
    s = (pred[:, None] * masks).reshape(b, n, -1).max(-1)[0]
    s_diff = (pred_diff[:, None] * masks).reshape(b, n, -1).max(-1)[0]
    return code_diversify_scores(s, s_diff, mark)


def _inputs(b=5, n=3, p=7, h=9, w=8, dtype=torch.float64):
    response = torch.rand(b, n, h, w, dtype=dtype)
    response = response / response.flatten(2).amax(-1)[..., None, None]  # peak 1, as Norm(ReLU)
    response = torch.where(response > 0.3, response, torch.zeros_like(response))  # zero areas, as ReLU
    masks = torch.rand(b, p, h, w) > 0.6
    return response.requires_grad_(), masks


# ---------------------------------------------------------------- L_cls
def test_classification_loss_is_tris_multilabel_soft_margin(seed):
    logits = torch.randn(3, 6, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.eye(6, dtype=torch.bool)
    got = classification_loss(logits, labels)
    want = sum(F.multilabel_soft_margin_loss(logits[s], labels.double()) for s in range(3)) / 3
    torch.testing.assert_close(got, want)
    # several texts per image, padded texts dropped
    labels = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.bool)
    valid = torch.tensor([True, True, True, False])
    x = torch.randn(2, 4, dtype=torch.float64)
    want = F.binary_cross_entropy_with_logits(x[:, :3], labels[:, :3].double())
    torch.testing.assert_close(classification_loss(x, labels, valid), want)
    with pytest.raises(ValueError, match="labels"):
        classification_loss(x, labels[:, :3])


# ---------------------------------------------------------------- RaS
def test_ras_loss_values_and_gradient():
    amb = torch.tensor([[0.5, 0.7, 0.6], [0.9, 0.8, 0.7]], requires_grad=True)
    loss = ras_loss(amb)
    torch.testing.assert_close(loss, torch.tensor(0.2 / 4))  # one rise of 0.2 over 2 maps x 2 steps
    loss.backward()
    torch.testing.assert_close(amb.grad, torch.tensor([[-0.25, 0.25, 0.0], [0.0, 0.0, 0.0]]))
    assert ras_loss(amb[:, :1]).item() == 0
    # weights: the second map dropped, the first alone
    torch.testing.assert_close(ras_loss(amb, torch.tensor([1.0, 0.0])), torch.tensor(0.1))
    with pytest.raises(ValueError, match="ambiguity"):
        ras_loss(amb[0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["iou", "half_dice"])
def test_paper_region_shrinking_is_eq7_of_region_ambiguity(seed, backend, variant):
    response, masks = _inputs(dtype=torch.float32)
    valid = torch.rand(masks.shape[:2]) > 0.2
    got = region_shrinking_loss(response, masks, valid, variant=variant, backend=backend)
    amb, _ = reference_ambiguity(response, masks, valid, variant, 1e-5)
    want = F.relu(amb[:, 1:] - amb[:, :-1]).mean()
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    # K maps per image with weights = the maps flattened, zero-weight maps dropped
    stacked = torch.stack([response, response.flip(1)], 1)               # [B, 2, N, H, W]
    weight = torch.tensor([[1.0, 0.0]]).expand(response.shape[0], 2)
    torch.testing.assert_close(region_shrinking_loss(stacked, masks, valid, weight=weight, variant=variant,
                                                     backend=backend), want, **TOL[torch.float32])


@pytest.mark.parametrize("backend", BACKENDS)
def test_code_region_shrinking_matches_the_code_restated(seed, backend):
    response, masks = _inputs()
    clip_score = torch.rand(masks.shape[:2], dtype=torch.float64)
    got = region_shrinking_loss(response, masks, form="code", fg_scores=clip_score, backend=backend)
    shrink, anchor = code_ras(response.unbind(1), masks.double(), clip_score)
    want = sum(shrink) / len(shrink) + anchor  # the expectation over the code's random pair
    # the code's denominators are float32 (an int64 count plus a Python float): rtol 1e-6
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-12)
    (g_got,) = torch.autograd.grad(got, response)
    (g_want,) = torch.autograd.grad(want, response)
    torch.testing.assert_close(g_got, g_want, rtol=1e-6, atol=1e-12)
    # one stage: the anchor term alone
    one = region_shrinking_loss(response[:, :1], masks, form="code", fg_scores=clip_score, backend=backend)
    torch.testing.assert_close(one, code_ras(response[:, :1].unbind(1), masks.double(), clip_score)[1])


def test_code_region_shrinking_confidence_masks():
    # a map whose positive part misses the foreground is left out of the foreground mean (the
    # background's "hard IoU < 1" excludes nothing: the half-Dice of two equal masks is 1/2)
    h = w = 4
    masks = torch.zeros(2, 2, h, w, dtype=torch.bool)
    masks[:, 0, :2] = True   # proposal 0 (foreground by score): top half
    masks[:, 1, 2:] = True   # proposal 1: bottom half
    response = torch.zeros(2, 2, h, w, dtype=torch.float64)
    response[0, :, 2:] = 1.0  # image 0: exactly the background proposal
    response[1, :, :2] = 0.5  # image 1: half on the foreground
    scores = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    got = region_shrinking_loss(response, masks, form="code", fg_scores=scores)
    fg_iou = 4.0 / (4.0 + 8.0 + 2e-5)  # image 1 only
    assert torch.isclose(got, torch.tensor(1.0 + (1 - fg_iou * 1 / (1 + 1e-4)), dtype=torch.float64))


def test_region_shrinking_bad_inputs():
    response, masks = _inputs()
    with pytest.raises(ValueError, match="form"):
        region_shrinking_loss(response, masks, form="repo")
    with pytest.raises(ValueError, match="fg_scores"):
        region_shrinking_loss(response, masks, form="code")
    with pytest.raises(ValueError, match="half-Dice"):
        region_shrinking_loss(response, masks, form="code", variant="iou", fg_scores=torch.rand(masks.shape[:2]))
    with pytest.raises(ValueError, match=r"\[B, K, N, H, W\]"):
        region_shrinking_loss(response[0], masks)


# ---------------------------------------------------------------- IaD
def test_straight_through_onehot_forms():
    s = torch.tensor([[0.1, 0.9, 0.3]], requires_grad=True)
    assert straight_through_onehot(s).tolist() == [[0.0, 1.0, 0.0]]
    valid = torch.tensor([[True, False, True]])
    torch.testing.assert_close(straight_through_onehot(s, valid), torch.tensor([[0.0, 0.0, 1.0]]))
    # the paper's gradient is the identity to S, the code's goes through softmax(S)
    (g,) = torch.autograd.grad((straight_through_onehot(s) * torch.tensor([1.0, 2.0, 3.0])).sum(), s)
    torch.testing.assert_close(g, torch.tensor([[1.0, 2.0, 3.0]]))
    y = straight_through_onehot(s, form="code")
    torch.testing.assert_close(y.detach(), torch.tensor([[0.0, 1.0, 0.0]]))
    (g,) = torch.autograd.grad((y * torch.tensor([1.0, 2.0, 3.0])).sum(), s)
    soft = torch.softmax(s.detach(), -1)
    torch.testing.assert_close(g, soft * (torch.tensor([1.0, 2.0, 3.0]) - (soft * torch.tensor([1.0, 2.0, 3.0])).sum()))
    # no valid entry: finite (the code form's softmax would be NaN with -inf)
    assert torch.isfinite(straight_through_onehot(s, torch.zeros_like(valid), form="code")).all()


def test_iad_loss_paper_values_and_gradient():
    s = torch.tensor([[0.1, 0.9, 0.3]], requires_grad=True)
    same = iad_loss(s, torch.tensor([[[0.0, 1.0, 0.5]]]))
    different = iad_loss(s, torch.tensor([[[1.0, 0.0, 0.5]]]))
    assert same.item() == 1.0 and different.item() == -1.0
    different.backward()
    torch.testing.assert_close(s.grad, torch.tensor([[2.0, -2.0, 0.0]]))  # d/dy_a of -(y_a - y_d)^2
    # pairs marked invalid do not count
    two = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]]])
    assert iad_loss(s, two, pair_valid=torch.tensor([[False, True]])).item() == 1.0
    assert iad_loss(s, two).item() == 0.0


def test_iad_paper_and_code_values_on_one_batch():
    # 8 pairs, 7 pick different proposals, 1 the same: the paper's form -0.75, the code's 0.125
    a = torch.eye(4).repeat(2, 1)                      # [8, 4]
    d = a.roll(1, dims=1)
    d[0] = a[0]
    assert iad_loss(a, d[:, None]).item() == pytest.approx(-0.75)
    assert iad_loss(a, d[:, None], form="code").item() == pytest.approx(0.125, abs=1e-4)


@pytest.mark.parametrize("form", ["paper", "code"])
def test_iad_has_no_gradient_when_both_texts_pick_the_same_proposal(seed, form):
    # the straight-through value is the one-hot: equal one-hots give y_a - y_d = 0, so IaD pushes
    # apart only what is already apart (the code's own arithmetic, restated, agrees)
    s = torch.rand(16, 7, requires_grad=True)
    other = torch.rand(16, 7)
    other.scatter_(1, s.argmax(1, keepdim=True), 2.0)
    other.requires_grad_()
    loss = iad_loss(s, other[:, None], form=form)
    g_got = torch.autograd.grad(loss, (s, other))
    assert loss.item() == pytest.approx(1.0, abs=1e-4)
    assert all(torch.equal(g, torch.zeros_like(g)) for g in g_got)
    if form == "code":
        want = code_diversify_scores(s, other, torch.ones(16))
        torch.testing.assert_close(loss, want)
        assert all(torch.equal(g, torch.zeros_like(g)) for g in torch.autograd.grad(want, (s, other)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_code_instance_disambiguation_matches_the_code_restated(seed, backend):
    b, p, h, w = 6, 8, 9, 7
    response = torch.rand(b, 2, 1, h, w, dtype=torch.float64, requires_grad=True)  # 2 texts, 1 stage
    masks = torch.rand(b, p, h, w) > 0.5
    # the straight-through term has no gradient where both texts pick the same proposal: in image 0
    # they pick different ones (a single-pixel proposal each, where only that text peaks)
    masks[0, :2] = False
    masks[0, 0, 0, 0] = masks[0, 1, 0, 1] = True
    with torch.no_grad():
        response[0, 0, 0, 0, 0] = response[0, 1, 0, 0, 1] = 2.0
    mark = torch.tensor([1, 1, 0, 1, 1, 0], dtype=torch.bool)   # images whose second text exists
    partners = torch.full((b, 2, 1), -1)
    partners[:, 0, 0] = torch.where(mark, 1, -1)
    got, scores = instance_disambiguation_loss(response, partners, masks, form="code", backend=backend)
    want = code_diversify(response[:, 0, 0], response[:, 1, 0], masks.double(), mark.double())
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g_got = torch.autograd.grad(got, response)[0]
    g_want = torch.autograd.grad(want, response)[0]
    torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-12)
    assert g_got.abs().sum() > 0
    torch.testing.assert_close(scores, reference_alignment(response.flatten(1, 2), masks,
                                                              torch.ones(b, p, dtype=torch.bool)).reshape(b, 2, 1, p))


@pytest.mark.parametrize("backend", BACKENDS)
def test_paper_instance_disambiguation_is_eq9_per_stage(seed, backend):
    b, k, n, p, h, w = 4, 3, 2, 6, 8, 8
    response = torch.rand(b, k, n, h, w, dtype=torch.float64)
    masks = torch.rand(b, p, h, w) > 0.5
    valid = torch.rand(b, p) > 0.2
    valid[:, 0] = True
    partners = torch.tensor([[1], [2], [0]]).expand(b, k, 1).clone()
    partners[0, 2] = -1  # a padded text of image 0
    got, _ = instance_disambiguation_loss(response, partners, masks, valid, backend=backend)
    scores = reference_alignment(response.flatten(1, 2), masks, valid).reshape(b, k, n, p)
    terms = []
    for i in range(b):
        for t in range(k):
            if partners[i, t, 0] < 0:
                continue
            for s in range(n):
                y_a = straight_through_onehot(scores[i, t, s], valid[i])
                y_d = straight_through_onehot(scores[i, int(partners[i, t, 0]), s], valid[i])
                terms.append(1 - (y_a - y_d).pow(2).sum())
    torch.testing.assert_close(got, torch.stack(terms).mean())


def test_instance_disambiguation_bad_inputs():
    r = torch.rand(2, 2, 3, 4, 4)
    masks = torch.rand(2, 5, 4, 4) > 0.5
    with pytest.raises(ValueError, match="partners"):
        instance_disambiguation_loss(r, torch.zeros(2, 3, 1, dtype=torch.long), masks)
    with pytest.raises(ValueError, match="response"):
        instance_disambiguation_loss(r[0], torch.zeros(2, 2, 1, dtype=torch.long), masks)
    with pytest.raises(ValueError, match="form"):
        instance_disambiguation_loss(r, torch.zeros(2, 2, 1, dtype=torch.long), masks, form="x")
    with pytest.raises(ValueError, match="scores_anchor"):
        iad_loss(torch.rand(2, 3), torch.rand(2, 1, 4))


def test_gradcheck_ras_both_forms():
    response, masks = _inputs(b=3, n=3, p=5, h=5, w=5)
    scores = torch.rand(3, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda r: region_shrinking_loss(r, masks, backend="reference"), (response,))
    assert torch.autograd.gradcheck(lambda r: region_shrinking_loss(r, masks, form="code", fg_scores=scores,
                                                                    backend="reference"), (response,))
    # (IaD's straight-through gradient is by design not the derivative of its piecewise-constant
    # value: its gradients are checked against the formulas above instead)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["paper", "code"])
def test_compile_fullgraph_pcnet_loss_step(seed, form):
    b, k, n, p, h, w = 2, 2, 3, 6, 8, 8
    masks = torch.rand(b, p, h, w) > 0.5
    valid = torch.rand(b, p) > 0.2
    valid[:, 0] = True
    partners = torch.tensor([[[1], [0]], [[1], [-1]]])
    logits = torch.randn(b, k, n, h, w, requires_grad=True)

    def step(logits):
        r = torch.sigmoid(logits)
        iad, scores = instance_disambiguation_loss(r, partners, masks, valid, form=form)
        ras = region_shrinking_loss(r, masks, valid, form=form, fg_scores=scores[:, :, -1],
                                    variant="half_dice")
        return ras + iad

    compiled = torch.compile(step, fullgraph=True)
    want = step(logits)
    (g_want,) = torch.autograd.grad(want, logits)
    got = compiled(logits)
    (g_got,) = torch.autograd.grad(got, logits)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    torch.testing.assert_close(g_got, g_want, **TOL[torch.float32])
    assert g_got.abs().sum() > 0
