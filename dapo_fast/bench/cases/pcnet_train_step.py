"""What the ops buy in training: one PCNet training step (the network's forward, L_cls + RaS + IaD,
backward to every parameter) on one batch of the synthetic benchmark, with the losses' ops on
backend="auto" (the compiled kernels) against backend="reference" (plain PyTorch), for the paper's
forms and the public code's. Not an op: the end-to-end use of proposal_alignment, region_ambiguity
and soft_iou. Step time and peak memory side by side (``measure_memory``).

The runner differentiates ``loss_scale`` (a scalar the loss is multiplied by); the backward
reaches every parameter, whose gradients are reset before each step as the training loop does."""
import torch

from dapo_fast.bench.registry import Case, register


def _case(size: str, batch: int, form: str, quick: bool):
    def make():
        from dapo_fast.data.synthetic import SyntheticConfig, generate_split
        from dapo_fast.data.sample import WordTokenizer
        from dapo_fast.train.config import config_from_dict
        from dapo_fast.train.distributed import DistInfo
        from dapo_fast.train.methods import get

        torch.manual_seed(0)
        split = generate_split("train", batch, seed=0, cfg=SyntheticConfig())
        cfg = config_from_dict({"method": "pcnet"})
        method_cls = get("pcnet")
        tokenizer = WordTokenizer.build(method_cls.vocabulary_texts(cfg, split))
        method = method_cls(cfg, split, tokenizer, DistInfo())
        samples = [split[i] for i in range(batch)]
        return {"method": method, "batch": method.collate(samples), "loss_scale": torch.ones((), requires_grad=True)}

    def step(backend: str):
        def run(i):
            method = i["method"]
            method.options.backend, method.options.ras_form, method.options.iad_form = backend, form, form
            method.model.zero_grad(set_to_none=True)
            return method.forward_loss(method.model, i["batch"], None, None)["loss"] * i["loss_scale"]
        return run

    return register(Case(
        op="pcnet_train_step", size=f"{size}-{form}", make_inputs=make,
        impls={"dapo_fast[auto]": step("auto"), "reference": step("reference")}, ours=["dapo_fast[auto]"],
        baselines=["reference"], grad_inputs=["loss_scale"], quick=quick, measure_memory=True,
        note=f"{batch} images 64x64, up to 3 expressions each, 3 stages, 40 proposals of 32x32, "
             f"the default model; RaS and IaD in the {form}'s form",
    ))


for _form in ("paper", "code"):
    _case("pcnet", 48, _form, quick=False)
    _case("small", 8, _form, quick=True)
