"""Benchmark cases: what `dapo-fast bench` and benchmarks/bench_cases.py time.

A case is one op at one named size; the cases of op module X live in dapo_fast/bench/cases/X.py. It builds its inputs once and names a set of
implementations (ours per backend, the reference eager, torch.compile of the reference, the
peer op such as torchvision or the paper's code form). Every implementation takes the inputs
dict and returns the output(s); the runner times forward and forward+backward side by side in
one process and reports speedups against the case's baselines.

Devices: a case whose ``make_inputs`` takes a ``device`` argument builds its inputs on the device
the runner asks for (``dapo-fast bench --device cuda``); one that takes no argument is CPU-only.
An implementation named ``dapo_fast[<backend>...]`` runs only where its backend does (``cpu`` on
CPU tensors, ``cuda`` and ``triton`` on CUDA tensors); any other (``dapo_fast[auto]``, the
references, the peers) runs on every device of the case.
"""
import inspect
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

Inputs = Dict[str, object]
Impl = Callable[[Inputs], object]

# the device type each pinned backend of an op runs on ("auto" and "reference" run anywhere)
BACKEND_DEVICE = {"cpu": "cpu", "cuda": "cuda", "triton": "cuda"}


@dataclass
class Case:
    op: str                                   # public op name, e.g. "roi_align"
    size: str                                 # named size, e.g. "reir"
    make_inputs: Callable[..., Inputs]        # fresh inputs (tensors that need grad already require it);
    #                                           make_inputs(device) where the case runs on other devices than the CPU
    impls: Dict[str, Impl]                    # implementation name -> fn(inputs) -> Tensor or tuple
    ours: List[str]                           # names in impls that are dapo_fast backends
    baselines: List[str]                      # names in impls to report speedups against
    grad_inputs: List[str] = field(default_factory=list)  # input keys to differentiate (empty: forward only)
    bytes_moved: Optional[int] = None         # minimal bytes a forward must read + write (for GB/s)
    bytes_moved_fwd_bwd: Optional[int] = None  # the same for forward + backward
    flops: Optional[int] = None               # floating-point operations of one forward (a multiply-add is 2)
    flops_fwd_bwd: Optional[int] = None       # the same for forward + backward
    quick: bool = True                        # part of `--quick`
    measure_memory: bool = False              # also report peak bytes allocated by one forward(+backward)
    note: str = ""

    def devices(self) -> Tuple[str, ...]:
        """Device types this case can build its inputs on."""
        takes_device = "device" in inspect.signature(self.make_inputs).parameters
        return ("cpu", "cuda") if takes_device else ("cpu",)

    def build_inputs(self, device: str = "cpu") -> Inputs:
        kind = torch.device(device).type
        if kind not in self.devices():
            raise ValueError(f"case {self.op} @ {self.size} builds its inputs on {self.devices()} only, not {device!r}")
        return self.make_inputs(device=device) if "cuda" in self.devices() else self.make_inputs()

    def impls_on(self, device: str) -> Dict[str, Impl]:
        """The implementations that apply to tensors on ``device``, in the case's order."""
        kind = torch.device(device).type
        return {name: fn for name, fn in self.impls.items() if kind in impl_device_types(name)}


def impl_device_types(name: str) -> Tuple[str, ...]:
    """Device types an implementation named ``name`` runs on (see the module docstring)."""
    if name.startswith("dapo_fast[") and name.endswith("]"):
        backend = name[len("dapo_fast["):-1].split(",")[0]
        if backend in BACKEND_DEVICE:
            return (BACKEND_DEVICE[backend],)
    return ("cpu", "cuda")


def backend_impls(call: Callable[[Inputs, str], object], backends: Sequence[str] = ("cpu", "cuda")) -> Dict[str, Impl]:
    """``{"dapo_fast[<b>]": inputs -> call(inputs, b)}`` for each backend ``b`` of an op: the "ours"
    entries of a case, from one function that takes the backend name."""
    return {f"dapo_fast[{b}]": (lambda inputs, b=b: call(inputs, b)) for b in backends}


def to_device(inputs: Inputs, device: str) -> Inputs:
    """``inputs`` with every tensor (also inside lists and tuples) on ``device``; a tensor that
    requires grad stays a leaf that requires grad; memory layout (channels_last, transposed views
    of a dense tensor) is kept."""
    def move(value):
        if isinstance(value, torch.Tensor):
            moved = value.detach().to(device)
            return moved.requires_grad_() if value.requires_grad else moved
        if isinstance(value, (list, tuple)):
            return type(value)(move(v) for v in value)
        return value

    if torch.device(device).type == "cpu":
        return inputs
    return {key: move(value) for key, value in inputs.items()}


_CASES: List[Case] = []


def register(case: Case) -> Case:
    _CASES.append(case)
    return case


def all_cases() -> List[Case]:
    """Every registered case (imports dapo_fast.bench.cases.* to register them, in file-name order)."""
    import importlib
    import pkgutil

    from dapo_fast.bench import cases

    for mod in sorted(pkgutil.iter_modules(cases.__path__), key=lambda m: m.name):
        importlib.import_module(f"dapo_fast.bench.cases.{mod.name}")
    return list(_CASES)


def backward_of(out) -> None:
    """Backward with a fixed upstream gradient of ones on every floating output."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    tensors = [o for o in outs if isinstance(o, torch.Tensor) and o.requires_grad]
    torch.autograd.backward(tensors, [torch.ones_like(t) for t in tensors])
