"""The proposal methods' losses: MPL's objective (fused ops vs MPL's code form), ReIR's self-taught
regression and ranking, QueryMatch/AlignCAT's selection and contrastive terms."""
import pytest
import torch
import torch.nn.functional as F

from dapo_fast.losses.mpl import mpl_loss
from dapo_fast.losses.querymatch import info_nce, negative_indices, negative_logits, other_images, select_positive
from dapo_fast.losses.reir import ranking_loss, self_taught_loss
from dapo_fast.ops import pseudo_label_contrastive_loss, self_taught_targets, select_hard_negatives
from dapo_fast.ops.self_taught_targets import self_taught_targets_reir_code_form


def _mpl_inputs(B=4, K=6, Q=3, D=8, C=5, seed=0, all_regions_valid=False):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(K, C, generator=g)
    pooled = base[torch.randint(0, K, (B, K), generator=g)] + 0.05 * torch.randn(B, K, C, generator=g)
    student = {"phrase": torch.randn(B, Q, D, generator=g, dtype=torch.float64).requires_grad_(),
               "region": torch.randn(B, K, D, generator=g, dtype=torch.float64).requires_grad_()}
    teacher = {"phrase": torch.randn(B, Q, D, generator=g, dtype=torch.float64),
               "region": torch.randn(B, K, D, generator=g, dtype=torch.float64)}
    phrase_valid = torch.rand(B, Q, generator=g) < 0.7
    phrase_valid[:, 0] = True
    region_valid = torch.rand(B, K, generator=g) < 0.85
    if all_regions_valid:
        region_valid[:] = True
    return student, teacher, pooled.double(), phrase_valid, region_valid


@pytest.mark.parametrize("mode", ["none", "fne", "fnc"])
def test_mpl_loss_code_form_and_fused_agree(mode):
    """Equal where MPL's code and the paper agree: every region valid (the synthetic proposals and a
    full detections file), at most 10 phrases per image; the code's quirks are the op's own tests."""
    student, teacher, pooled, pv, rv = _mpl_inputs(all_regions_valid=True)
    fused = mpl_loss(student, teacher, pooled, pv, rv, mode, 0.9, 1.0, torch.tensor(0.2, dtype=torch.float64))
    code = mpl_loss(student, teacher, pooled, pv, rv, mode, 0.9, 1.0, 0.2, code_form=True)
    torch.testing.assert_close(fused["loss"], code["loss"], rtol=1e-10, atol=1e-12)
    g1 = torch.autograd.grad(fused["loss"], [student["phrase"], student["region"]])
    g2 = torch.autograd.grad(code["loss"], [student["phrase"], student["region"]])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    if mode != "none":
        assert 0 < float(fused["false_negatives"]) < 1  # the clustered features give some, not all
    else:
        assert float(fused["false_negatives"]) == 0


def test_mpl_teacher_temperature_scales_the_teacher_logits():
    student, teacher, pooled, pv, rv = _mpl_inputs()
    ours = mpl_loss(student, teacher, pooled, pv, rv, "none", teacher_tau=0.25)["loss"]
    op = pseudo_label_contrastive_loss(student["phrase"], student["region"], teacher["phrase"], teacher["region"],
                                       pv, rv, tau=1.0, teacher_tau=0.25)
    torch.testing.assert_close(ours, op)


def test_mpl_false_negative_share_counts_cross_image_regions():
    B, K = 3, 2
    pooled = torch.tensor([[[1.0, 0], [0, 1]], [[1.0, 0], [1, 1]], [[-1.0, 0], [0, -1]]])
    teacher = {"phrase": torch.randn(B, 1, 4), "region": torch.randn(B, K, 4)}
    student = {k: v.clone().requires_grad_() for k, v in teacher.items()}
    out = mpl_loss(student, teacher, pooled, torch.ones(B, 1, dtype=torch.bool), torch.ones(B, K, dtype=torch.bool),
                   "fne", threshold=0.99)
    # flagged (i, a, l): (0,1,0) and (1,0,0): 2 of the 3 * 2 * 2 = 12 cross-image (image, region) pairs
    assert float(out["false_negatives"]) == pytest.approx(2 / 12)


