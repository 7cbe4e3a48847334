"""Evaluation of proposal-based grounders: accuracy@0.5 of the top-1 box beside the oracle and
random-proposal references, per object-count subset, in image pixels."""
import pytest
import torch

from dapo_fast.eval.proposals import centre_hits, columns, evaluate, reference_hits, save_grid, to_image_frame

GT = torch.tensor([[10.0, 10, 30, 30]])


def test_reference_hits_oracle_and_random():
    proposals = torch.tensor([[[10.0, 10, 30, 30], [12, 12, 30, 30], [50, 50, 60, 60], [0, 0, 100, 100]]])
    valid = torch.tensor([[True, True, True, False]])
    oracle, rand = reference_hits(proposals, valid, GT)
    assert oracle.tolist() == [True]
    assert rand.tolist() == pytest.approx([2 / 3])  # two of the three valid proposals reach IoU 0.5
    oracle, rand = reference_hits(proposals[:, 2:], torch.tensor([[True, True]]), GT)
    assert oracle.tolist() == [False] and rand.tolist() == [0.0]


def test_centre_hits_and_frame():
    pred = torch.tensor([[0.0, 0, 20, 20], [40, 40, 60, 60]])
    assert centre_hits(pred, [GT, GT]).tolist() == [True, False]
    assert centre_hits(pred[:1], [torch.zeros(0, 4)]).tolist() == [False]
    boxes = torch.tensor([[[0.0, 0, 64, 32]]])
    assert to_image_frame(boxes, torch.tensor([[50, 100]]), 64).tolist() == [[[0, 0, 100, 25]]]


class _Data:
    """Four images (1, 3, 5, 7 objects), one entity each, at 100 x 200 (h x w)."""

    def __init__(self):
        self.samples = []
        for i, n in enumerate((1, 3, 5, 7)):
            gt = torch.tensor([[20.0 + i, 10, 60 + i, 50]])
            props = torch.tensor([[20.0 + i, 10, 60 + i, 50], [150, 60, 190, 90], [100, 0, 140, 40]])
            self.samples.append(dict(image=torch.zeros(3, 100, 200, dtype=torch.uint8), image_id=str(i), caption="x",
                                     phrases=["red circle"], spans=[(0, 10)], num_objects=n, gt_boxes=[gt],
                                     proposals=props))

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def _collate(samples, size=32):
    from dapo_fast.data.detections import collate_proposals

    sizes = torch.tensor([[100, 200]] * len(samples))
    boxes, valid = collate_proposals(samples, sizes, size)
    return dict(boxes=boxes, box_valid=valid, image_sizes=sizes,
                entity_valid=torch.ones(len(samples), 1, dtype=torch.bool), gt_boxes=[s["gt_boxes"] for s in samples],
                num_objects=torch.tensor([s["num_objects"] for s in samples]),
                phrases=[s["phrases"] for s in samples], raw_images=[s["image"] for s in samples],
                ids=[int(s["image_id"]) for s in samples])


def _predict_pick(index):
    """A predictor that picks proposal index[i] for image i (and reports proposal 0 as where it started)."""
    def predict(b):
        idx = torch.tensor([index[i] for i in b["ids"]])
        box = b["boxes"][torch.arange(len(idx)), idx][:, None]
        return {"box": box, "proposal": b["boxes"][:, :1]}
    return predict


def test_evaluate_counts_hits_per_subset_beside_the_references():
    data = _Data()
    res = evaluate(_predict_pick([0, 0, 1, 2]), _collate, data, input_size=32, batch_size=3)
    assert res["entities"] == 4
    assert res["acc"] == pytest.approx(50.0) and res["acc_proposal"] == pytest.approx(100.0)
    assert res["miou"] == pytest.approx(50.0) and res["miou_proposal"] == pytest.approx(100.0)
    assert res["oracle"] == pytest.approx(100.0) and res["random"] == pytest.approx(100 / 3)
    assert res["subsets"]["1-2"]["acc"] == 100.0 and res["subsets"]["6-8"]["acc"] == 0.0
    assert res["subsets"]["6+"]["entities"] == 1 and res["subsets"]["4"]["entities"] == 0
    assert res["pointit"] == pytest.approx(50.0)
    assert res["subsets"]["4"]["acc"] != res["subsets"]["4"]["acc"]  # NaN for an empty subset
    assert ("Acc all", "acc") in columns() and ("Oracle", "oracle") in columns()
    assert columns({"Acc unrefined": "acc_proposal"})[7] == ("Acc unrefined", "acc_proposal")
    assert ("mIoU", "miou") in columns()
    assert evaluate(_predict_pick([1, 1, 1, 1]), _collate, data, 32, limit=2)["acc"] == 0.0


def test_save_grid_writes_a_png(tmp_path):
    path = save_grid(_predict_pick([0, 1, 0, 0]), _collate, _Data(), 32, str(tmp_path / "g.png"), num=4, cols=2)
    assert (tmp_path / "g.png").stat().st_size > 1000 and path.endswith("g.png")
