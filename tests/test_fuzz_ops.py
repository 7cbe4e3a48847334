"""Property-based fuzzing of every public op.

Each case draws a call of one op from hypothesis: shapes (empty and odd ones included), dtypes,
layouts (non-contiguous, channels_last), values with NaN/+-Inf planted in the floating inputs,
gradients requested or not, scalar arguments anywhere in their valid range. Half of the cases are
then broken in one argument: a wrong type for a scalar (``2.5`` for an int, ``None``, ``"no"``,
a tensor where a number belongs), an integer that does not fit the kernels' 32-bit int, a tensor of
the wrong dtype, rank or device, or not a tensor at all.

* A valid case runs on every backend of the op this machine has (``cpu``; ``cuda`` and ``triton``
  with a GPU; ``DAPO_FAST_FUZZ_BACKENDS=cpu,triton`` runs Triton under the interpreter) and must
  give the reference backend's outputs and gradients, NaN where the reference has NaN, within the
  op's tolerance (the tables of the op tests). ``DAPO_FAST_FUZZ_EXAMPLES`` sets the number of
  examples per op and test.
* A broken case must raise TypeError or ValueError naming the broken argument, on every backend.

Anything else counts: a different number ("wrong"), another exception or an unclear message
("crashes"), a case still running after ``CASE_SECONDS`` ("hangs"). All three must stay 0. The
compiled ops are also called directly, bypassing the Python checks, with hostile arguments in a
child process, so a C++ crash (a segfault) is counted instead of killing the test run.
Counts per op are printed in the summary at the end of the test run.
"""
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence, Tuple

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import dapo_fast
from dapo_fast import ops
from tests._fuzz import HANG_SECONDS, Hang, count_table, fuzz, hang_guard
from tests._helpers import TOL

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")

# hypothesis examples per op and test (valid, broken); DAPO_FAST_FUZZ_EXAMPLES runs more
EXAMPLES = int(os.environ.get("DAPO_FAST_FUZZ_EXAMPLES", 100))
COLUMNS = ("cases", "valid and equal", "clean errors", "wrong", "crashes", "hangs")
COUNTS = count_table("op, through its Python front", COLUMNS)

# compared with the reference: cpu, and cuda and triton on a CUDA machine; DAPO_FAST_FUZZ_BACKENDS
# (e.g. "cpu,triton": the Triton kernels under TRITON_INTERPRET=1, slow) picks others
_GPU = torch.cuda.is_available() and dapo_fast.build_info()["cuda"]
BACKENDS = tuple(os.environ.get("DAPO_FAST_FUZZ_BACKENDS", "cpu,cuda,triton" if _GPU else "cpu").split(","))
# a case's bound: Triton under the interpreter (no GPU) runs each kernel loop iteration in Python
CASE_SECONDS = HANG_SECONDS * (30 if "triton" in BACKENDS and not _GPU else 1)
FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
SPECIALS = (float("nan"), float("inf"), float("-inf"))
INT32_MAX = 2**31 - 1


