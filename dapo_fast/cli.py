"""The `dapo-fast` command: one entry point for the benchmark runner and the training stack."""
import argparse
import json
import os
import sys


def _bench(args) -> int:
    import shlex

    from dapo_fast.bench import runner

    command = "dapo-fast " + " ".join(shlex.quote(a) for a in args.argv)
    try:
        runner.main(ops=args.ops, quick=args.quick, repeats=args.repeats, out_dir=args.out, impls=args.impls,
                    device=args.device, busy=args.busy, threads=args.threads, report=args.report, command=command)
    except runner.BenchError as err:
        print(f"dapo-fast bench: error: {err}", file=sys.stderr)
        return 2
    return 0


def config_from_args(args, builtin_demo: bool = False):
    """The --config file with --method and --set overrides; without --config, the method's
    defaults, and for the demo and the ablation the built-in demo settings (= configs/demo.yaml,
    which an installed package does not ship): eager, one thread (measured fastest on a 2-core CPU)."""
    from dapo_fast.train.config import apply_overrides, config_from_dict, load_config

    overrides = ([f"method={args.method}"] if getattr(args, "method", None) else []) + list(args.set)
    if getattr(args, "cues", None):
        overrides.append(f"pcnet.cues={json.dumps(args.cues)}")  # a JSON string is a YAML string
    if args.config:
        return load_config(args.config, overrides)
    builtin = ["train.compile=false", "train.threads=1"] if builtin_demo else []
    return config_from_dict(apply_overrides({}, builtin + overrides))


def _train(args) -> int:
    from dapo_fast.train.distributed import cleanup
    from dapo_fast.train.loop import train

    cfg = config_from_args(args)
    if args.no_compile:
        cfg.train.compile = False
    out = train(cfg, resume=args.resume, overwrite=args.overwrite)
    if out["world_size"] == 1 or int(os.environ.get("RANK", "0")) == 0:
        state = "stopped (train.stop_after)" if out["interrupted"] else "finished"
        print(f"{state} at step {out['step']} in {out['seconds']:.1f}s; checkpoint: {out['checkpoint']}")
    cleanup()
    return 0


