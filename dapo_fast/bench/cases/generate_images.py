"""`dapo-fast generate`'s throughput: one batch of prompts through
:func:`dapo_fast.diffusion.generate.denoise` (50 DDPM steps, CFG 7.5), unguided and with eq. 4 on
the first 25 steps; images/s = batch / time. Same model and grounder as ``guided_denoising_step``.
"""
from dapo_fast.bench.cases.guided_denoising_step import BATCH, small_sd_setup
from dapo_fast.bench.registry import Case, register


def _generate_case():
    def make():
        sd, grounder, prompts, _ = small_sd_setup()
        return dict(sd=sd, grounder=grounder, prompts=prompts)

    def run(guidance):
        from dapo_fast.diffusion.generate import GenerationSettings, denoise

        settings = GenerationSettings(guidance=guidance)

        def call(i):
            return denoise(i["sd"], i["prompts"], settings, i["grounder"] if guidance else None).images
        return call

    return register(Case(
        op="generate_images", size=f"small-sd-b{BATCH}-50steps", make_inputs=make,
        impls={"dapo_fast[plain]": run(False), "dapo_fast[guided eq.4]": run(True)},
        ours=["dapo_fast[plain]", "dapo_fast[guided eq.4]"], baselines=["dapo_fast[plain]"], quick=False,
        note=f"{BATCH} images per call (images/s = {BATCH} / seconds), 50 DDPM steps, CFG 7.5; "
             "guided: eq. 4 on the first 25 steps",
    ))


_generate_case()
