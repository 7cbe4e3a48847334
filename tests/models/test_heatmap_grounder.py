import pytest
import torch

from dapo_fast.models.heatmap_grounder import HeatmapGrounder, ModelConfig, build_model


def test_small_grounder_shapes_and_range(seed):
    model, tok = build_model(ModelConfig(dim=16, cnn_width=8, text_width=16, decoder_width=8), vocab_size=12)
    assert tok is None
    images = torch.randn(3, 3, 32, 40)
    tokens = torch.randint(1, 12, (3, 2, 5))
    valid = torch.tensor([[True, True], [True, False], [False, False]])
    out = model(images, tokens, valid)
    assert out["heatmaps"].shape == out["logits"].shape == (3, 2, 8, 10)
    assert out["pixel_embed"].shape == (3, 16, 8, 10) and out["text_embed"].shape == (3, 2, 16)
    h = out["heatmaps"]
    assert (h >= 0).all() and (h <= 1).all()
    assert (h[1, 1] == 0).all() and (h[2] == 0).all()
    out["heatmaps"].sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_text_padding_is_ignored():
    model, _ = build_model(ModelConfig(dim=16, cnn_width=8, text_width=16, decoder_width=8), vocab_size=12)
    a = model.encode_text(torch.tensor([[3, 4, 0, 0]]))
    b = model.encode_text(torch.tensor([[3, 4, 0, 0, 0, 0]]))
    torch.testing.assert_close(a, b)


def test_small_backbone_needs_vocab():
    with pytest.raises(ValueError, match="vocab_size"):
        build_model(ModelConfig(), vocab_size=0)
    with pytest.raises(ValueError, match="backbone"):
        build_model(ModelConfig(backbone="vgg"), vocab_size=10)


def test_open_clip_backbone_with_local_weights(tiny_clip, tmp_path):
    clip = tiny_clip.create_model("dapo-tiny-vit")
    weights = tmp_path / "w.pt"
    torch.save(clip.state_dict(), weights)
    cfg = ModelConfig(backbone="open_clip", open_clip_model="dapo-tiny-vit", pretrained=str(weights), dim=16)
    model, tok = build_model(cfg)
    # the local weights were loaded into the frozen towers
    torch.testing.assert_close(model.image_encoder.visual.conv1.weight, clip.visual.conv1.weight)
    assert not model.image_encoder.visual.conv1.weight.requires_grad
    tokens = torch.stack([torch.stack([tok.encode("a red circle"), tok.encode("blue square")])])
    out = model(torch.randn(1, 3, 32, 32), tokens, torch.ones(1, 2, dtype=torch.bool))
    assert out["heatmaps"].shape == (1, 2, 4, 4)
    with pytest.raises(FileNotFoundError, match="nothere.bin"):
        build_model(ModelConfig(backbone="open_clip", open_clip_model="dapo-tiny-vit",
                                pretrained=str(tmp_path / "nothere.bin")))