def _eval(args) -> int:
    from dapo_fast.train.demo import evaluate_checkpoint, results_table

    res = evaluate_checkpoint(args.checkpoint, args.split, png=args.png, data_root=args.data_root, limit=args.limit,
                              evaluation_overrides=args.set)
    print(results_table({args.split: res}, res["method"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


def _demo(args) -> int:
    from dapo_fast.train.demo import run_demo

    cfg = config_from_args(args, builtin_demo=True)
    if args.out:
        cfg.train.out_dir = args.out
    if args.no_compile:
        cfg.train.compile = False
    run_demo(cfg, overwrite=args.overwrite)
    return 0


def _ablation(args) -> int:
    from dapo_fast.train.demo import generated_data_variants, run_ablation, run_variants

    cfg = config_from_args(args, builtin_demo=True)
    if args.out:
        cfg.train.out_dir = args.out
    if args.no_compile:
        cfg.train.compile = False
    cfg.train.progress = False
    if args.generated:
        if args.variants:
            from dapo_fast.train.config import ConfigError

            raise ConfigError("--generated compares data sources; it does not combine with --variants")
        run_variants(cfg, generated_data_variants(dict(args.generated)), args.seeds, overwrite=args.overwrite,
                     name="gat_ablation")
    else:
        run_ablation(cfg, args.variants, args.seeds, overwrite=args.overwrite)
    return 0


def _named_directory(text: str):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIRECTORY, got {text!r}")
    return name, path


# ---- diffusion: generation-aided training (DAPO GAT) -------------------------------------------

def _train_diffusion(args) -> int:
    from dapo_fast.diffusion.train_diffusion import export_checkpoint, load_diffusion_config, train_diffusion

    cfg = load_diffusion_config(args.config, args.set)
    if args.out:
        cfg.train.out_dir = args.out
    if args.export_checkpoint:
        export_checkpoint(cfg)
    else:
        train_diffusion(cfg)
    return 0


def _generate(args) -> int:
    from dapo_fast.diffusion.generate import GenerationError, run

    try:
        run(args)
    except GenerationError as err:
        print(f"dapo-fast generate: error: {err}", file=sys.stderr)
        return 2
    return 0


def _fidelity(args) -> int:
    import json

    from dapo_fast.data.generated import GeneratedSet
    from dapo_fast.diffusion.fidelity import fidelity_of_set, save_fidelity_sheet

    generated = GeneratedSet(args.generated)
    result = fidelity_of_set(generated, limit=args.limit)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.sheet:
        save_fidelity_sheet(generated, args.sheet, num=args.sheet_images)
    return 0


def _gat_demo(args) -> int:
    from dapo_fast.diffusion.gat_demo import run_gat_demo

    cfg = config_from_args(args, builtin_demo=True)
    cfg.train.progress = not args.no_progress
    run_gat_demo(cfg, out_dir=args.out, model_dir=args.model, num_images=args.images,
                 finetune_steps=args.finetune_steps, steps=args.steps, compare_plain=args.compare_plain,
                 seeds=args.seeds)
    return 0


def _refine_thresholds(text: str):
    out = {}
    for part in filter(None, text.split(",")):
        step, _, value = part.partition(":")
        try:
            out[int(step)] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"refine thresholds look like '0:0.05,10:0.5', got {text!r}") from None
    return out


def _generate_arguments(p) -> None:
    p.add_argument("--model", required=True, help="diffusers Stable Diffusion directory (save_pretrained layout)")
    p.add_argument("--out", required=True, help="output directory (shards, manifest); rerun to resume")
    src = p.add_argument_group("prompts (default: DAPO's sampler over the synthetic vocabulary)")
    src.add_argument("--phrases", help="JSONL file of {\"caption\": ..., \"entities\": [...]} lines")
    src.add_argument("--num-two", type=int, default=7000, help="two-entity captions (DAPO: 7000)")
    src.add_argument("--num-three", type=int, default=3000, help="three-entity captions (DAPO: 3000)")
    src.add_argument("--phrase-seed", type=int, default=0, help="seed of the phrase sampler")
    src.add_argument("--sizes", action="store_true", help="sampler: prefix entities with a size word")
    src.add_argument("--limit", type=int, help="only the first N prompts")
    g = p.add_argument_group("guidance (DAPO eq. 4)")
    mode = g.add_mutually_exclusive_group(required=True)
    mode.add_argument("--grounder", help="grounder checkpoint whose heatmaps guide the latents")
    mode.add_argument("--no-guidance", action="store_true", help="plain generation (no latent update)")
    g.add_argument("--scale-factor", type=float, default=20.0, help="alpha_t = s*sqrt(linspace(1,.5,steps)[i]) (A&E: 20)")
    g.add_argument("--max-iter-to-alter", type=int, help="guided steps (default: the first half, A&E's 25 of 50)")
    g.add_argument("--refine-thresholds", type=_refine_thresholds, default={},
                   help="iterative refinement 'step:L_A,...' (A&E used 0:0.05,10:0.5,20:0.8 for its own loss); "
                        "default none")
    d = p.add_argument_group("sampling")
    d.add_argument("--steps", type=int, default=50, help="denoising steps (DAPO: 50)")
    d.add_argument("--cfg-scale", type=float, default=7.5, help="classifier-free guidance scale (7.5)")
    d.add_argument("--scheduler", choices=("ddpm", "ddim"), default="ddpm", help="DAPO: DDPM")
    d.add_argument("--seed", type=int, default=0, help="prompt i uses seed + i")
    d.add_argument("--map-resolution", type=int, default=16, help="cross-attention resolution kept (16)")
    r = p.add_argument_group("run")
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--shard-size", type=int, default=256, help="images per shard (the unit of resuming)")
    r.add_argument("--save-maps", action="store_true", help="a PNG sheet per image: entity and token maps")
    r.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda:LOCAL_RANK when available)")
    r.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                   help="default: float16 on CUDA, float32 on the CPU")
    r.add_argument("--threads", type=int, default=0, help="torch.set_num_threads when > 0")
    r.add_argument("--no-progress", action="store_true")


