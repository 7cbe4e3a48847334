"""Referring segmentation metrics: PointM under both resize rules, mIoU / oIoU, subsets, the PNG."""
import pytest
import torch

from dapo_fast.eval.segmentation import mask_scores, save_response_grid, summarise


def _square(size, y0, y1, x0, x1):
    m = torch.zeros(size, size, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def test_perfect_map_and_a_miss():
    # 8x8 maps against 32x32 masks: a map that is the mask's 8x8 image scores IoU 1 and a hit
    mask = _square(32, 8, 16, 4, 20)
    good = mask[2::4, 2::4].float()
    miss = _square(8, 5, 8, 5, 8).float()
    s = mask_scores(torch.stack([good, miss]), [mask, mask], threshold=0.5)
    assert s["hit"].tolist() == [True, False] and s["hit_align_corners"].tolist() == [True, False]
    # bilinear upsampling rounds the corners (a corner pixel reads 0.625^2 < 0.5): 124 of 128 pixels
    assert s["inter"][0] == 124 and s["union"][0] == mask.sum()
    assert s["inter"][1] == 0 and s["union"][1] > mask.sum()


def test_threshold_and_peaks_of():
    mask = _square(16, 0, 8, 0, 8)
    heat = torch.zeros(1, 4, 4)
    heat[0, :2, :2] = 1.0
    heat[0, 2:, 2:] = 0.2  # a weak second blob
    low = mask_scores(heat, [mask], threshold=0.0)
    high = mask_scores(heat, [mask], threshold=0.5)
    assert low["union"][0] > high["union"][0] >= mask.sum() and 0.95 * mask.sum() < high["inter"][0] <= low["inter"][0]
    # an all-zero map's peak comes from peaks_of
    blank = torch.zeros(1, 4, 4)
    logits = torch.full((1, 4, 4), -3.0)
    logits[0, 0, 1] = -1.0
    assert mask_scores(blank, [mask], peaks_of=logits)["hit"].tolist() == [True]
    assert mask_scores(blank, [~mask], peaks_of=logits)["hit"].tolist() == [False]
    with pytest.raises(ValueError, match="threshold"):
        mask_scores(heat, [mask], threshold=1.0)
    with pytest.raises(ValueError, match="gt_masks"):
        mask_scores(heat, [mask, mask])


def test_resize_rules_can_disagree():
    # (0 0 1 0) to 8 columns: the peak is column 4 under align_corners=False, 5 under True
    heat = torch.tensor([[[0.0, 0.0, 1.0, 0.0]]])
    mask = torch.zeros(1, 8, dtype=torch.bool)
    mask[0, 5] = True
    s = mask_scores(heat, [mask])
    assert s["hit"].tolist() == [False] and s["hit_align_corners"].tolist() == [True]


def test_summary_overall_and_per_object_count():
    scores = dict(hit=torch.tensor([True, False, True, True]), hit_align_corners=torch.tensor([True, True, True, False]),
                  inter=torch.tensor([1.0, 0.0, 3.0, 2.0], dtype=torch.float64),
                  union=torch.tensor([2.0, 4.0, 3.0, 8.0], dtype=torch.float64))
    res = summarise(scores, torch.tensor([1, 2, 7, 3]))
    assert res["pointm"] == 75.0 and res["pointm_align_corners"] == 75.0 and res["maps"] == 4
    assert res["miou"] == pytest.approx(100 * (0.5 + 0 + 1 + 0.25) / 4)
    assert res["oiou"] == pytest.approx(100 * 6 / 17)
    assert res["subsets"]["1-2"]["pointm"] == 50.0 and res["subsets"]["1-2"]["maps"] == 2
    assert res["subsets"]["6+"]["miou"] == 100.0 and res["subsets"]["6-8"]["maps"] == 1
    assert res["subsets"]["4"]["maps"] == 0 and res["subsets"]["4"]["pointm"] != res["subsets"]["4"]["pointm"]


def test_png_grid(tmp_path):
    images = [torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8) for _ in range(2)]
    maps = torch.rand(2, 3, 8, 8)
    masks = [_square(32, 4, 12, 4, 12), _square(32, 10, 30, 0, 5)]
    path = save_response_grid(images, maps, masks, ["a red circle", "a blue square"],
                              [["circle", "red", "red circle"], ["square", "blue", "blue square"]],
                              str(tmp_path / "grid.png"))
    from PIL import Image

    with Image.open(path) as img:
        assert img.size[0] > img.size[1] / 2 > 100  # 3 columns, 2 rows
