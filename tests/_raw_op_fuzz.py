"""Hostile calls of the compiled ops themselves (``torch.ops.dapo_fast.*``), bypassing the Python
fronts' checks: what a C++ entry must survive on its own. Run as a child process by
tests/test_fuzz_ops.py, so that a crash of the process (a segfault, an abort) is counted, not fatal:

    python -m tests._raw_op_fuzz --seed S --start I --progress FILE --result FILE

Each case is a valid call of one op with one argument broken: a tensor of another dtype, rank,
size, layout or device, or holding NaN/Inf or out-of-range indices; an int beyond 32 bits or
negative; a NaN or infinite float; an unknown string; a list of the wrong length. A case passes
when the op returns or raises a Python exception (the C++ checks' RuntimeError); the child writes
the case it is about to run to ``--progress`` first, so the parent can name a case that killed it.
"""
import argparse
import json
import math
import os
import random
import warnings

import torch

import dapo_fast  # noqa: F401  (registers the ops)

NAN, INF = float("nan"), float("inf")


def _rand(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


def _rois(k, batch, size):
    xy = torch.rand(k, 2) * size
    return torch.cat([torch.randint(0, batch, (k, 1)).float(), xy, xy + torch.rand(k, 2) * size], 1)


def _boxes(*shape):
    xy = torch.rand(*shape, 2) * 8
    return torch.cat([xy, xy + torch.rand(*shape, 2) * 4 + 0.5], -1)


def _bools(*shape):
    return torch.rand(*shape) < 0.7


# one valid call per compiled op (CPU tensors)
SAMPLES = {
    "roi_align": lambda: (_rand(2, 3, 6, 7), _rois(4, 2, 5), 1.0, 3, 2, 2, True, False),
    "roi_align_backward": lambda: (_rand(4, 3, 3, 2), _rois(4, 2, 5), 1.0, 3, 2, 2, 3, 6, 7, 2, True),
    "box_iou": lambda: (_boxes(2, 3), _boxes(2, 4)),
    "box_encode": lambda: (_boxes(5), _boxes(5), [10.0, 10.0, 5.0, 5.0]),
    "box_encode_backward": lambda: (_rand(5, 4), _boxes(5), _boxes(5), [10.0, 10.0, 5.0, 5.0]),
    "box_decode": lambda: (_rand(5, 4), _boxes(5), [10.0, 10.0, 5.0, 5.0], math.log(1000 / 16)),
    "box_decode_backward": lambda: (_rand(5, 4), _rand(5, 4), _boxes(5), [10.0, 10.0, 5.0, 5.0], 4.0),
    "self_taught_targets": lambda: (_boxes(2, 5), torch.rand(2, 3, 5), 0.6, 0.1, [10.0, 10.0, 5.0, 5.0], False),
    "weighted_smooth_l1": lambda: (_rand(3, 4), _rand(3, 4), torch.rand(3, 4), 1.0, 1),
    "weighted_smooth_l1_backward": lambda: (_rand(()), _rand(3, 4), _rand(3, 4), torch.rand(3, 4), 1.0, 1),
    "proposal_alignment": lambda: (_rand(2, 3, 5, 6), _bools(2, 4, 5, 6), _bools(2, 4)),
    "proposal_alignment_backward": lambda: (_rand(2, 3, 4), torch.randint(0, 30, (2, 3, 4)), _bools(2, 4, 5, 6), 5, 6),
    "soft_iou": lambda: (torch.rand(2, 3, 5, 6), _bools(2, 4, 5, 6), "iou", 1e-5),
    "soft_iou_backward": lambda: (_rand(2, 3, 4), torch.rand(2, 3, 5, 6), _bools(2, 4, 5, 6), "iou", 1e-5),
    "region_ambiguity": lambda: (torch.rand(2, 3, 5, 6), _bools(2, 4, 5, 6), _bools(2, 4), "iou", 1e-5, True),
    "false_negative_mask": lambda: (_rand(3, 4, 6), _bools(3, 4), 0.5),
    "pseudo_label_contrastive_loss": lambda: (_rand(2, 3, 4), _rand(2, 5, 4), _rand(2, 3, 6), _rand(2, 5, 6), _bools(2, 3),
                                              _bools(2, 5), _bools(2, 2, 5), 0.5, 0.3, "fne", "mean", True, True),
    "pseudo_label_contrastive_loss_backward": lambda: (_rand(()), _rand(2, 3, 4), _rand(2, 5, 4), _rand(2, 3, 6),
                                                       _rand(2, 5, 6), _bools(2, 3), _bools(2, 5), _bools(2, 2, 5), 0.5,
                                                       0.3, "fnc", "mean"),
    "momentum_update_": lambda: ([_rand(3, 4), _rand(5)], [_rand(3, 4), _rand(5)], 0.9),
    "select_hard_negatives": lambda: (_rand(3, 4, 5), _rand(3, 5), 2, "pairwise"),
    "cross_attention_probs_mean": lambda: (_rand(2, 2, 5, 4), _rand(2, 2, 3, 4), 0.5, torch.zeros(2, 3), 1.0),
    "cross_attention_probs_mean_accumulate": lambda: (torch.zeros(2, 5, 3), _rand(2, 2, 5, 4), _rand(2, 2, 3, 4), 0.5,
                                                      None, 1.0),
    "cross_attention_probs_mean_backward": lambda: (_rand(2, 5, 3), _rand(2, 2, 5, 4), _rand(2, 2, 3, 4), 0.5, None,
                                                    1.0),
    "attention_guidance_loss": lambda: (torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4, 5), _bools(2, 3)),
    "attention_guidance_loss_backward": lambda: (_rand(2), torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4, 5), _bools(2, 3),
                                                 True),
    "diffusion_guided_loss": lambda: (torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4, 5), _bools(2, 3)),
    "diffusion_guided_loss_backward": lambda: (_rand(2), torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4, 5), _bools(2, 3)),
    "heatmap_to_box": lambda: (torch.rand(3, 5, 6), 0.5, 0.5, False),
    "heatmap_to_box_wwbl": lambda: (torch.rand(3, 5, 6), torch.randint(0, 256, (256,), dtype=torch.uint8), 0.5, 0.5, 0.05),
    "resized_argmax": lambda: (torch.rand(3, 5, 6), torch.randint(1, 20, (3, 2)), False),
}

