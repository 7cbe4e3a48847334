import numpy as np
import pytest
import torch

from dapo_fast.data import build_splits
from dapo_fast.data.synthetic import (COLOURS, SHAPES, SyntheticConfig, generate_benchmark, generate_sample,
                                      generate_split, load_split, multi_object_subset)


def test_same_seed_same_split_and_splits_differ():
    a = generate_split("test", 10, seed=3)
    b = generate_split("test", 10, seed=3)
    c = generate_split("val", 10, seed=3)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, c.images)


def test_sample_fields_are_consistent(seed):
    rng = np.random.default_rng(seed)
    cfg = SyntheticConfig()
    for k in (1, 4, 8):
        s = generate_sample(rng, cfg, k)
        assert s["image"].shape == (3, 128, 128) and s["image"].dtype == np.uint8
        assert 1 <= s["num_objects"] <= 8
        assert 1 <= len(s["phrases"]) <= min(3, s["num_objects"])
        for phrase, (a, b), boxes, mask in zip(s["phrases"], s["spans"], s["gt_boxes"], s["gt_masks"]):
            assert s["caption"][a:b] == phrase
            colour, shape = phrase.split()
            assert colour in COLOURS and shape in SHAPES
            assert boxes.shape[1] == 4 and (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            assert (boxes >= 0).all() and (boxes <= 128).all()
            ys, xs = np.nonzero(mask)  # the mask lies inside the union of the entity's boxes
            inside = np.zeros_like(mask)
            for x0, y0, x1, y1 in boxes.astype(int):
                inside[y0:y1, x0:x1] = True
            assert mask.any() and inside[ys, xs].all()
        assert s["proposals"].shape == (cfg.num_proposals, 4)
        assert s["mask_proposals"].shape == (cfg.num_mask_proposals, 32, 32)


def test_mask_proposals_are_every_object_plus_blobs_and_do_not_shift_the_images():
    cfg = SyntheticConfig()
    assert cfg.num_mask_proposals == 40  # PCNet's P
    split = generate_split("test", 12, seed=2)
    few = generate_split("test", 12, seed=2, cfg=SyntheticConfig(num_mask_proposals=16))
    # the proposals draw from a child generator: their count never changes the images or captions
    assert torch.equal(split.images, few.images) and split.captions == few.captions
    assert split.mask_proposals.shape == (12, 40, 32, 32) and few.mask_proposals.shape == (12, 16, 32, 32)
    for i in range(12):
        props = split.mask_proposals[i].reshape(40, -1)
        # every entity's target (its objects' union, sampled like the proposals) is covered by proposals
        for mask in split.gt_masks[i]:
            small = mask[2::4, 2::4].reshape(-1)
            members = props[(props & small).any(1)]
            assert torch.equal(members.any(0) & small, small)
        assert (props.sum(1) > 0).all()


def test_object_counts_cover_every_subset_and_multi_subset():
    split = generate_split("test", 16, seed=0)
    assert sorted(split.num_objects.tolist()) == sorted(list(range(1, 9)) * 2)
    multi = multi_object_subset(split)
    assert len(multi) == 6 and bool((multi.num_objects >= 6).all())
    s = multi[0]
    assert s["num_objects"] >= 6 and s["image"].shape == (3, 128, 128)


def test_benchmark_cache_roundtrip(tmp_path):
    paths = generate_benchmark(str(tmp_path), num_train=4, num_val=2, num_test=3, seed=1)
    assert set(paths) == {"train", "val", "test"}
    t = load_split(str(tmp_path), "test")
    assert torch.equal(t.images, generate_split("test", 3, seed=1).images)
    with pytest.raises(FileNotFoundError, match="train.pt"):
        load_split(str(tmp_path / "nowhere"), "train")


def test_build_splits_synthetic(tmp_path):
    from dapo_fast.train.config import DataConfig

    splits = build_splits(DataConfig(root=str(tmp_path), num_train=4, num_val=2, num_test=16))
    assert len(splits["train"]) == 4 and len(splits["multi"]) == 6
