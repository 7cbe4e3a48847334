"""The layout rule a newcomer applies: for op module X (dapo_fast/ops/X.py) the reference is
ops/_reference/X.py, the fakes and autograd ops/_meta/X.py, the Triton kernels (where there are
any) ops/_triton/X.py with ops named dapo_fast::<compiled op>_triton, the tests
tests/ops/test_X.py and the benchmark cases dapo_fast/bench/cases/X.py. Plus: the layers below
the fronts never import a front (no import loops), and no module imports another's private name."""
import ast
import importlib
import importlib.util
from pathlib import Path

import pytest
import torch

import dapo_fast
import dapo_fast.ops

PACKAGE = Path(dapo_fast.__file__).parent
REPO = PACKAGE.parent
OP_MODULES = sorted(p.stem for p in (PACKAGE / "ops").glob("*.py") if not p.stem.startswith("_"))
# benchmark cases that time a use of the ops rather than one op
END_TO_END_CASES = {"unet_step_attention_capture", "guided_denoising_step", "generate_images", "mpl_train_step",
                    "reir_train_step", "querymatch_train_step", "pcnet_train_step"}


def stems(folder: Path, prefix: str = "") -> set:
    return {p.stem[len(prefix):] for p in folder.glob(f"{prefix}*.py") if not p.stem.startswith("_")}


def test_every_op_module_has_its_pieces_and_nothing_else_is_there():
    assert stems(PACKAGE / "ops" / "_reference") == set(OP_MODULES)
    assert stems(PACKAGE / "ops" / "_meta") == set(OP_MODULES)
    assert stems(REPO / "tests" / "ops", "test_") == set(OP_MODULES)
    assert stems(PACKAGE / "bench" / "cases") == set(OP_MODULES) | END_TO_END_CASES
    assert stems(PACKAGE / "ops" / "_triton") <= set(OP_MODULES)


def test_public_ops_live_in_the_module_of_their_name_or_family():
    from dapo_fast.ops import _backend

    for name in dapo_fast.ops.__all__:
        if hasattr(_backend, name):  # BACKENDS, use_backend
            continue
        obj = getattr(dapo_fast.ops, name)
        module = obj.__module__.rsplit(".", 1)[1]
        assert module in OP_MODULES, name
        assert name in importlib.import_module(obj.__module__).__all__, name


def test_bench_cases_name_a_public_op_of_their_module():
    from dapo_fast.bench.registry import all_cases

    for case in all_cases():
        if case.op in END_TO_END_CASES:
            continue
        assert case.op in dapo_fast.ops.__all__, case.op
        module = getattr(dapo_fast.ops, case.op).__module__.rsplit(".", 1)[1]
        assert (PACKAGE / "bench" / "cases" / f"{module}.py").exists(), case.op


@pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_triton_ops_are_named_after_the_compiled_ops():
    from torch._library.custom_ops import CustomOpDef

    for module in stems(PACKAGE / "ops" / "_triton"):
        names = [v._name for v in vars(importlib.import_module(f"dapo_fast.ops._triton.{module}")).values()
                 if isinstance(v, CustomOpDef)]
        assert names, module
        for name in names:
            # in-place ops keep the trailing underscore last: momentum_update_ -> momentum_update_triton_
            compiled = name[:-len("_triton_")] + "_" if name.endswith("_triton_") else name[:-len("_triton")]
            assert name.endswith(("_triton", "_triton_")), name
            assert hasattr(torch.ops.dapo_fast, compiled), name
            assert compiled.startswith(module), name


def imports_of(path: Path):
    """(module, name) pairs of the file's imports: ("a.b", "c") for `from a.b import c`."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                yield node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None


def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_layers_below_the_fronts_never_import_a_front():
    fronts = {f"dapo_fast.ops.{m}" for m in OP_MODULES} | {"dapo_fast.ops"}
    for layer in ("_meta", "_reference", "_triton"):
        for path in (PACKAGE / "ops" / layer).glob("*.py"):
            for module, name in imports_of(path):
                target = f"{module}.{name}" if name and is_module(f"{module}.{name}") else module
                assert target not in fronts, f"{path.relative_to(REPO)} imports {target}"


def private_names_used(path: Path):
    """Private names of dapo_fast modules this file uses: `from m import _x` (unless m._x is a
    module) and `alias._x` on a module imported from dapo_fast."""
    tree = ast.parse(path.read_text())
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dapo_fast"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if is_module(full):
                    aliases[alias.asname or alias.name] = full
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    yield full
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dapo_fast") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and not is_module(f"{aliases[node.value.id]}.{node.attr}")):
            yield f"{aliases[node.value.id]}.{node.attr}"


@pytest.mark.parametrize("folder", ["dapo_fast", "benchmarks", "tests"])
def test_no_private_name_is_used_from_another_module(folder):
    for path in (REPO / folder).rglob("*.py"):
        used = sorted(set(private_names_used(path)))
        assert not used, f"{path.relative_to(REPO)} uses {used}"
