"""ReferringSegmenter: shapes, the response map, the CRM's attention identities, batch independence."""
import torch
import torch.nn.functional as F

from dapo_fast.models.backbones import BagOfWordsText, SmallCNN
from dapo_fast.models.refseg import ConditionalReferringModule, ReferringSegmenter, normalise_response


def _model(stages=3, use_cues=True, dim=16, vocab=30):
    torch.manual_seed(0)
    model = ReferringSegmenter(SmallCNN(dim, 8, 2), BagOfWordsText(vocab, dim, 16), dim, stages, use_cues)
    for p in model.parameters():  # the zero-initialised stage outputs would hide the stages' effect
        with torch.no_grad():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _batch(b=3, k=2, n=3, length=5, vocab=30):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(b, 3, 32, 32, generator=g)
    expr = torch.randint(1, vocab, (b, k, length), generator=g)
    cues = torch.randint(1, vocab, (b, k, n, length), generator=g)
    return images, expr, cues


def test_shapes_and_response_is_norm_relu_of_own_logits():
    model = _model()
    images, expr, cues = _batch()
    out = model(images, expr, cues)
    assert out["logits"].shape == (3, 3, 6, 64) and out["response"].shape == (3, 3, 2, 8, 8)
    own = out["logits"].reshape(3, 3, 3, 2, 64)[:, torch.arange(3), torch.arange(3)]
    torch.testing.assert_close(out["response"], normalise_response(own).reshape(3, 3, 2, 8, 8))
    # TRIS's pooling
    logits = out["logits"]
    torch.testing.assert_close(out["scores"], logits.mean(-1) + logits.amax(-1))
    # own pairs only: the diagonal blocks of all pairs
    mine = model(images, expr, cues, all_pairs=False)
    assert mine["logits"].shape == (3, 3, 2, 64)
    torch.testing.assert_close(mine["logits"], own, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mine["response"], out["response"], rtol=1e-5, atol=1e-5)
    r = out["response"].flatten(-2)
    assert (r >= 0).all() and (r <= 1).all()
    peak = r.amax(-1)
    assert ((peak - 1).abs() < 1e-4).logical_or(peak == 0).all()
    # the logits are tau * cos: bounded by tau
    assert (out["logits"].abs() <= model.logit_scale.exp() + 1e-4).all()


def test_logits_are_scaled_cosine_of_the_pairs_modulated_text():
    model = _model(stages=1)
    images, expr, cues = _batch()
    out = model(images, expr, cues)
    vis = model.vis_proj(model.image_encoder(images)).flatten(2).transpose(1, 2)
    # image 2 with text 0 of image 1: the text's cue attends over image 2
    query = model.text_proj(model.text_encoder(expr[1:2, :1]))
    cue = model.text_proj(model.text_encoder(cues[1:2, :1]))[:, :, 0]
    q1, scale = model.stages[0](vis[2:3], torch.ones_like(query), query, cue)
    want = model.logit_scale.exp() * F.cosine_similarity(vis[2], (scale * q1)[0], dim=-1)
    torch.testing.assert_close(out["logits"][0, 2, 1 * 2 + 0], want)


def test_a_pair_does_not_see_the_texts_own_image():
    # comparing text t with image i must not depend on the image t describes (else L_cls leaks)
    model = _model()
    images, expr, cues = _batch()
    out = model(images, expr, cues)
    changed = images.clone()
    changed[1] = torch.randn_like(changed[1])
    other = model(changed, expr, cues)
    torch.testing.assert_close(other["logits"][:, 0, 2:4], out["logits"][:, 0, 2:4])  # image 0, texts of image 1
    assert not torch.allclose(other["logits"][:, 1, 2:4], out["logits"][:, 1, 2:4])


def test_attention_over_the_image_equals_the_explicit_form():
    torch.manual_seed(0)
    stage = ConditionalReferringModule(8)
    vis = torch.randn(2, 10, 8)
    scale = 1 + 0.3 * torch.randn(2, 3, 8)
    cue = torch.randn(2, 3, 8)
    got = stage.attend_image(vis, scale, cue)
    for b in range(2):
        for k in range(3):
            feats = vis[b] * scale[b, k]                                          # V * s, [hw, C]
            a = torch.softmax(stage.v2t_key(feats) @ stage.v2t_query(cue[b, k]) / 8 ** 0.5, 0)
            torch.testing.assert_close(got[b, k], a @ stage.v2t_value(feats))


def test_a_texts_maps_do_not_depend_on_the_rest_of_the_batch():
    model = _model().eval()
    images, expr, cues = _batch()
    full = model(images, expr, cues)
    alone = model(images[1:2], expr[1:2, :1], cues[1:2, :1])
    torch.testing.assert_close(alone["response"][:, 0, 0], full["response"][:, 1, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone["logits"][:, 0, 0], full["logits"][:, 1, 2], rtol=1e-5, atol=1e-5)


def test_cues_change_the_maps_and_get_gradients():
    model = _model()
    images, expr, cues = _batch()
    out = model(images, expr, cues)
    other = model(images, expr, cues.roll(1, dims=2))
    assert not torch.allclose(out["logits"][-1], other["logits"][-1])
    out["logits"].sum().backward()
    for name in ("v2t_query", "t2t_key", "null_cue", "film"):
        grads = [p.grad for n, p in model.stages[1].named_parameters() if n.startswith(name)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), name


def test_without_cues_the_query_is_the_expression():
    model = _model(stages=1, use_cues=False)
    images, expr, _ = _batch()
    out = model(images, expr)
    assert out["logits"].shape == (1, 3, 6, 64)
    assert not hasattr(model.stages[0], "v2t_query")
    # without cues a text's query is the same against every image
    torch.testing.assert_close(model(images, expr, all_pairs=False)["logits"][0, 1],
                               out["logits"][0, 1, 2:4])


def test_bad_cue_shape_is_named():
    model = _model()
    images, expr, cues = _batch()
    for bad in (None, cues[:, :, :2], cues[:, 0]):
        try:
            model(images, expr, bad)
        except ValueError as err:
            assert "cue_tokens" in str(err)
        else:
            raise AssertionError("no error for bad cue_tokens")
