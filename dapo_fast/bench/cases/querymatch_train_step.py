"""One training step of AlignCAT/QueryMatch (hard-negative query selection, contrastive loss in two spaces): the fused ops vs the reference ops vs the papers' code forms
(see :mod:`dapo_fast.bench.train_steps`). Not an op: the end-to-end use of several."""
from dapo_fast.bench.train_steps import register_step_case

register_step_case("querymatch", "small-b8", 8, {"data": {"image_size": 32}, "model": {"dim": 16, "cnn_width": 8}},
                   quick=True, note="batch 8, 32 px input, dim 16")
register_step_case("querymatch", "demo-b64", 64, note="configs/querymatch.yaml sizes: batch 64, 64 px input, 24 proposals, dim 64")
