import torch

from dapo_fast.train.config import CurriculumConfig
from dapo_fast.train.curriculum import Curriculum, normalise_scores, subset_ids


def _cur(score_q=True, score_s=False, n=80, batch=8, **kw):
    counts = torch.arange(n) % 8 + 1
    valid = torch.ones(n, 2, dtype=torch.bool)
    cfg = CurriculumConfig(score_q=score_q, score_s=score_s, **kw)
    return Curriculum(cfg, counts, valid, batch, max_steps=100, seed=0)


def test_subset_ids():
    ids = subset_ids(torch.tensor([1, 2, 3, 4, 5, 6, 8, 12, 0]), [[1, 2], [3, 3], [4, 4], [5, 5], [6, 8]])
    assert ids.tolist() == [0, 0, 1, 2, 3, 4, 4, 4, 0]


def test_baby_steps_merge_subsets_in_order():
    cur = _cur(stage_epochs=1.0)
    counts = torch.arange(80) % 8 + 1
    seen_max = []
    for _ in range(60):
        idx = cur.next_indices()
        assert len(idx) == 8
        seen_max.append(int(counts[idx].max()))
        allowed = cur.cfg.subsets[cur.stage - 1][1]
        assert int(counts[idx].max()) <= allowed
    assert seen_max[0] <= 2 and cur.stage == 5 and max(seen_max) == 8
    # stage 1 (20 samples of 1-2 objects, batch 8) lasts ceil(20/8) = 3 steps
    assert max(seen_max[:3]) <= 2 and seen_max[3] <= 3


def test_no_score_q_uses_everything_and_order_is_reproducible():
    a, b = _cur(score_q=False), _cur(score_q=False)
    seq_a = [a.next_indices() for _ in range(25)]
    seq_b = [b.next_indices() for _ in range(25)]
    assert all(torch.equal(x, y) for x, y in zip(seq_a, seq_b))
    first_epoch = torch.cat(seq_a[:10])
    assert sorted(first_epoch.tolist()) == list(range(80))  # an epoch visits every sample once


def test_state_roundtrip_continues_the_same_sequence():
    a = _cur(score_s=True)
    for _ in range(7):
        a.next_indices()
    a.set_scores(torch.rand(80, 2), step=7)
    b = _cur(score_s=True)
    b.load_state_dict(a.state_dict())
    for _ in range(20):
        assert torch.equal(a.next_indices(), b.next_indices())
    assert torch.equal(a.sreg, b.sreg)


def test_scores_gamma_and_sreg():
    cur = _cur(score_s=True, warmup_steps=10, gamma_start=0.5, gamma_end=0.1)
    assert not cur.needs_scores(5) and cur.needs_scores(10)
    cur.set_scores(torch.tensor([[2.0, 4.0]] * 80), step=10)
    assert cur.sreg.min() == 0 and cur.sreg.max() == 1
    assert abs(cur.gamma(10) - 0.5) < 1e-9 and abs(cur.gamma(100) - 0.1) < 1e-9
    assert abs(cur.gamma(55) - 0.3) < 1e-9
    s = normalise_scores(torch.tensor([[1.0, 9.0], [3.0, 0.0]]), torch.tensor([[True, False], [True, False]]))
    assert s.tolist() == [[0.0, 0.0], [1.0, 0.0]]
    assert _cur(score_s=False).sreg_for(torch.arange(3)) is None


def _tiny_clip_weights(tiny_clip, tmp_path):
    clip = tiny_clip.create_model("dapo-tiny-vit").eval()
    path = tmp_path / "scorer.pt"
    torch.save(clip.state_dict(), path)
    return clip, str(path)


def test_open_clip_scores_are_image_phrase_cosines(tiny_clip, tmp_path):
    import torch.nn.functional as F

    from dapo_fast.data.synthetic import generate_split
    from dapo_fast.train.curriculum import open_clip_semantic_scores

    clip, weights = _tiny_clip_weights(tiny_clip, tmp_path)
    split = generate_split("train", 7, seed=3)
    samples = [split[i] for i in range(7)]
    scores = open_clip_semantic_scores("dapo-tiny-vit", weights, iter([samples[:4], samples[4:]]), max_entities=2)
    assert scores.shape == (7, 2)
    # recompute one image's row by hand from the same weights: CLIP-normalised 32x32 image vs each phrase
    tok = tiny_clip.get_tokenizer("dapo-tiny-vit")
    mean = torch.tensor(tiny_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(tiny_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    for i in (0, 5):
        img = F.interpolate(samples[i]["image"][None].float() / 255, size=(32, 32), mode="bilinear", align_corners=False)
        with torch.no_grad():
            zi = F.normalize(clip.encode_image((img - mean) / std), dim=-1)[0]
            phrases = samples[i]["phrases"][:2]
            zt = F.normalize(clip.encode_text(tok(phrases)), dim=-1)
        torch.testing.assert_close(scores[i, : len(phrases)], zt @ zi, rtol=1e-5, atol=1e-5)
        assert (scores[i, len(phrases):] == 0).all()  # entity slots the sample does not have stay 0


def test_loop_scores_with_open_clip_from_step_0(tiny_clip, tmp_path):
    from dapo_fast.train.loop import train
    from tests.train.tiny import tiny_config

    _, weights = _tiny_clip_weights(tiny_clip, tmp_path)
    cfg = tiny_config(tmp_path, curriculum=dict(score_s=True, scorer="auto", scorer_model="dapo-tiny-vit",
                                                scorer_pretrained=weights, warmup_steps=5))
    lines = []
    out = train(cfg, log=lines.append)
    assert out["step"] == cfg.train.max_steps
    # open_clip scores before the first step (no warm-up: the scorer is frozen and pretrained)
    assert any(line.startswith("step 0: semantic scores") for line in lines), lines
    state = torch.load(out["checkpoint"], weights_only=False)
    sreg = state["curriculum"]["sreg"]
    assert sreg is not None and sreg.shape == (64, 3)
    assert float(sreg.max()) == 1.0 and float(sreg.min()) == 0.0  # min-max normalised over the train set


def test_open_clip_scorer_needs_local_weights(tiny_clip, tmp_path):
    import pytest

    from dapo_fast.train.loop import train
    from tests.train.tiny import tiny_config

    cfg = tiny_config(tmp_path, curriculum=dict(score_s=True, scorer="open_clip", scorer_model="dapo-tiny-vit"))
    with pytest.raises(ValueError, match="scorer_pretrained"):
        train(cfg, log=lambda s: None)
    cfg = tiny_config(tmp_path, curriculum=dict(score_s=True, scorer="open_clip", scorer_model="dapo-tiny-vit",
                                                scorer_pretrained=str(tmp_path / "missing.bin")))
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        train(cfg, log=lambda s: None)
