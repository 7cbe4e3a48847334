import pytest
import torch

from dapo_fast.models.heatmap_grounder import HeatmapGrounder, ModelConfig, build_model


@pytest.mark.parametrize("stride,pool", [(2, 2), (4, 1)])  # the default, and the stride-4 map
def test_small_grounder_shapes_and_range(seed, stride, pool):
    cfg = ModelConfig(dim=16, cnn_width=8, text_width=16, decoder_width=8, stride=stride, decoder_pool=pool)
    model, tok = build_model(cfg, vocab_size=12)
    assert tok is None
    images = torch.randn(3, 3, 32, 40)
    tokens = torch.randint(1, 12, (3, 2, 5))
    valid = torch.tensor([[True, True], [True, False], [False, False]])
    out = model(images, tokens, valid)
    h, w = 32 // stride, 40 // stride
    assert out["heatmaps"].shape == out["logits"].shape == (3, 2, h, w)
    assert out["pixel_embed"].shape == (3, 16, h, w) and out["text_embed"].shape == (3, 2, 16)
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


def test_small_cnn_features_are_local(seed):
    # a location's feature may only depend on its receptive field (18 input px centred on the
    # cell): image-wide statistics (GroupNorm) would let the heatmap pool evidence from anywhere
    from dapo_fast.models.backbones import SmallCNN

    cnn = SmallCNN(out_dim=16, width=16).eval()
    x = torch.rand(2, 3, 64, 64)
    far = x.clone()
    far[:, :, 24:, :] = torch.rand(2, 3, 40, 64)  # rows 24..63: outside the field of feature rows 0..2
    near = x.clone()
    near[:, :, 12, 12] += 1.0  # inside the field of feature (2, 2), centred on input pixel (10, 10)
    with torch.no_grad():
        f, f_far, f_near = cnn(x), cnn(far), cnn(near)
    assert f.shape == (2, 16, 16, 16)
    assert torch.equal(f[:, :, :3], f_far[:, :, :3])
    assert (f[:, :, 6:] != f_far[:, :, 6:]).any()  # the change itself is seen where it happened
    assert (f[:, :, 2, 2] != f_near[:, :, 2, 2]).any()


def test_location_norm_normalises_each_location_over_channels(seed):
    from dapo_fast.models.backbones import LocationNorm

    norm = LocationNorm(5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(5))
        norm.bias.copy_(torch.randn(5))
    x = torch.randn(3, 5, 4, 7, dtype=torch.float64)[..., ::2]  # non-contiguous input
    mean = x.mean(1, keepdim=True)
    var = x.var(1, unbiased=False, keepdim=True)
    want = (x - mean) / torch.sqrt(var + 1e-5) * norm.weight.double()[:, None, None] + norm.bias.double()[:, None, None]
    torch.testing.assert_close(norm.double()(x), want)


def test_stride_2_heatmaps_are_twice_as_fine_and_stay_local(seed):
    from dapo_fast.models.backbones import SmallCNN

    model, _ = build_model(ModelConfig(dim=16, cnn_width=8, text_width=16, decoder_width=8, stride=2), vocab_size=12)
    assert model.stride == 2
    out = model(torch.randn(2, 3, 32, 40), torch.randint(1, 12, (2, 2, 5)), torch.ones(2, 2, dtype=torch.bool))
    assert out["heatmaps"].shape == (2, 2, 16, 20) and out["pixel_embed"].shape == (2, 16, 16, 20)
    out["heatmaps"].sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    cnn = SmallCNN(out_dim=16, width=16, stride=2).eval()
    x = torch.rand(2, 3, 64, 64)
    far = x.clone()
    far[:, :, 32:, :] = torch.rand(2, 3, 32, 64)  # outside the field of feature rows 0..5 (input rows < 24)
    with torch.no_grad():
        f, f_far = cnn(x), cnn(far)
    assert f.shape == (2, 16, 32, 32)
    assert torch.equal(f[:, :, :6], f_far[:, :, :6]) and (f[:, :, 20:] != f_far[:, :, 20:]).any()
    with pytest.raises(ValueError, match="stride"):
        SmallCNN(stride=8)


def test_decoder_pool_runs_the_mlp_on_pooled_features_and_upsamples_its_logits(seed):
    import torch.nn.functional as F

    cfg = ModelConfig(dim=16, cnn_width=8, text_width=16, decoder_width=8, stride=2, decoder_pool=2)
    model, _ = build_model(cfg, vocab_size=12)
    model.similarity_logits = False
    images, tokens = torch.randn(2, 3, 32, 32), torch.randint(1, 12, (2, 2, 5))
    out = model(images, tokens)
    with torch.no_grad():
        coarse = F.avg_pool2d(model.image_encoder(images), 2)
        cond = model.pix(coarse).unsqueeze(1) * model.text_proj(model.encode_text(tokens))[..., None, None]
        logits = model.decoder(cond.flatten(0, 1))
        want = F.interpolate(logits, size=(16, 16), mode="bilinear", align_corners=False).view(2, 2, 16, 16)
    assert out["logits"].shape == (2, 2, 16, 16)
    torch.testing.assert_close(out["logits"], want)
    with pytest.raises(ValueError, match="decoder_pool"):
        HeatmapGrounder(model.image_encoder, model.text_encoder, 16, 8, decoder_pool=0)
