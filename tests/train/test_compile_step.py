"""A compiled training step keeps the ops as single graph nodes: three real steps of a tiny model
through ``torch.compile(forward_loss, dynamic=False)`` (as ``dapo-fast train`` compiles it),
counting Dynamo's graphs, graph breaks and recompiles. The backend is AOTAutograd without inductor
(``aot_eager``): it traces the ops' fake and autograd registrations like the default backend, at a
fraction of the compile time; TRIS runs through inductor, where a returned loss once came back
without its grad_fn (a logged detached alias of it)."""
import pytest
import torch
from torch._dynamo.utils import counters

from dapo_fast.data.sample import WordTokenizer
from dapo_fast.data.synthetic import SyntheticConfig, generate_split
from dapo_fast.train import methods
from dapo_fast.train.distributed import DistInfo
from dapo_fast.train.loop import build_optimizer
from tests.train.tiny import tiny_config

pytestmark = pytest.mark.skipif(not hasattr(torch.ops.dapo_fast, "roi_align"), reason="needs the compiled ops")

# Graph breaks the models themselves cause (none is in an op): the proposal grounders' phrase
# encoder packs its padded sequences (pack_padded_sequence, which Dynamo does not trace).
MODEL_GRAPH_BREAKS = ("pack_padded_sequence",)
# the ops each method's compiled step must hold as graph nodes
OPS_IN_STEP = {"mpl": {"roi_align", "false_negative_mask", "pseudo_label_contrastive_loss"},
               "pcnet": {"proposal_alignment", "region_ambiguity"}, "tris": set()}

OPTIONS = {"mpl": {"mpl": {"mode": "fnc", "fn_start": 0.0}}}  # FNC from the first step: the mask takes part


def _dapo_fast_ops(gm: torch.fx.GraphModule):
    """Names of the dapo_fast ops called in a Dynamo graph (as an overload or an overload packet)."""
    names = set()
    for n in gm.graph.nodes:
        if n.op == "call_function":
            qualified = getattr(n.target, "_qualified_op_name", None) or getattr(n.target, "_name", "")
            if isinstance(qualified, str) and qualified.startswith("dapo_fast::"):
                names.add(qualified.split("::")[1].split(".")[0])
    return names


@pytest.mark.parametrize("method", ["mpl", "pcnet", "tris"])
def test_compiled_step_no_op_graph_breaks_no_recompiles(tmp_path, method):
    cfg = tiny_config(tmp_path, method, **OPTIONS.get(method, {}))
    data = generate_split("train", 4, 0, SyntheticConfig(image_size=32))
    cls = methods.get(method)
    m = cls(cfg, data, WordTokenizer.build(cls.vocabulary_texts(cfg, data)), DistInfo())
    opt, _ = build_optimizer(cfg, m.model)
    batch = m.collate([data[i] for i in range(4)])
    compiler = torch._dynamo.lookup_backend("inductor" if method == "tris" else "aot_eager")
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return compiler(gm, example_inputs)

    torch._dynamo.reset()
    counters.clear()
    step_fn = torch.compile(m.forward_loss, backend=backend, dynamic=False)
    graphs_after = []
    for step in range(3):
        parts = step_fn(m.model, batch, None, torch.tensor(0.3))
        assert parts["loss"].requires_grad  # a compiled step must still train
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        opt.step()
        m.after_optimizer_step(step + 1)
        graphs_after.append((len(graphs), counters["stats"]["unique_graphs"]))
    breaks = [reason for reason in counters["graph_break"] if not any(k in reason for k in MODEL_GRAPH_BREAKS)]
    assert breaks == []
    assert graphs_after[0] == graphs_after[-1], "recompiled after the first step"
    seen = set().union(*(_dapo_fast_ops(gm) for gm in graphs))
    assert OPS_IN_STEP[method] <= seen
    if method != "mpl":  # no model graph break: the whole step is one graph
        assert graphs_after[0] == (1, 1)