def _clustered_boxes(B=3, J=12, P=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(B, 3, 2, generator=g) * 200
    pick = torch.randint(0, 3, (B, J), generator=g)
    c = torch.gather(centres, 1, pick[..., None].expand(B, J, 2)) + torch.randn(B, J, 2, generator=g) * 4
    wh = 40 + torch.randn(B, J, 2, generator=g) * 4
    return torch.cat([c - wh / 2, c + wh / 2], -1).double(), torch.rand(B, P, J, generator=g, dtype=torch.float64)


def test_self_taught_targets_reir_code_form_equals_the_op():
    boxes, scores = _clustered_boxes()
    d1, w1 = self_taught_targets(boxes, scores, 0.6, 0.1)
    d2, w2 = self_taught_targets_reir_code_form(boxes, scores, 0.6, 0.1)
    assert w1.sum() > 0
    torch.testing.assert_close(w1, w2)
    torch.testing.assert_close(d1, d2)


def test_self_taught_loss_ignores_invalid_pairs_and_regresses_toward_the_pseudo_box():
    boxes, scores = _clustered_boxes()
    offsets = torch.zeros(3, 4, 12, 4, dtype=torch.float64, requires_grad=True)
    valid = torch.ones(3, 4, 12, dtype=torch.bool)
    loss = self_taught_loss(offsets, boxes, scores, valid, pseudo_box=False)
    deltas, weights = self_taught_targets(boxes, scores)
    expected = (F.smooth_l1_loss(offsets, deltas, reduction="none", beta=1.0) * weights[..., None]).sum()
    torch.testing.assert_close(loss, expected)
    assert float(self_taught_loss(offsets, boxes, scores, torch.zeros_like(valid)).detach()) == 0
    torch.testing.assert_close(self_taught_loss(offsets, boxes, scores, valid, pseudo_box=False, code_form=True), loss)
    # the pseudo box itself (eq. 15): one more term per phrase, pulling its offset to zero
    shifted = torch.ones_like(offsets)
    with_pseudo = self_taught_loss(shifted, boxes, scores, valid)
    without = self_taught_loss(shifted, boxes, scores, valid, pseudo_box=False)
    per_box = F.smooth_l1_loss(torch.ones(4), torch.zeros(4), reduction="sum", beta=1.0)
    torch.testing.assert_close(with_pseudo - without, per_box.double() * 3 * 4)


def test_ranking_loss_matches_its_definition(seed):
    B, E, J, D = 3, 2, 4, 5
    q = F.normalize(torch.randn(B, E, D, dtype=torch.float64), dim=-1)
    o = F.normalize(torch.randn(B, J, D, dtype=torch.float64), dim=-1)
    pv = torch.tensor([[True, True], [True, False], [True, True]])
    rv = torch.ones(B, J, dtype=torch.bool)
    rv[2, 3] = False
    S = torch.zeros(B, B, dtype=torch.float64)
    for b in range(B):
        for a in range(B):
            vals = []
            for e in range(E):
                if pv[b, e]:
                    cos = o[a][rv[a]] @ q[b, e]
                    vals.append((torch.softmax(10 * cos, 0) * cos).sum())
            S[b, a] = torch.stack(vals).mean()
    total = 0.0
    for b in range(B):
        for a in range(B):
            if a != b:
                total += max(0.0, 0.2 - S[b, b] + S[b, a]) + max(0.0, 0.2 - S[a, a] + S[b, a])
    torch.testing.assert_close(ranking_loss(q, o, pv, rv, 10.0, 0.2), total / (B * (B - 1)))


def test_querymatch_positive_is_the_best_global_query():
    s_global = torch.tensor([[[0.1, 0.9, 0.5, 0.2]]])
    valid = torch.tensor([[True, False, True, True]])
    qc = torch.zeros(1, 4, dtype=torch.long)
    assert select_positive(s_global, s_global, qc, qc[:, :1], valid, aligncat=False).tolist() == [[2]]


def test_aligncat_positive_category_then_fine():
    s_global = torch.tensor([[[5.0, 4.0, 3.0, 2.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0]]])
    s_fine = torch.tensor([[[9.0, 1.0, 2.0, 8.0, 7.0], [9.0, 1.0, 2.0, 8.0, 7.0]]])
    query_class = torch.tensor([[0, 1, 1, 1, 2]])
    text_class = torch.tensor([[1, 3]])  # category 3: no query has it -> every query is a candidate
    valid = torch.ones(1, 5, dtype=torch.bool)
    # category 1: queries 1, 2, 3; top-2 of S_coarse = 1, 2; fine picks 2 (3 has a higher S_fine but was cut)
    out = select_positive(s_global, s_fine, query_class, text_class, valid, top_k=2)
    assert out.tolist() == [[2, 0]]
    assert select_positive(s_global, s_fine, query_class, text_class, valid, top_k=3).tolist() == [[3, 0]]
    # without S_class: top-2 of S_global (0, 1), fine picks 0
    no_class = select_positive(s_global, s_fine, query_class, text_class, valid, use_class=False, top_k=2)
    assert no_class.tolist() == [[0, 0]]
    # an unknown category (-1) never matches a query
    assert select_positive(s_global, s_fine, query_class, torch.tensor([[-1, -1]]), valid, top_k=2).tolist() == [[0, 0]]


def test_negatives_and_info_nce(seed):
    B, E, J, D = 4, 2, 5, 6
    text = torch.randn(B, E, D, dtype=torch.float64)
    queries = torch.randn(B, J, D, dtype=torch.float64)
    valid = torch.ones(B, J, dtype=torch.bool)
    valid[1, 4] = False
    index = negative_indices(queries, text, "hard", 2, "paper")
    assert index.shape == (B, E, B - 1, 2)
    assert torch.equal(index[:, 1], select_hard_negatives(queries, text[:, 1], 2, "paper"))
    torch.testing.assert_close(negative_indices(queries, text, "hard", 2, "pairwise", code_form=True),
                               negative_indices(queries, text, "hard", 2, "pairwise"))
    logits = negative_logits(text, queries, valid, index)
    others = other_images(B, "cpu")
    b, e, j, s = 2, 1, 0, 1
    assert logits[b, e, j * 2 + s].item() == pytest.approx(float(text[b, e] @ queries[others[b, j], index[b, e, j, s]]))
    full = negative_logits(text, queries, valid, None).reshape(B, E, B, J)
    assert torch.isinf(full[0, :, 0]).all() and torch.isinf(full[0, :, 1, 4]).all()  # own image, invalid query
    assert full[0, 1, 2, 3].item() == pytest.approx(float(text[0, 1] @ queries[2, 3]))
    positive = torch.randint(0, J, (B, E))
    pv = torch.ones(B, E, dtype=torch.bool)
    pos = (text * queries[torch.arange(B)[:, None], positive]).sum(-1)
    expected = -(pos - torch.logsumexp(torch.cat([pos[..., None], logits], -1), -1)).mean()
    torch.testing.assert_close(info_nce(text, queries, positive, valid, pv, index), expected)
    rnd = negative_indices(queries, text, "random", 3, "paper")
    assert rnd.shape == (B, E, B - 1, 3) and int(rnd.max()) < J