HOSTILE_INTS = [-1, 0, 2**31, -2**31 - 1, 2**40]
HOSTILE_FLOATS = [NAN, INF, -INF, -1.0, 1e300]


def _tensor_breaks(t: torch.Tensor, rng: random.Random):
    out = [t.to(torch.int64), t.to(torch.bool), t.to(torch.float64), t.to(torch.float16), t[None], t.reshape(-1),
           t.to("meta"), t.new_empty((0,))]
    if t.dim():
        dim = rng.randrange(t.dim())
        grown = list(t.shape)
        grown[dim] += 1
        out.append(torch.zeros(grown, dtype=t.dtype))
        grown[dim] = 0
        out.append(torch.zeros(grown, dtype=t.dtype))
    if t.dim() >= 2:
        out.append(t.transpose(0, 1))
    if t.numel():
        bad = t.clone()
        flat = bad.view(-1)
        values = [NAN, INF, -INF] if t.is_floating_point() else [-1, 2**31, -2**31 - 1, 2**40] \
            if t.dtype == torch.int64 else None
        if values is not None:
            for _ in range(rng.randint(1, 3)):
                flat[rng.randrange(t.numel())] = rng.choice(values)
            out.append(bad)
    return out


def _breaks(value, schema_type: str, rng: random.Random):
    """The broken values of one argument of the schema's type."""
    if schema_type.startswith("Tensor?") and value is None:
        return [_rand(2, 3)]
    if isinstance(value, torch.Tensor):
        return _tensor_breaks(value, rng) + ([None] if schema_type.startswith("Tensor?") else [])
    if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
        i = rng.randrange(len(value))
        swapped = [[b if j == i else v for j, v in enumerate(value)] for b in _tensor_breaks(value[i], rng)]
        return [value[:-1], value + [value[0]]] + swapped
    if isinstance(value, list):
        return [[], value[:2], [NAN] * len(value), [0.0] * len(value), [-1.0] * len(value)]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return HOSTILE_INTS
    if isinstance(value, float):
        return HOSTILE_FLOATS
    if isinstance(value, str):
        return ["bogus", ""]
    return []


def cases(seed: int):
    """Every (op, description, args) case of this seed, in a fixed order."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    for name, sample in SAMPLES.items():
        schema = getattr(torch.ops.dapo_fast, name).default._schema
        valid = sample()
        yield name, "valid", valid
        for i, argument in enumerate(schema.arguments):
            for j, broken in enumerate(_breaks(valid[i], str(argument.type), rng)):
                args = list(sample())
                args[i] = broken
                yield name, f"{argument.name} #{j}", tuple(args)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--progress", required=True)
    parser.add_argument("--result", required=True)
    opts = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    counts = {}
    for index, (name, what, args) in enumerate(cases(opts.seed)):
        if index < opts.start:
            continue
        with open(opts.progress + ".tmp", "w") as f:  # the counts so far and the case about to run
            f.write(json.dumps({"index": index, "op": name, "case": what, "counts": counts}))
        os.replace(opts.progress + ".tmp", opts.progress)
        c = counts.setdefault(name, {"cases": 0, "returned": 0, "errors": 0})
        c["cases"] += 1
        try:
            getattr(torch.ops.dapo_fast, name)(*args)
            c["returned"] += 1
        except Exception:  # noqa: BLE001 - any Python exception: the process survived the call
            c["errors"] += 1
    with open(opts.result, "w") as f:
        json.dump(counts, f)


if __name__ == "__main__":
    main()
