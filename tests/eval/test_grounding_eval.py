import pytest
import torch

from dapo_fast.cli import main
from dapo_fast.data.synthetic import generate_split
from dapo_fast.eval import evaluate, format_table, save_grid
from dapo_fast.train.methods.wwbl import WWbL
from dapo_fast.eval.grounding import boxes_in_image_pixels, union_boxes


class Oracle(torch.nn.Module):
    """Heatmap = a bump on each of the entity's ground-truth boxes (looked up by image), or the
    inverted map (peak away from the boxes) when ``invert``."""

    def __init__(self, split, size, stride=4, invert=False):
        super().__init__()
        self.split, self.size, self.stride, self.invert = split, size, stride, invert
        self.calls = 0

    def forward(self, images, tokens, valid):
        B, E = valid.shape
        h = self.size // self.stride
        out = torch.zeros(B, E, h, h)
        scale = h / 128
        for b in range(B):
            i = self.calls + b
            for e, boxes in enumerate(self.split.gt_boxes[i][:E]):
                for x0, y0, x1, y1 in (boxes * scale).tolist():
                    # a bump centred on the box (cell centres sit at index + 0.5)
                    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(h) + 0.5, indexing="ij")
                    sx, sy = max(0.5, (x1 - x0) / 2.4), max(0.5, (y1 - y0) / 2.4)
                    bump = torch.exp(-((xx - (x0 + x1) / 2) / sx) ** 2 / 2 - ((yy - (y0 + y1) / 2) / sy) ** 2 / 2)
                    out[b, e] = torch.maximum(out[b, e], bump)
        self.calls += B
        if self.invert:
            out = 1 - out
        return dict(heatmaps=out * valid[..., None, None])


def _encode(text):
    return torch.tensor([len(text), 0])


def test_oracle_heatmaps_score_100_and_inverted_score_0():
    split = generate_split("test", 24, seed=0)
    res = evaluate(Oracle(split, 64), split, _encode, 64, 3, batch_size=24)
    assert res["pointing"] == 100.0
    assert res["bbox"] > 90.0  # the half-max box of the bumps ~ the union of the gt boxes
    assert res["entities"] == sum(len(p) for p in split.phrases)
    assert res["subsets"]["6+"]["entities"] == sum(len(p) for p, n in zip(split.phrases, split.num_objects) if n >= 6)
    bad = evaluate(Oracle(split, 64, invert=True), split, _encode, 64, 3, batch_size=24)
    assert bad["pointing"] < 20.0
    table = format_table({"oracle": res, "inverted": bad}, WWbL.COLUMNS)
    assert "| oracle | 100.0" in table and "PG 6+" in table


def test_results_carry_intervals_over_test_samples_and_per_entity_values():
    from dapo_fast.eval.stats import bootstrap_interval

    split = generate_split("test", 24, seed=0)
    bad = evaluate(Oracle(split, 64, invert=True), split, _encode, 64, 3, batch_size=10)
    per = bad["per_entity"]
    assert len(per["pointing"]) == len(per["sample"]) == bad["entities"]
    # sample indices run over the whole split (batches of 10), one per entity, in order
    assert per["sample"] == [i for i, p in enumerate(split.phrases) for _ in p]
    ci = bootstrap_interval(per["pointing"], per["sample"])
    assert bad["pointing"] == pytest.approx(100 * ci.mean)
    assert bad["pointing_ci"] == pytest.approx([100 * ci.low, 100 * ci.high])
    assert bad["pointing_ci"][0] <= bad["pointing"] <= bad["pointing_ci"][1]
    six = bad["subsets"]["6+"]
    assert six["bbox_ci"][0] <= six["bbox"] <= six["bbox_ci"][1]


def test_boxes_are_read_off_the_map_resized_to_each_image():
    # a block of heat on cells rows 4..7, cols 2..5 of a 16x16 map; its half-max edge falls on the
    # cell borders, so the box is the block scaled to the image (to within a pixel), per image size
    maps = torch.zeros(3, 16, 16)
    maps[:, 4:8, 2:6] = 1.0
    # map 2: column 6 at 0.6 moves the right edge 1/6 of a cell past column 6's centre (6.5 + 1/6
    # cells = 53.3 px), not to a cell border (56 px, what a box read off the coarse map gives)
    maps[2, 4:8, 6] = 0.6
    sizes = torch.tensor([[128, 128], [64, 96], [128, 128]])
    boxes = boxes_in_image_pixels(maps, sizes)
    want = torch.tensor([[16.0, 32.0, 48.0, 64.0], [12.0, 16.0, 36.0, 32.0], [16.0, 32.0, 53.3, 64.0]])
    assert boxes.shape == (3, 4)
    assert (boxes - want).abs().max() <= 1.0, boxes
    # grouping maps by image size must not mix rows up
    assert torch.equal(boxes_in_image_pixels(maps[1:2], sizes[1:2]), boxes[1:2])


def test_box_threshold_sets_the_share_of_the_peak_a_box_surrounds():
    # a peak cell at 1 inside a plateau at 0.2: the half-max box is the peak cell, a box at 0.1 of
    # the peak the plateau
    maps = torch.zeros(1, 16, 16)
    maps[0, 2:10, 2:10] = 0.2
    maps[0, 5, 5] = 1.0
    sizes = torch.tensor([[16, 16]])
    assert torch.equal(boxes_in_image_pixels(maps, sizes), boxes_in_image_pixels(maps, sizes, 0.5))
    peak = boxes_in_image_pixels(maps, sizes, 0.5)[0]
    plateau = boxes_in_image_pixels(maps, sizes, 0.1)[0]
    assert (peak - torch.tensor([5.0, 5, 6, 6])).abs().max() <= 0.5, peak
    assert (plateau - torch.tensor([2.0, 2, 10, 10])).abs().max() <= 0.5, plateau
    split = generate_split("test", 12, seed=0)
    tight = evaluate(Oracle(split, 64), split, _encode, 64, 3, box_threshold=0.9)
    assert tight["pointing"] == 100.0 and tight["bbox"] < evaluate(Oracle(split, 64), split, _encode, 64, 3)["bbox"]


def test_bbox_accuracy_compares_with_the_union_of_an_entity_s_boxes():
    # WWbL's protocol: an entity with several boxes ("two squares") is the region around all of them
    gts = [torch.tensor([[10.0, 10, 20, 20], [30, 30, 40, 40]]), torch.tensor([[0.0, 5, 8, 9]]),
           torch.zeros(0, 4)]
    u = union_boxes(gts)
    assert torch.equal(u[:2], torch.tensor([[10.0, 10, 40, 40], [0, 5, 8, 9]]))
    assert torch.isnan(u[2]).all()  # an entity without a box can only miss


def test_png_grid_is_written(tmp_path):
    split = generate_split("test", 8, seed=0)
    path = save_grid(Oracle(split, 64), split, _encode, 64, 3, str(tmp_path / "g.png"), num=8)
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_cli_eval_and_bad_checkpoint(tmp_path, capsys):
    from dapo_fast.train.loop import train
    from tests.train.tiny import tiny_config

    out = train(tiny_config(tmp_path, train=dict(max_steps=2)))
    png = tmp_path / "grid.png"
    assert main(["eval", "--checkpoint", out["checkpoint"], "--png", str(png), "--json", str(tmp_path / "r.json")]) == 0
    text = capsys.readouterr().out
    assert "| test |" in text and png.exists() and (tmp_path / "r.json").exists()
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_text("junk")
    assert main(["eval", "--checkpoint", str(tmp_path / "junk.pt")]) == 2
    assert "corrupt" in capsys.readouterr().err