def _add_diffusion_commands(sub) -> None:
    ge = sub.add_parser("generate", help="DAPO's generated training set: images + final-step entity attention maps "
                                         "from a Stable Diffusion directory, optionally attention-guided (eq. 4)")
    _generate_arguments(ge)
    ge.set_defaults(func=_generate)
    td = sub.add_parser("train-diffusion", help="train the small text-to-image model (UNet + AutoencoderKL + CLIP "
                                                "text encoder) on the synthetic benchmark; saved with save_pretrained")
    td.add_argument("--config", help="YAML config (configs/diffusion.yaml); default: the built-in defaults")
    td.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override one config value (repeatable), e.g. --set unet.steps=100")
    td.add_argument("--out", help="run directory (default: train.out_dir); the model goes to <out>/model")
    td.add_argument("--export-checkpoint", action="store_true", help="train nothing: write the EMA model of the "
                    "run's latest UNet checkpoint to <out>/model_step<N> (a run still going or stopped)")
    td.set_defaults(func=_train_diffusion)
    fi = sub.add_parser("fidelity", help="how often a generated set's images show each prompted entity (colour + "
                                         "shape on the synthetic palette) and its attention peak falls on it")
    fi.add_argument("generated", help="a `dapo-fast generate` output directory")
    fi.add_argument("--limit", type=int, help="only the first N images")
    fi.add_argument("--json", help="write the result here")
    fi.add_argument("--sheet", help="write a PNG of the first images with their entity maps and what was found")
    fi.add_argument("--sheet-images", type=int, default=8, help="rows of the sheet (default 8)")
    fi.set_defaults(func=_fidelity)
    gd = sub.add_parser("gat-demo", help="DAPO's generation-aided training end to end: train the grounder, generate "
                                         "guided images with the shipped small model, fine-tune with L_D, evaluate")
    _add_config_args(gd, method=False)
    gd.add_argument("--out", default="runs/gat_demo", help="run directory (stages already done are reused)")
    gd.add_argument("--model", help="Stable Diffusion directory (default: the small model shipped with the package)")
    gd.add_argument("--images", type=int, default=320, help="generated images (7:3 two- and three-entity captions)")
    gd.add_argument("--steps", type=int, default=50, help="denoising steps")
    gd.add_argument("--finetune-steps", type=int, default=500, help="fine-tuning steps (GAT and the control)")
    gd.add_argument("--compare-plain", action="store_true", help="also generate the same prompts without the eq. 4 "
                    "guidance and fine-tune on real + those (DAPO Table 4's with/without guidance)")
    gd.add_argument("--seeds", nargs="+", type=int, default=[0], help="fine-tuning seeds (default 0); the table "
                    "shows the mean and spread over them")
    gd.add_argument("--no-progress", action="store_true")
    gd.set_defaults(func=_gat_demo)


