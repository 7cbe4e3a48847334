import pytest
import torch

from dapo_fast.losses.grounding import (dapo_loss, diffusion_guided_loss_per_entity, self_paced_weights,
                                   wwbl_task_loss)


def _inputs(B=4, E=3, D=8, h=6, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    heat = torch.rand(B, E, h, w, generator=g, dtype=torch.float64).requires_grad_()
    pix = torch.randn(B, D, h, w, generator=g, dtype=torch.float64).requires_grad_()
    text = torch.randn(B, E, D, generator=g, dtype=torch.float64).requires_grad_()
    valid = torch.ones(B, E, dtype=torch.bool)
    valid[0, -1] = valid[-1, 1:] = False
    tokens = torch.arange(B * E * 2).view(B, E, 2)
    return heat, pix, text, valid, tokens


def test_task_loss_matches_direct_formula():
    heat, pix, text, valid, tokens = _inputs()
    out = wwbl_task_loss(heat, pix, text, valid, tokens, tau=0.2, w_fg=1.0, w_bg=2.0, w_area=0.5, bg_power=3.0)
    pix = torch.nn.functional.normalize(pix, dim=1)
    B, E = valid.shape
    fg = torch.stack([torch.stack([(pix[b] * heat[b, e]).sum((1, 2)) / heat[b, e].sum() for e in range(E)]) for b in range(B)])
    fg, t = [torch.nn.functional.normalize(x, dim=-1) for x in (fg, text)]
    # background: share of the entity's evidence relu(cos(V(x), t))^3 left outside the heatmap
    cos = torch.einsum("bdhw,bed->behw", pix, t)
    evidence = cos.clamp_min(0) ** 3
    bg = ((1 - heat) * evidence).sum((2, 3)) / evidence.sum((2, 3))
    flat_t, flat_v = t.reshape(B * E, -1), valid.flatten()
    for n in range(B * E):
        b, e = divmod(n, E)
        if not valid[b, e]:
            assert out["loss"][b, e] == 0
            continue
        logits = (fg[b, e] @ flat_t.t()) / 0.2
        logits = logits[flat_v]
        pos = int(flat_v[:n].sum())
        ce = -torch.log_softmax(logits, 0)[pos]
        expect = ce + 2.0 * bg[b, e] + 0.5 * heat[b, e].mean()
        torch.testing.assert_close(out["loss"][b, e], expect)


def test_same_phrase_is_not_a_negative():
    heat, pix, text, valid, tokens = _inputs()
    tokens[1, 0] = tokens[2, 1]  # two entities share a phrase
    text = text.detach().clone()
    text[1, 0] = text[2, 1]
    a = wwbl_task_loss(heat, pix, text, valid, tokens)["fg"]
    # moving the duplicate's embedding must not change the other's loss: it is masked out
    text2 = text.clone()
    text2[2, 1] += 5.0
    b = wwbl_task_loss(heat, pix, text2, valid, tokens)["fg"]
    torch.testing.assert_close(a[1, 0], b[1, 0])


def test_task_loss_gradcheck():
    heat, pix, text, valid, tokens = _inputs(B=2, E=2, D=3, h=3, w=2)
    valid[:] = True
    # the background term reads the evidence map detached (a target, not a path for gradients), so the
    # full loss is checked with it off, and the background term alone against the heatmap only
    f = lambda h, p, t: wwbl_task_loss(h, p, t, valid, tokens, w_bg=0.0, w_peak=1.0)["loss"].sum()
    assert torch.autograd.gradcheck(f, (heat, pix, text))
    g = lambda h: wwbl_task_loss(h, pix.detach(), text.detach(), valid, tokens, w_fg=0.0, w_area=0.0)["bg"].sum()
    assert torch.autograd.gradcheck(g, (heat,))


def test_background_term_trains_the_heatmap_only():
    heat, pix, text, valid, tokens = _inputs()
    out = wwbl_task_loss(heat, pix, text, valid, tokens, w_fg=0.0, w_area=0.0)
    out["bg"].sum().backward()
    assert heat.grad.abs().sum() > 0
    assert pix.grad is None and text.grad is None
    # covering every location with evidence leaves nothing outside: the term is 0
    full = wwbl_task_loss(torch.ones_like(heat), pix, text, valid, tokens)["bg"]
    assert float(full.abs().max()) == 0.0


def test_loss_prefers_the_right_heatmap():
    # two images, one entity each, the entity's embedding equals the features at its object's location
    D, h, w = 4, 4, 4
    pix = torch.zeros(2, D, h, w)
    pix[0, :, 0, 0] = torch.tensor([1.0, 0, 0, 0])
    pix[0, :, 3, 3] = torch.tensor([0, 1.0, 0, 0])
    pix[1, :, 0, 0] = torch.tensor([0, 1.0, 0, 0])
    pix[1, :, 3, 3] = torch.tensor([1.0, 0, 0, 0])
    text = torch.tensor([[[1.0, 0, 0, 0]], [[0, 1.0, 0, 0]]])
    good = torch.zeros(2, 1, h, w)
    good[0, 0, 0, 0] = good[1, 0, 0, 0] = 1
    bad = torch.zeros(2, 1, h, w)
    bad[0, 0, 3, 3] = bad[1, 0, 3, 3] = 1
    valid = torch.ones(2, 1, dtype=torch.bool)
    tokens = torch.tensor([[[1]], [[2]]])
    lg = wwbl_task_loss(good, pix, text, valid, tokens)["loss"].sum()
    lb = wwbl_task_loss(bad, pix, text, valid, tokens)["loss"].sum()
    assert lg < lb


def test_self_paced_weights_closed_form():
    L = torch.tensor([0.0, 1.0, 2.0, 10.0])
    s = torch.tensor([0.8, 0.8, 0.5, 1.0])
    torch.testing.assert_close(self_paced_weights(L, s, 0.5), torch.tensor([0.8, 0.3, 0.0, 0.0]))
    torch.testing.assert_close(self_paced_weights(L, s, 0.5, normaliser=torch.tensor(2.0)),
                               torch.tensor([0.8, 0.55, 0.0, 0.0]))


def test_diffusion_guided_term_is_eq5():
    heat = torch.rand(2, 3, 4, 4, requires_grad=True)
    attn = torch.rand(2, 3, 4, 4, requires_grad=True)
    has = torch.tensor([[True, True, False], [False, True, True]])
    per = diffusion_guided_loss_per_entity(heat, attn, has)
    expect = ((heat - attn) ** 2).sum((2, 3)) * has
    torch.testing.assert_close(per, expect)
    per.sum().backward()
    assert attn.grad is None or not attn.grad.any()  # the attention map is a target only
    assert heat.grad[0, 2].abs().sum() == 0 and heat.grad[0, 0].abs().sum() > 0


def test_dapo_loss_mu_mixes_task_and_diffusion_terms():
    heat, pix, text, valid, tokens = _inputs()
    out = dict(heatmaps=heat, pixel_embed=pix, text_embed=text)
    batch = dict(entity_valid=valid, phrase_tokens=tokens, mu=torch.tensor([1.0, 0.0, 1.0, 0.0]),
                 attn_maps=torch.rand_like(heat), attn_valid=valid.clone())
    res = dapo_loss(out, batch, sreg=None, gamma=0.5)
    task = wwbl_task_loss(heat, pix, text, valid, tokens)["loss"]
    ld = diffusion_guided_loss_per_entity(heat, batch["attn_maps"], valid)
    mu = batch["mu"][:, None]
    expect = ((mu * task + (1 - mu) * ld) * valid).sum() / valid.sum()
    torch.testing.assert_close(res["loss"], expect)
    # self-paced weights: SREG = 0 switches every sample off
    zero = dapo_loss(out, batch, sreg=torch.zeros(valid.shape, dtype=torch.float64), gamma=0.5)
    assert zero["loss"] == 0 and zero["v_mean"] == 0
    sreg = torch.rand(valid.shape, dtype=torch.float64)
    weighted = dapo_loss(out, batch, sreg=sreg, gamma=0.2)
    per = (mu * task + (1 - mu) * ld) * valid
    v = (sreg - 0.2 * per.detach() / (per.detach().sum() / valid.sum())).clamp(0, 1) * valid
    torch.testing.assert_close(weighted["loss"], (v * per).sum() / v.sum())


def test_peak_contrast_formula_and_same_image_masking():
    heat, pix, text, valid, tokens = _inputs(B=3, E=2)
    valid[:] = True
    out = wwbl_task_loss(heat, pix, text, valid, tokens, w_fg=0.0, w_bg=0.0, w_area=0.0, w_peak=1.0, tau=0.5)
    V = torch.nn.functional.normalize(pix.flatten(2), dim=1)
    t = torch.nn.functional.normalize(text, dim=-1).reshape(6, -1)
    for b in range(3):
        for e in range(2):
            n = b * 2 + e
            score = torch.einsum("dh,nd->nh", V[b], t).amax(-1) / 0.5
            keep = torch.tensor([m == n or m // 2 != b for m in range(6)])  # the image's other entity is dropped
            expect = -torch.log_softmax(score[keep], 0)[int(keep[:n].sum())]
            torch.testing.assert_close(out["peak"][b, e], expect)
            torch.testing.assert_close(out["loss"][b, e], expect)