# ------------------------------------------------------------------------------------- drawing
class Draw:
    """The random choices of one case: structure from hypothesis (so it shrinks), tensor values
    from a generator seeded by hypothesis."""

    def __init__(self, data):
        self.data = data
        self.gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**32 - 1), label="seed"))

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def pick(self, options: Sequence):
        return self.data.draw(st.sampled_from(list(options)))

    def coin(self, p: float = 0.5) -> bool:
        return self.data.draw(st.floats(0, 1)) < p

    def dtype(self, options=FLOATS):
        # mostly the two exact types: the half types are covered, not the bulk of the cases
        return self.pick(options) if self.coin(0.3) else self.pick([d for d in options if d in FLOATS[:2]] or options)

    def uniform(self, shape, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(shape, generator=self.gen, dtype=torch.float64) * (hi - lo) + lo

    def normal(self, shape) -> torch.Tensor:
        return torch.randn(shape, generator=self.gen, dtype=torch.float64)

    def plant(self, t: torch.Tensor, values=SPECIALS) -> torch.Tensor:
        """A copy of float64 ``t`` with up to two NaN/+-Inf planted (in half of the cases)."""
        t = t.clone()
        if t.numel() and self.coin(0.5):
            flat = t.view(-1)
            for _ in range(self.int(1, 2)):
                flat[self.int(0, t.numel() - 1)] = self.pick(values)
        return t

    def layout(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` as is, non-contiguous (every other element of a wider tensor), or channels_last."""
        kind = self.pick(["contiguous", "strided", "channels_last"] if t.dim() == 4 else ["contiguous", "strided"])
        if kind == "channels_last":
            return t.contiguous(memory_format=torch.channels_last)
        if kind == "strided" and t.dim() > 0:
            wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
            wide[..., ::2] = t
            return wide[..., ::2]
        return t

    def tensor(self, values: torch.Tensor, dtype: torch.dtype, specials=SPECIALS) -> torch.Tensor:
        """float64 ``values`` with specials planted, in ``dtype``, in a drawn layout."""
        if specials:
            values = self.plant(values, specials)
        return self.layout(values.to(dtype))

    def mask(self, shape, p: float = 0.7) -> torch.Tensor:
        return self.layout(torch.rand(shape, generator=self.gen) < p)


# ------------------------------------------------------------------------------------- op specs
@dataclass
class Spec:
    """How to fuzz one public op.

    draw(d) -> dict of keyword arguments of a valid call; call(backend, **kwargs) runs it and
    returns its outputs (a tensor or a tuple of them); ``scalars`` maps each scalar argument to
    its kind ("int", "size", "float", "bool", "choice", "weights"); ``tensors`` lists the tensor
    arguments, each with the rules that say which breaks apply (dtype, rank, device: checked
    against the other tensors'; optional: None is valid; list: a list is valid); ``grads``: the
    arguments a gradient flows to (compared with the reference's when
    they require one); ``breaks``: further op-specific breaks (None where the drawn call has no
    room for one)."""
    name: str
    draw: Callable[[Draw], dict]
    call: Callable[..., object]
    scalars: Dict[str, str] = field(default_factory=dict)
    tensors: Dict[str, dict] = field(default_factory=dict)
    grads: Tuple[str, ...] = ()
    backends: Tuple[str, ...] = ("cpu", "cuda")  # the op's backends besides the reference
    # op-specific ways to break a valid call: (argument named in the error, how) -> broken kwargs
    breaks: Dict[Tuple[str, str], Callable[[Draw, dict], Optional[dict]]] = field(default_factory=dict)
    tol: Callable[[torch.dtype], dict] = lambda dtype: TOL[dtype]

    def run(self, backend: str, kwargs: dict):
        return self.call(backend, **kwargs)

    def compared(self) -> Tuple[str, ...]:
        """The backends of this op this run compares with the reference."""
        return tuple(b for b in BACKENDS if b in self.backends)


SPECS: Dict[str, Spec] = {}


def spec(**kwargs):
    def register(draw):
        SPECS[kwargs["name"]] = Spec(draw=draw, **kwargs)
        return draw
    return register


def front(fn):
    """call(backend, **kwargs) of a front that takes backend=."""
    return lambda backend, **kwargs: fn(**kwargs, backend=backend)


def loose_float32(dtype: torch.dtype) -> dict:
    """The tolerance of ``dtype``, 10x looser for float32: for ratios and log-sums of sums over
    signed values, where cancellation magnifies the rounding of another summation order."""
    return {k: v * 10 for k, v in TOL[dtype].items()} if dtype == torch.float32 else TOL[dtype]


def boxes(d: Draw, n: int, scale: float = 8.0) -> torch.Tensor:
    """[n, 4] (x1, y1, x2, y2): mostly proper boxes, some degenerate or reversed."""
    xy = d.uniform((n, 2), -2, scale)
    wh = d.uniform((n, 2), -0.5 if d.coin(0.2) else 0.0, scale / 2)
    return torch.cat([xy, xy + wh], dim=1)


# ---- ReIR / detection
@spec(name="roi_align", backends=("cpu", "cuda", "triton"), call=front(ops.roi_align),
      scalars={"output_size": "size", "spatial_scale": "float", "sampling_ratio": "int", "aligned": "bool"},
      tensors={"input": dict(), "boxes": dict(dtype=True)}, grads=("input",))
def _(d: Draw):
    dtype = d.dtype()
    n, c, h, w = d.int(1, 3), d.int(0, 4), d.int(0, 7), d.int(0, 7)
    k = d.int(0, 5)
    scale = d.pick([1.0, 0.5, 0.25])
    coords = boxes(d, k, max(h, w, 1) / scale * 1.5) - 1
    index = torch.randint(0, n, (k, 1), generator=d.gen).to(torch.float64)
    rois = torch.cat([index, d.plant(coords)], dim=1).to(dtype)
    if d.coin(0.3):  # the list form: one Tensor[L_i, 4] per image
        rois = [coords[:0].to(dtype)] * n
        rois = [d.tensor(boxes(d, d.int(0, 3), max(h, w, 1) / scale), dtype) for _ in range(n)]
    size = d.pick([d.int(1, 4), (d.int(1, 4), d.int(1, 4))])
    return dict(input=d.tensor(d.normal((n, c, h, w)), dtype), boxes=rois, output_size=size,
                spatial_scale=scale, sampling_ratio=d.int(-2, 3), aligned=d.coin())


# box_iou takes any real dtype (integer boxes give a float IoU, mixed dtypes promote: torchvision's)
@spec(name="box_iou", call=front(ops.box_iou), tensors={"a": dict(dtype=False), "b": dict(dtype=False)},
      grads=("a", "b"))
def _(d: Draw):
    dtype = d.dtype()
    if d.coin(0.3):
        bs = d.int(0, 3)
        return dict(a=d.tensor(torch.stack([boxes(d, 3) for _ in range(bs)]) if bs else torch.zeros(0, 3, 4), dtype),
                    b=d.tensor(torch.stack([boxes(d, 2) for _ in range(bs)]) if bs else torch.zeros(0, 2, 4), dtype))
    return dict(a=d.tensor(boxes(d, d.int(0, 5)), dtype), b=d.tensor(boxes(d, d.int(0, 5)), dtype))


@spec(name="box_accuracy", call=lambda backend, **kw: ops.box_accuracy(**kw), backends=("cpu",),
      scalars={"threshold": "float"},
      tensors={"pred_boxes": dict(dtype=False, device=False), "gt_boxes": dict(dtype=False, list=True, device=False)})
def _(d: Draw):
    n = d.int(0, 4)
    gt = [d.tensor(boxes(d, d.int(0, 3)), d.dtype()) for _ in range(n)]
    if d.coin(0.3) and n:
        gt = d.tensor(torch.stack([boxes(d, 2) for _ in range(n)]), torch.float32)
    return dict(pred_boxes=d.tensor(boxes(d, n), d.dtype()), gt_boxes=gt, threshold=d.pick([0.5, 0.0, 1.0, 0.3]))


def _box_pair(d: Draw):
    shape = d.pick([(d.int(0, 6),), (d.int(0, 3), d.int(0, 3)), ()])
    dtype = d.dtype((torch.float32, torch.float64))
    return shape, dtype


@spec(name="box_encode", call=front(ops.box_encode), scalars={"weights": "weights"},
      tensors={"proposals": dict(), "targets": dict()}, grads=("proposals", "targets"))
def _(d: Draw):
    shape, dtype = _box_pair(d)
    n = int(math.prod(shape))
    return dict(proposals=d.tensor(boxes(d, n).reshape(*shape, 4), dtype),
                targets=d.tensor(boxes(d, n).reshape(*shape, 4), dtype),
                weights=d.pick([(10.0, 10.0, 5.0, 5.0), (1, 1, 1, 1), [2.0, 0.5, 3.0, 1.0]]))


@spec(name="box_decode", call=front(ops.box_decode), scalars={"weights": "weights", "scale_clamp": "float"},
      tensors={"deltas": dict(), "boxes": dict()}, grads=("deltas", "boxes"))
def _(d: Draw):
    shape, dtype = _box_pair(d)
    n = int(math.prod(shape))
    return dict(deltas=d.tensor(d.normal((*shape, 4)), dtype), boxes=d.tensor(boxes(d, n).reshape(*shape, 4), dtype),
                weights=d.pick([(10.0, 10.0, 5.0, 5.0), (1, 1, 1, 1)]),
                scale_clamp=d.pick([math.log(1000.0 / 16), 0.5, 10.0]))


@spec(name="self_taught_targets", call=front(ops.self_taught_targets),
      scalars={"iou_threshold": "float", "score_gap": "float", "weights": "weights"},
      tensors={"boxes": dict(), "scores": dict()})
def _(d: Draw):
    b, j, p = d.int(0, 3), d.int(0, 5), d.int(0, 3)
    dtype = d.dtype((torch.float32, torch.float64))
    props = torch.stack([boxes(d, j) for _ in range(b)]) if b else torch.zeros(0, j, 4)
    # proposals near the best one, so both conditions are met by some
    return dict(boxes=d.tensor(props, dtype), scores=d.tensor(d.uniform((b, p, j), 0, 1), d.dtype()),
                iou_threshold=d.pick([0.6, 0.0, 0.3]), score_gap=d.pick([0.1, 0.0, 0.05]))


@spec(name="weighted_smooth_l1", call=front(ops.weighted_smooth_l1),
      scalars={"beta": "float", "reduction": "choice"}, tensors={"input": dict(rank=False), "target": dict(rank=False),
                                                                    "weight": dict(rank=False)},
      grads=("input", "target"))
def _(d: Draw):
    shape = d.pick([(d.int(0, 6), 4), (d.int(0, 3), d.int(0, 3), 4), (d.int(0, 5),)])
    dtype = d.dtype()
    weight_shape = shape[:-1] if d.coin(0.4) and len(shape) > 1 else shape
    return dict(input=d.tensor(d.normal(shape), dtype), target=d.tensor(d.normal(shape), dtype),
                weight=d.tensor(d.uniform(weight_shape, 0, 2), dtype), beta=d.pick([1.0, 0.0, 0.11, 2.0]),
                reduction=d.pick(["sum", "mean", "none"]))


# ---- PCNet
def _response_masks(d: Draw, signed: bool = True):
    """Response maps (signed, or in [0, 1] like the sigmoid maps a soft IoU scores: with signed
    ones its denominator can cancel to ~0 and float32 rounding decides the result), masks, valid."""
    b, s, p, h, w = d.int(0, 2), d.int(0, 3), d.int(0, 4), d.int(0, 5), d.int(0, 5)
    dtype = d.dtype()
    response = d.tensor(d.normal((b, s, h, w)) if signed else d.uniform((b, s, h, w), 0, 1), dtype)
    kind = d.pick(["bool", "uint8", "float"])
    masks = d.uniform((b, p, h, w), 0, 1)
    masks = d.layout(masks > 0.5) if kind == "bool" else d.layout((masks > 0.5).to(torch.uint8)) if kind == "uint8" \
        else d.tensor(masks, dtype)
    return response, masks, d.mask((b, p)) if d.coin(0.6) else None


@spec(name="proposal_alignment", call=front(ops.proposal_alignment),
      tensors={"response": dict(), "masks": dict(), "mask_valid": dict(dtype=False, optional=True)},
      grads=("response",))
def _(d: Draw):
    response, masks, valid = _response_masks(d)
    return dict(response=response, masks=masks, mask_valid=valid)


@spec(name="soft_iou", call=front(ops.soft_iou), scalars={"variant": "choice", "eps": "float"},
      tensors={"response": dict(), "masks": dict()}, grads=("response",))
def _(d: Draw):
    response, masks, _ = _response_masks(d, signed=False)
    return dict(response=response, masks=masks, variant=d.pick(["iou", "half_dice"]), eps=d.pick([1e-5, 0.0, 1.0]))


@spec(name="region_ambiguity", backends=("cpu", "cuda", "triton"), call=front(ops.region_ambiguity),
      scalars={"variant": "choice", "eps": "float"},
      tensors={"response": dict(), "masks": dict(), "mask_valid": dict(dtype=False, optional=True)},
      grads=("response",))
def _(d: Draw):
    response, masks, valid = _response_masks(d, signed=False)
    return dict(response=response, masks=masks, mask_valid=valid, variant=d.pick(["iou", "half_dice"]),
                eps=d.pick([1e-5, 1.0]))


# ---- MPL / QueryMatch
@spec(name="false_negative_mask", backends=("cpu", "cuda", "triton"), call=front(ops.false_negative_mask),
      scalars={"threshold": "float"},
      tensors={"region_feats": dict(), "region_valid": dict()})
def _(d: Draw):
    b, k, dim = d.int(0, 4), d.int(0, 4), d.int(0, 6)
    return dict(region_feats=d.tensor(d.normal((b, k, dim)), d.dtype()), region_valid=d.mask((b, k)),
                # not +-1, the ends of the cosine's range: there every collinear pair is a tie that
                # rounding decides (any two regions when dim == 1)
                threshold=d.pick([0.5, -0.999, 0.999, 0.0, 0.9]))


@spec(name="pseudo_label_contrastive_loss", backends=("cpu", "cuda", "triton"),
      call=front(ops.pseudo_label_contrastive_loss),
      scalars={"tau": "float", "teacher_tau": "float", "mode": "choice", "reduction": "choice"},
      tensors={"phrase": dict(), "region": dict(), "teacher_phrase": dict(), "teacher_region": dict(),
               "phrase_valid": dict(), "region_valid": dict(), "fn_mask": dict()},
      grads=("phrase", "region"),
      tol=loose_float32)
def _(d: Draw):
    b, q, k, dim, tdim = d.int(0, 3), d.int(0, 3), d.int(0, 4), d.int(1, 5), d.int(1, 5)
    dtype = d.dtype()
    mode = d.pick(["none", "fne", "fnc"])
    fn_mask = d.mask((b, b, k), 0.3) if mode != "none" or d.coin(0.3) else None
    return dict(phrase=d.tensor(d.normal((b, q, dim)), dtype), region=d.tensor(d.normal((b, k, dim)), dtype),
                teacher_phrase=d.tensor(d.normal((b, q, tdim)), dtype),
                teacher_region=d.tensor(d.normal((b, k, tdim)), dtype),
                phrase_valid=d.mask((b, q)), region_valid=d.mask((b, k)), fn_mask=fn_mask,
                tau=d.pick([1.0, 0.07, 0.5]), teacher_tau=d.pick([1.0, 0.1, 0.3]), mode=mode,
                reduction=d.pick(["mean", "sum", "none"]))


def _momentum_update(backend, teacher, student, momentum):
    # the reference and the backend each update their own copy (an expanded teacher stays expanded,
    # a student that is its teacher stays so)
    copies = {id(t): t.clone() if not t.stride() or min(t.stride()) else t.expand(t.shape) for t in teacher}
    teacher = [copies[id(t)] for t in teacher]
    student = [copies.get(id(s), s) for s in student]
    ops.momentum_update_(teacher, student, momentum, backend=backend)
    return tuple(teacher)


def _student_is_teacher(d: Draw, kwargs: dict):
    pairs = [i for i, t in enumerate(kwargs["teacher"]) if t.numel()]
    if not pairs:
        return None
    i = d.pick(pairs)
    student = list(kwargs["student"])
    student[i] = kwargs["teacher"][i]
    return dict(kwargs, student=student)


def _teacher_twice(d: Draw, kwargs: dict):
    pairs = [i for i, t in enumerate(kwargs["teacher"]) if t.numel()]
    if not pairs:
        return None
    i = d.pick(pairs)
    return dict(kwargs, teacher=kwargs["teacher"] + [kwargs["teacher"][i]], student=kwargs["student"] +
                [kwargs["student"][i]])


def _expanded_teacher(d: Draw, kwargs: dict):
    pairs = [i for i, t in enumerate(kwargs["teacher"]) if t.numel() > 1]
    if not pairs:
        return None
    i = d.pick(pairs)
    teacher = list(kwargs["teacher"])
    teacher[i] = teacher[i].reshape(-1)[:1].expand(teacher[i].shape)
    return dict(kwargs, teacher=teacher)


@spec(name="momentum_update_", call=_momentum_update, backends=("cpu", "cuda", "triton"), scalars={"momentum": "float"},
      breaks={("student", "is its teacher"): _student_is_teacher, ("teacher", "twice"): _teacher_twice,
              ("teacher", "expanded"): _expanded_teacher})
def _(d: Draw):
    count = d.int(0, 4)
    pairs = []
    for _ in range(count):
        shape = d.pick([(d.int(0, 7),), (d.int(1, 3), d.int(1, 5)), ()])
        dtype = d.dtype()
        pairs.append((d.tensor(d.normal(shape), dtype), d.tensor(d.normal(shape), dtype)))
    return dict(teacher=[t for t, _ in pairs], student=[s for _, s in pairs], momentum=d.pick([0.99, 0.0, 1.0, 0.5]))


@spec(name="select_hard_negatives", backends=("cpu", "cuda", "triton"), call=front(ops.select_hard_negatives),
      scalars={"num": "int", "uniqueness": "choice"},
      tensors={"queries": dict(), "text": dict()})
def _(d: Draw):
    b, n, dim = d.int(0, 4), d.int(1, 5), d.int(1, 6)
    dtype = d.dtype((torch.float32, torch.float64))
    return dict(queries=d.tensor(d.normal((b, n, dim)), dtype), text=d.tensor(d.normal((b, dim)), dtype),
                num=d.int(0, 3), uniqueness=d.pick(["pairwise", "paper"]))


# ---- DAPO
def _out_shape(kwargs: dict) -> tuple:
    q, k = kwargs["q"], kwargs["k"]
    return q.shape[0], q.shape[2], k.shape[2]


def _expanded_out(d: Draw, kwargs: dict):
    shape = _out_shape(kwargs)
    if math.prod(shape) < 2:
        return None
    return dict(kwargs, out=torch.zeros((1, 1, 1), dtype=kwargs["q"].dtype).expand(shape))


def _out_sharing_q(d: Draw, kwargs: dict):
    shape, q = _out_shape(kwargs), kwargs["q"]
    if not 0 < math.prod(shape) <= q.numel() or not q.is_contiguous():
        return None
    return dict(kwargs, out=q.view(-1)[:math.prod(shape)].view(shape))


def _out_leaf_requiring_grad(d: Draw, kwargs: dict):
    return dict(kwargs, out=torch.zeros(_out_shape(kwargs), dtype=kwargs["q"].dtype, requires_grad=True))


@spec(name="cross_attention_probs_mean", backends=("cpu", "cuda", "triton"), call=front(ops.cross_attention_probs_mean),
      scalars={"scale": "float", "weight": "float"},
      tensors={"q": dict(), "k": dict(), "key_bias": dict(optional=True), "out": dict(optional=True)}, grads=("q", "k"),
      breaks={("out", "expanded"): _expanded_out, ("out", "shares q"): _out_sharing_q,
              ("leaf Variable", "out is a leaf requiring grad"): _out_leaf_requiring_grad})
def _(d: Draw):
    b, heads, rows, keys, dim = d.int(0, 2), d.int(1, 3), d.int(0, 5), d.int(0, 5), d.int(1, 6)
    dtype = d.dtype()
    bias = None
    if d.coin(0.4):
        bias = d.tensor(torch.where(d.uniform((b, keys), 0, 1) < 0.3, -math.inf, 0.0), dtype, specials=())
    out = d.tensor(d.normal((b, rows, keys)), dtype, specials=()) if d.coin(0.3) else None
    return dict(q=d.tensor(d.normal((b, heads, rows, dim)), dtype), k=d.tensor(d.normal((b, heads, keys, dim)), dtype),
                scale=d.pick([dim ** -0.5, 1.0, 0.0]), out=out, weight=d.pick([1.0, 0.25]), key_bias=bias)


def _entity_maps(d: Draw):
    b, e, h, w = d.int(0, 2), d.int(0, 4), d.int(0, 5), d.int(0, 5)
    dtype = d.dtype()
    return (d.tensor(d.uniform((b, e, h, w), 0, 1), dtype), d.tensor(d.uniform((b, e, h, w), 0, 1), dtype),
            d.mask((b, e)) if d.coin(0.6) else None)


@spec(name="attention_guidance_loss", backends=("cpu", "cuda", "triton"), call=front(ops.attention_guidance_loss),
      tensors={"heatmaps": dict(), "attn_maps": dict(), "entity_valid": dict(optional=True)},
      grads=("heatmaps", "attn_maps"))
def _(d: Draw):
    h, a, valid = _entity_maps(d)
    return dict(heatmaps=h, attn_maps=a, entity_valid=valid)


@spec(name="diffusion_guided_loss", backends=("cpu", "cuda", "triton"), call=front(ops.diffusion_guided_loss),
      scalars={"reduction": "choice"},
      tensors={"heatmaps": dict(), "attn_targets": dict(), "entity_valid": dict(optional=True)},
      grads=("heatmaps", "attn_targets"))
def _(d: Draw):
    h, a, valid = _entity_maps(d)
    return dict(heatmaps=h, attn_targets=a, entity_valid=valid, reduction=d.pick(["mean", "sum", "none"]))


# ---- grounding metrics
def _heatmaps(d: Draw, specials=SPECIALS):
    n, h, w = d.int(0, 3), d.int(1, 6), d.int(1, 6)
    return d.tensor(d.uniform((n, h, w), 0, 1), d.dtype(), specials=specials)


@spec(name="heatmap_to_box", call=front(ops.heatmap_to_box),
      scalars={"rel_threshold": "float", "conf_threshold": "float", "tozero": "bool"}, tensors={"heatmaps": dict()})
def _(d: Draw):
    return dict(heatmaps=_heatmaps(d), rel_threshold=d.pick([0.5, 0.0, 1.0, 0.3]),
                conf_threshold=d.pick([0.5, 0.0, 1.0, 2.0]), tozero=d.coin())


def _sizes(d: Draw, n: int):
    return torch.tensor([[d.int(1, 12), d.int(1, 12)] for _ in range(n)], dtype=torch.int64).reshape(n, 2)


@spec(name="resized_argmax", call=front(ops.resized_argmax), tensors={"heatmaps": dict(device=False),
      "sizes": dict(dtype=False, list=True, device=False)})
def _(d: Draw):
    maps = _heatmaps(d)
    return dict(heatmaps=maps, sizes=_sizes(d, maps.shape[0]) if d.coin(0.7) else [d.int(1, 12), d.int(1, 12)])


@spec(name="pointing_game", call=front(ops.pointing_game), scalars={"return_peaks": "bool"},
      tensors={"heatmaps": dict(device=False), "image_sizes": dict(dtype=False, list=True, device=False)})
def _(d: Draw):
    maps = _heatmaps(d)
    n = maps.shape[0]
    return dict(heatmaps=maps, gt_boxes=[d.tensor(boxes(d, d.int(0, 3), 12.0), torch.float32) for _ in range(n)],
                image_sizes=_sizes(d, n), return_peaks=d.coin())


@spec(name="pointing_game_masks", call=front(ops.pointing_game_masks), scalars={"return_peaks": "bool"},
      tensors={"heatmaps": dict(device=False), "gt_masks": dict(dtype=False, list=True, device=False)})
def _(d: Draw):
    maps = _heatmaps(d)
    n = maps.shape[0]
    if d.coin(0.5):
        size = (d.int(1, 9), d.int(1, 9))
        masks = d.mask((n, *size), 0.4)
    else:
        masks = [d.mask((d.int(1, 9), d.int(1, 9)), 0.4) for _ in range(n)]
    return dict(heatmaps=maps, gt_masks=masks, return_peaks=d.coin())


# ------------------------------------------------------------------------------------- running
def _on(value, device: str):
    """``value`` with every tensor (also inside lists) moved to ``device`` (same layout)."""
    if isinstance(value, torch.Tensor):
        return value if device == "cpu" else value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_on(v, device) for v in value)
    return value


def _tensors_of(result) -> tuple:
    return (result,) if isinstance(result, torch.Tensor) else tuple(result) if result is not None else ()


def evaluate(spec: Spec, backend: str, kwargs: dict, grad_args: Sequence[str]):
    """Outputs (detached, on the CPU) and the gradients of a fixed weighted sum of the floating
    outputs with respect to ``grad_args``."""
    device = "cuda" if backend in ("cuda", "triton") and _GPU else "cpu"
    args = {}
    for name, value in kwargs.items():
        value = _on(value, device)
        if name in grad_args:
            value = value.detach().clone().requires_grad_()
        args[name] = value
    outs = _tensors_of(spec.run(backend, args))
    grads = ()
    if grad_args:
        if not spec.grads:  # an op without autograd: its outputs must not pretend to have a gradient
            assert not any(o.requires_grad for o in outs), f"{spec.name}: output requires grad without autograd"
        else:
            floating = [o for o in outs if o.requires_grad]
            assert floating, f"{spec.name}: no output requires grad although {grad_args} do"
            total = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype, device=o.device).reshape(o.shape)).sum()
                        for o in floating)
            grads = torch.autograd.grad(total, [args[n] for n in grad_args], allow_unused=True, materialize_grads=True)
    return tuple(o.detach().cpu() for o in outs), tuple(g.cpu() for g in grads)


def assert_same(got: tuple, want: tuple, tol: Callable[[torch.dtype], dict], what: str,
                only_where_finite: bool = False):
    """Same shapes, dtypes and values (NaN where ``want`` has NaN, within ``tol(dtype)``);
    ``only_where_finite``: compare only where ``want`` is finite."""
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype, f"{what}[{i}]: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
        if only_where_finite and g.is_floating_point():
            finite = torch.isfinite(w)
            g, w = g[finite], w[finite]
        if g.is_floating_point():
            torch.testing.assert_close(g, w, equal_nan=True, **tol(g.dtype), msg=lambda m: f"{what}[{i}]: {m}")
        else:
            assert torch.equal(g, w), f"{what}[{i}]: {g} vs {w}"


def _floating_inputs(kwargs: dict) -> list:
    found = []
    for value in kwargs.values():
        for t in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                found.append(t)
    return found


def count(op: str, outcome: str):
    COUNTS[op]["cases"] += 1
    COUNTS[op][outcome] += 1


def run_guarded(op: str, fn):
    """Run ``fn`` under the hang guard; a hang or an unexpected exception is counted and re-raised."""
    try:
        with hang_guard(CASE_SECONDS):
            return fn()
    except Hang:
        count(op, "hangs")
        raise


def check_valid(spec: Spec, kwargs: dict, grad_args: Sequence[str]):
    """Every backend gives the reference's outputs and gradients."""
    def compare():
        want = evaluate(spec, "reference", kwargs, grad_args)
        for backend in spec.compared():
            got = evaluate(spec, backend, kwargs, grad_args)
            def tol(dtype):  # the Triton kernels accumulate float64 in float32 (documented in _backend)
                return spec.tol(torch.float32 if backend == "triton" and dtype == torch.float64 else dtype)

            assert_same(got[0], want[0], tol, f"{spec.name} backend={backend} outputs")
            # At an infinite input the chain rule of the reference's formula meets inf * 0 and
            # inf - inf where a kernel's closed-form derivative has the limit (d log(t/s)/dt = 1/t
            # at s = inf): there, gradients are compared only where the reference's is finite.
            # NaN inputs are compared strictly: a NaN must reach the gradient as it does the
            # reference's.
            infinite = any(torch.isinf(t).any() for t in _floating_inputs(kwargs))
            assert_same(got[1], want[1], tol, f"{spec.name} backend={backend} gradients of {list(grad_args)}",
                        only_where_finite=infinite)

    try:
        run_guarded(spec.name, compare)
    except AssertionError:
        count(spec.name, "wrong")
        raise
    except Exception:
        count(spec.name, "crashes")
        raise
    count(spec.name, "valid and equal")


OPS = sorted(SPECS)


@pytest.mark.parametrize("op", OPS)
def test_valid_calls_match_the_reference(op):
    spec = SPECS[op]

    @fuzz(EXAMPLES)
    @given(data=st.data())
    def case(data):
        d = Draw(data)
        kwargs = spec.draw(d)
        grad_args = ()
        if d.coin(0.5):
            candidates = spec.grads or [n for n, v in kwargs.items()
                                        if isinstance(v, torch.Tensor) and v.is_floating_point()]
            grad_args = tuple(n for n in candidates if d.coin(0.7))
        check_valid(spec, kwargs, grad_args)

    case()


# ------------------------------------------------------------------------------------- broken calls
BAD_SCALARS = {
    "int": [None, 2.5, "3", True, torch.tensor(3), 2**31, -2**31 - 1, 2**32 + 3, 10**30],
    "size": [None, 2.5, "7", True, (2, 2.5), (1, 2, 3), 0, -3, 2**31, (2**32 + 1, 2), torch.tensor(2)],
    "float": [None, "0.5", torch.tensor(0.5), [0.5], 1j, True, float("nan"), 10**400],
    "bool": [None, "no", 2, 0.5, torch.tensor(True)],
    "choice": [None, 3, "bogus", ["mean"], b"mean"],
    "weights": [None, (1.0, 2.0, 3.0), "abcd", (1, 2, 3, None), (1, 2, 3, -1), (1, 2, 3, float("nan")), 5.0],
}


def _tensor_mutations(spec: Spec, name: str, t: torch.Tensor) -> list:
    """The ways to break tensor argument ``name`` that the op must refuse, naming it."""
    rules = spec.tensors[name]
    out = [] if rules.get("list", False) else [("not a tensor", t.tolist())]
    if not rules.get("optional", False):
        out.append(("None", None))
    if rules.get("dtype", True):
        out += [("int64", t.to(torch.int64) if not t.is_floating_point() or t.isfinite().all() else
                 torch.zeros(t.shape, dtype=torch.int64)), ("complex", t.to(torch.complex64))]
    if rules.get("rank", True):
        out.append(("rank + 1", t[None]))
    if rules.get("device", True) and len(spec.tensors) > 1:
        out.append(("meta device", t.to("meta")))
    return out


def check_broken(spec: Spec, d: Draw):
    """One valid call broken in one argument: refused on every backend with TypeError or
    ValueError naming the argument."""
    kwargs = spec.draw(d)
    options = [(n, kind) for n, kind in spec.scalars.items()]
    options += [(n, "tensor") for n in spec.tensors if isinstance(kwargs.get(n), torch.Tensor)]
    options += [(n, how) for n, how in spec.breaks if spec.breaks[n, how](d, kwargs) is not None]
    name, kind = d.pick(options)
    if kind == "tensor":
        how, kwargs[name] = d.pick(_tensor_mutations(spec, name, kwargs[name]))
    elif kind in BAD_SCALARS:
        how, kwargs[name] = "value", d.pick(BAD_SCALARS[kind])
    else:
        how, kwargs = kind, spec.breaks[name, kind](d, kwargs)
    what = f"{spec.name}({name}={kwargs.get(name, '...')!r} [{how}])"

    def refuse_everywhere():
        for backend in ("reference",) + spec.compared():
            try:
                spec.run(backend, dict(kwargs))
            except (TypeError, ValueError) as err:
                named = name in str(err) or (how == "meta device" and "must be on" in str(err))
                assert named, f"{what} backend={backend}: the error does not name {name!r}: {err}"
            except RuntimeError as err:  # torch's own refusal of an in-place op on a leaf that requires grad
                assert name == "leaf Variable" and name in str(err), f"{what} backend={backend}: {err}"
            else:
                raise AssertionError(f"{what} backend={backend}: accepted")

    try:
        run_guarded(spec.name, refuse_everywhere)
    except (AssertionError, Exception):
        count(spec.name, "crashes")
        raise
    count(spec.name, "clean errors")


@pytest.mark.parametrize("op", OPS)
def test_broken_calls_are_refused_naming_the_argument(op):
    spec = SPECS[op]
    if not spec.scalars and not spec.tensors:
        pytest.skip("no argument to break")

    @fuzz(EXAMPLES)
    @given(data=st.data())
    def case(data):
        check_broken(spec, Draw(data))

    case()


# ------------------------------------------------------------------------------------- compiled ops, raw
RAW_COLUMNS = ("cases", "returned", "errors", "crashes", "hangs")
RAW_COUNTS = count_table("compiled op, called directly", RAW_COLUMNS)


def _add_counts(counts: dict):
    for op, c in counts.items():
        RAW_COUNTS[op]["cases"] += c["cases"]
        RAW_COUNTS[op]["returned"] += c["returned"]
        RAW_COUNTS[op]["errors"] += c["errors"]


def test_compiled_ops_survive_hostile_arguments(tmp_path, seed):
    """Every compiled op, called without the Python checks, with each argument broken in turn
    (tests/_raw_op_fuzz.py), in a child process: each call returns or raises; a call that kills
    the process or runs longer than HANG_SECONDS is counted and named, and the run goes on with
    the next case."""
    progress, result = tmp_path / "progress.json", tmp_path / "result.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    failures, start = [], 0
    while True:
        progress.unlink(missing_ok=True)
        child = subprocess.Popen([sys.executable, "-m", "tests._raw_op_fuzz", "--seed", str(seed),
                                  "--start", str(start), "--progress", str(progress), "--result", str(result)],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        last, since = None, time.monotonic()
        while child.poll() is None:
            time.sleep(0.2)
            now = progress.read_text() if progress.exists() else None
            if now != last:
                last, since = now, time.monotonic()
            elif last is not None and time.monotonic() - since > HANG_SECONDS:
                child.kill()
                child.wait()
                break
        output = child.stdout.read().decode(errors="replace")
        if child.returncode == 0:
            _add_counts(json.loads(result.read_text()))
            break
        if last is None or child.returncode > 0:  # the harness itself failed (not a crash of an op)
            raise AssertionError(f"the fuzzing child failed (exit {child.returncode}):\n{output[-3000:]}")
        state = json.loads(last)
        _add_counts(state["counts"])
        kind = "hangs" if child.returncode == -signal.SIGKILL else "crashes"
        RAW_COUNTS[state["op"]]["cases"] += 1
        RAW_COUNTS[state["op"]][kind] += 1
        failures.append(f"{state['op']} [{state['case']}]: {kind[:-1]} (exit {child.returncode}) {output[-500:]}")
        start = state["index"] + 1
    assert not failures, "compiled ops that crashed or hung (seed {}):\n".format(seed) + "\n".join(failures)