def _add_config_args(p, method: bool = True):
    from dapo_fast.train.methods import NAMES

    p.add_argument("--config", help="YAML config (see configs/); default: the built-in demo config")
    if method:
        p.add_argument("--method", choices=NAMES, help="training method (default: the config's, else wwbl)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable), e.g. --set train.max_steps=200")
    p.add_argument("--no-compile", action="store_true", help="run the training step eagerly (no torch.compile)")
    p.add_argument("--cues", help="method pcnet: JSONL of LLM-decomposed cues per referring expression "
                   "(one {\"expression\": ..., \"cues\": [...]} per line; docs/refseg.md)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dapo-fast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="time every backend of every op side by side")
    bench.add_argument("--ops", nargs="*", help="only these ops (default: all)")
    bench.add_argument("--quick", action="store_true", help="small sizes only")
    bench.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median)")
    bench.add_argument("--impls", nargs="*", help="only these implementations")
    bench.add_argument("--out", default="benchmarks/results", help="directory for the CSV/JSON/PNG files")
    bench.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]: build the inputs there and run "
                       "every implementation that applies (ours per backend: cpu | cuda, triton; the references, "
                       "torch.compile of them, the peer ops)")
    bench.add_argument("--busy", type=int, nargs="?", const=1, default=0, metavar="N",
                       help="also time every case with N (default 1) competing CPU-bound processes running, "
                            "started and stopped by the runner; reports quiet and busy speedups and their ratio")
    bench.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default, all cores)")
    bench.add_argument("--report", metavar="PREFIX", help="write the published report: PREFIX.md and its CSV/PNG "
                       "files in the folder PREFIX/ (instead of --out), e.g. --report docs/benchmarks")
    bench.set_defaults(func=_bench)

    tr = sub.add_parser("train", help="train a grounding method (default wwbl: DAPO progressive learning); DDP under torchrun")
    _add_config_args(tr)
    tr.add_argument("--resume", help="checkpoint (or run directory) to continue bit-for-bit")
    tr.add_argument("--overwrite", action="store_true", help="replace the run already in train.out_dir (without "
                    "this, or --resume naming its checkpoint, training into a directory holding a run is refused)")
    tr.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluate a checkpoint with its method's metrics per object-count subset; PNG")
    ev.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    ev.add_argument("--split", default="test", help="train | val | test | multi (synthetic)")
    ev.add_argument("--png", help="write the method's picture (e.g. a grid of heatmaps and boxes) here")
    ev.add_argument("--data-root", help="override the dataset root saved in the checkpoint")
    ev.add_argument("--limit", type=int, help="only the first N samples")
    ev.add_argument("--json", help="write the metrics as JSON here")
    ev.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                    help="change one of the method's evaluation options (repeatable), e.g. "
                         "--set wwbl.box_threshold=0.5 for WWbL's own box protocol")
    ev.set_defaults(func=_eval)

    de = sub.add_parser("demo", help="generate the synthetic benchmark, train, evaluate, print the table, write the PNG")
    _add_config_args(de, method=False)
    de.add_argument("--out", help="run directory (default runs/demo)")
    de.add_argument("--overwrite", action="store_true", help="retrain from scratch, replacing the run in the "
                    "directory (by default the demo continues it; a finished run is only re-evaluated)")
    de.set_defaults(func=_demo)

    ab = sub.add_parser("ablation", help="a method's ablation at one budget (wwbl: DAPO Table 4, no curriculum / "
                                         "ScoreQ / ScoreS / both), once per seed")
    _add_config_args(ab)
    ab.add_argument("--generated", action="append", type=_named_directory, default=[], metavar="NAME=DIR",
                    help="DAPO's Table 4 GAT row instead: real only vs real + each `dapo-fast generate` output "
                         "(repeatable, e.g. --generated plain=runs/gen_plain --generated guided=runs/gen_guided)")
    ab.add_argument("--out", help="directory for the runs (default: the config's train.out_dir)")
    _add_diffusion_commands(sub)
    ab.add_argument("--variants", nargs="*", help="only these variants (wwbl: none ScoreQ ScoreS ScoreQ+ScoreS)")
    ab.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (default 0); the table "
                    "shows the mean and spread over them")
    ab.add_argument("--overwrite", action="store_true", help="retrain every run from scratch (by default each run "
                    "continues the one in its directory; finished runs are only re-evaluated)")
    ab.set_defaults(func=_ablation)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.command == "bench":
        return args.func(args)
    from dapo_fast.safe_io import FileFormatError
    from dapo_fast.train.checkpoint import CheckpointError
    from dapo_fast.train.config import ConfigError

    try:
        return args.func(args)
    except (ConfigError, CheckpointError, FileFormatError, FileNotFoundError, FileExistsError) as err:
        print(f"dapo-fast {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
