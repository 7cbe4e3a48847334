"""The proposal-based grounders: RoIAlign region features, the phrase encoder, MPL's dual encoder,
ReIR's coarse-to-fine network and AlignCAT's query matcher."""
import types

import pytest
import torch

from dapo_fast.models.heatmap_grounder import ModelConfig
from dapo_fast.models.proposal_grounder import (DualEncoderGrounder, PhraseEncoder, RegionEncoder, box_geometry,
                                                build_encoders, rois_of)
from dapo_fast.models.query_grounder import QueryGrounder
from dapo_fast.models.refinement_grounder import RefinementGrounder, clip_boxes, gather_rows
from dapo_fast.ops import roi_align

CFG = ModelConfig(dim=16, cnn_width=8, text_width=8)
VOCAB = 12


def batch(B=3, J=5, E=2, S=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(B, J, 2, generator=g) * S * 0.6
    wh = torch.rand(B, J, 2, generator=g) * S * 0.3 + 3
    tokens = torch.randint(1, VOCAB, (B, E, 4), generator=g)
    tokens[:, :, 2:] = 0
    tokens[-1, -1] = 0  # an empty entity slot
    return dict(images=torch.randn(B, 3, S, S, generator=g), boxes=torch.cat([xy, xy + wh], -1),
                box_valid=torch.ones(B, J, dtype=torch.bool), phrase_tokens=tokens)


def run(model, b):
    return model(b["images"], b["boxes"], b["box_valid"], b["phrase_tokens"])


def test_rois_and_geometry():
    boxes = torch.tensor([[[0.0, 0, 8, 8], [4, 4, 12, 20]], [[1, 2, 3, 4], [0, 0, 16, 16]]])
    rois = rois_of(boxes)
    assert rois[:, 0].tolist() == [0, 0, 1, 1] and torch.equal(rois[:, 1:], boxes.reshape(4, 4))
    geo = box_geometry(boxes, 16)
    assert geo[1, 1].tolist() == [0, 0, 1, 1, 1]
    assert geo[0, 1, 4].item() == pytest.approx((0.5 * 1.0) ** 0.5)


def test_region_features_are_roi_align_of_the_backbone_map(seed):
    regions, _ = build_encoders(CFG, VOCAB, pool=3, head_hidden=8)
    b = batch()
    feats = regions.feature_map(b["images"])
    pooled, region = regions(feats, b["boxes"], 32)
    expected = roi_align(feats, rois_of(b["boxes"]), 3, 1 / regions.stride, 2, True).mean((2, 3)).reshape(3, 5, -1)
    torch.testing.assert_close(pooled, expected)
    assert region.shape == (3, 5, 16)
    regions.per_image_rois = True  # the papers' per-image loop: the same numbers
    p2, r2 = regions(feats, b["boxes"], 32)
    torch.testing.assert_close(p2, pooled)
    torch.testing.assert_close(r2, region)


@pytest.mark.parametrize("cell, bidirectional", [("lstm", False), ("gru", True)])
def test_phrase_encoder_ignores_padding(seed, cell, bidirectional):
    enc = PhraseEncoder(VOCAB, 8, 16, cell, bidirectional)
    tokens = torch.tensor([[3, 4, 0, 0], [5, 0, 0, 0], [0, 0, 0, 0]])
    words, phrase, mask = enc(tokens)
    assert words.shape == (3, 4, 16) and phrase.shape == (3, 16)
    assert mask.tolist() == [[True, True, False, False], [True, False, False, False], [False] * 4]
    _, short, _ = enc(tokens[:, :2])  # less padding: the same phrase features
    torch.testing.assert_close(short, phrase)
    torch.testing.assert_close(phrase[0], words[0, :2].mean(0))
    with pytest.raises(ValueError, match="cell"):
        PhraseEncoder(VOCAB, 8, 16, "rnn")


def test_dual_encoder_scores_are_dot_products_and_regions_see_only_their_image(seed):
    regions, phrases = build_encoders(CFG, VOCAB, pool=3, head_hidden=8)
    model = DualEncoderGrounder(regions, phrases, 16)
    b = batch()
    out = run(model, b)
    assert out["region"].shape == (3, 5, 16) and out["phrase"].shape == (3, 2, 16) and out["pooled"].shape == (3, 5, 16)
    torch.testing.assert_close(out["scores"], torch.einsum("bed,bjd->bej", out["phrase"], out["region"]))
    # an invalid (padding) region does not change the valid regions' features (the transformer masks it)
    b2 = dict(b, box_valid=b["box_valid"].clone(), boxes=b["boxes"].clone())
    b2["box_valid"][0, 4] = False
    b2["boxes"][0, 4] = torch.tensor([1.0, 1, 30, 30])
    b3 = dict(b2, boxes=b2["boxes"].clone())
    b3["boxes"][0, 4] = torch.tensor([5.0, 5, 9, 9])
    torch.testing.assert_close(run(model, b2)["region"][0, :4], run(model, b3)["region"][0, :4])


def test_refinement_grounder_coarse_to_fine(seed):
    regions, phrases = build_encoders(CFG, VOCAB, pool=3, head_hidden=8)
    model = RefinementGrounder(regions, phrases, 16, VOCAB, top_k=3, hidden=8)
    b = batch()
    out = run(model, b)
    assert out["coarse_scores"].shape == (3, 2, 5) and out["coarse_offsets"].shape == (3, 2, 5, 4)
    torch.testing.assert_close(out["coarse_attn"].sum(-1), torch.ones(3, 2))
    assert torch.equal(out["top"], out["coarse_scores"].topk(3, -1).indices)
    assert torch.equal(out["top_boxes"], gather_rows(b["boxes"], out["top"]))
    # the regressors start at zero: before any regression training the refined boxes are the proposals
    assert torch.count_nonzero(out["coarse_offsets"]) == 0
    torch.testing.assert_close(out["refined"], clip_boxes(out["top_boxes"], 32))
    torch.testing.assert_close(out["fused"], torch.gather(out["coarse_attn"], 2, out["top"]) * out["fine_attn"])
    coarse_only = RefinementGrounder(regions, phrases, 16, VOCAB, refine=False)
    assert "fused" not in run(coarse_only, b)


def test_refinement_grounder_moves_boxes_by_its_offsets(seed):
    regions, phrases = build_encoders(CFG, VOCAB, pool=3, head_hidden=8)
    model = RefinementGrounder(regions, phrases, 16, VOCAB, top_k=2, hidden=8)
    torch.nn.init.constant_(model.coarse.reg[-1].bias, 0.0)
    model.coarse.reg[-1].bias.data[0] = 1.0  # dx = 1: shift by a tenth of the width (weight 10)
    b = batch()
    out = run(model, b)
    top = out["top_boxes"]
    shift = (top[..., 2] - top[..., 0]) / 10
    expected = clip_boxes(top + torch.stack([shift, 0 * shift, shift, 0 * shift], -1), 32)
    torch.testing.assert_close(out["refined"], expected)


def test_clip_boxes_keeps_a_box():
    boxes = torch.tensor([[-5.0, -5, 3, 3], [30, 30, 40, 40], [10, 10, 9, 9]])
    out = clip_boxes(boxes, 32)
    assert out.tolist() == [[0, 0, 3, 3], [30, 30, 32, 32], [10, 10, 11, 11]]


def test_query_grounder_spaces_and_word_weights(seed):
    regions, phrases = build_encoders(CFG, VOCAB, pool=3, head_hidden=8, cell="gru", bidirectional=True)
    categories = torch.tensor([[3, 0, 0, 0], [4, 0, 0, 0], [5, 6, 0, 0]])  # three category words (ids)
    model = QueryGrounder(regions, phrases, 16, categories)
    b = batch()
    out = run(model, b)
    torch.testing.assert_close(out["s_global"], torch.einsum("bed,bjd->bej", out["global_t"], out["global_q"]))
    torch.testing.assert_close(out["s_fine"], torch.einsum("bed,bjd->bej", out["fine_t"], out["fine_q"]))
    w = out["word_weights"]
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 2))
    tokens = b["phrase_tokens"]
    real = (tokens != 0).any(-1)  # slots with an entity put no weight on padding
    assert (w[real][tokens[real] == 0] == 0).all() and (w[real][tokens[real] != 0] > 0).all()
    assert out["text_logits"].shape == (3, 2, 3)
    # a query's category scores: its global-space score with each category word, encoded as a phrase
    _, f_c, _ = phrases(categories)
    torch.testing.assert_close(out["query_logits"], torch.einsum("bjd,cd->bjc", out["global_q"], model.global_t(f_c)))
    assert torch.isfinite(out["fine_t"]).all()


def test_open_clip_backbone_builds_region_and_phrase_encoders(tiny_clip):
    cfg = ModelConfig(backbone="open_clip", dim=16, open_clip_model="dapo-tiny-vit", freeze_backbone=True)
    regions, phrases = build_encoders(cfg, 0, pool=2, head_hidden=8)
    assert regions.stride == 8
    assert phrases.embed.weight.shape == (49408, 32) and not phrases.embed.weight.requires_grad
    model = DualEncoderGrounder(regions, phrases, 16)
    tokens = torch.zeros(2, 1, 77, dtype=torch.long)
    tokens[:, 0, :3] = torch.tensor([49406, 320, 49407])
    out = model(torch.randn(2, 3, 32, 32), torch.tensor([[[0.0, 0, 16, 16]], [[8, 8, 30, 30]]]),
                torch.ones(2, 1, dtype=torch.bool), tokens)
    assert out["scores"].shape == (2, 1, 1)
    with pytest.raises(ValueError, match="model.backbone"):
        build_encoders(types.SimpleNamespace(backbone="resnet"), VOCAB, 3, 8)
