"""Benchmark cases: what `dapo-fast bench` and benchmarks/bench_cases.py time.

A case is one op at one named size; the cases of op module X live in dapo_fast/bench/cases/X.py. It builds its inputs once and names a set of
implementations (ours per backend, the reference eager, torch.compile of the reference, the
peer op such as torchvision or the paper's code form). Every implementation takes the inputs
dict and returns the output(s); the runner times forward and forward+backward side by side in
one process and reports speedups against the case's baselines.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch

Inputs = Dict[str, object]


@dataclass
class Case:
    op: str                                   # public op name, e.g. "roi_align"
    size: str                                 # named size, e.g. "reir"
    make_inputs: Callable[[], Inputs]         # fresh inputs (tensors that need grad already require it)
    impls: Dict[str, Callable[[Inputs], object]]  # implementation name -> fn(inputs) -> Tensor or tuple
    ours: List[str]                           # names in impls that are dapo_fast backends
    baselines: List[str]                      # names in impls to report speedups against
    grad_inputs: List[str] = field(default_factory=list)  # input keys to differentiate (empty: forward only)
    bytes_moved: Optional[int] = None         # minimal bytes a forward must read + write (for GB/s)
    bytes_moved_fwd_bwd: Optional[int] = None  # the same for forward + backward
    quick: bool = True                        # part of `--quick`
    measure_memory: bool = False              # also report peak bytes allocated by one forward(+backward)
    note: str = ""


_CASES: List[Case] = []


def register(case: Case) -> Case:
    _CASES.append(case)
    return case


def all_cases() -> List[Case]:
    """Every registered case (imports dapo_fast.bench.cases.* to register them)."""
    import importlib
    import pkgutil

    from dapo_fast.bench import cases

    for mod in pkgutil.iter_modules(cases.__path__):
        importlib.import_module(f"dapo_fast.bench.cases.{mod.name}")
    return list(_CASES)


def backward_of(out) -> None:
    """Backward with a fixed upstream gradient of ones on every floating output."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    tensors = [o for o in outs if isinstance(o, torch.Tensor) and o.requires_grad]
    torch.autograd.backward(tensors, [torch.ones_like(t) for t in tensors])
