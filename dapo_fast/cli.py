"""The `dapo-fast` command: one entry point for the benchmark runner and the training stack."""
import argparse
import os
import sys


def _bench(args) -> int:
    from dapo_fast.bench import runner

    runner.main(ops=args.ops, quick=args.quick, repeats=args.repeats, out_dir=args.out, impls=args.impls)
    return 0


def _config(args, builtin_demo: bool = False):
    """The --config file with --method and --set overrides; without --config, the method's
    defaults, and for the demo and the ablation the built-in demo settings (= configs/demo.yaml,
    which an installed package does not ship): eager, one thread (measured fastest on a 2-core CPU)."""
    from dapo_fast.train.config import apply_overrides, config_from_dict, load_config

    overrides = ([f"method={args.method}"] if getattr(args, "method", None) else []) + list(args.set)
    if args.config:
        return load_config(args.config, overrides)
    builtin = ["train.compile=false", "train.threads=1"] if builtin_demo else []
    return config_from_dict(apply_overrides({}, builtin + overrides))


def _train(args) -> int:
    from dapo_fast.train.distributed import cleanup
    from dapo_fast.train.loop import train

    cfg = _config(args)
    if args.no_compile:
        cfg.train.compile = False
    out = train(cfg, resume=args.resume)
    if out["world_size"] == 1 or int(os.environ.get("RANK", "0")) == 0:
        state = "stopped (train.stop_after)" if out["interrupted"] else "finished"
        print(f"{state} at step {out['step']} in {out['seconds']:.1f}s; checkpoint: {out['checkpoint']}")
    cleanup()
    return 0


def _eval(args) -> int:
    import json

    from dapo_fast.train.demo import evaluate_checkpoint, results_table

    res = evaluate_checkpoint(args.checkpoint, args.split, png=args.png, data_root=args.data_root, limit=args.limit)
    print(results_table({args.split: res}, res["method"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


def _demo(args) -> int:
    from dapo_fast.train.demo import run_demo

    cfg = _config(args, builtin_demo=True)
    if args.out:
        cfg.train.out_dir = args.out
    if args.no_compile:
        cfg.train.compile = False
    run_demo(cfg)
    return 0


def _ablation(args) -> int:
    from dapo_fast.train.demo import run_ablation

    cfg = _config(args, builtin_demo=True)
    if args.out:
        cfg.train.out_dir = args.out
    if args.no_compile:
        cfg.train.compile = False
    cfg.train.progress = False
    run_ablation(cfg, args.variants, args.seeds)
    return 0


# ---- diffusion: generation-aided training (DAPO GAT) -------------------------------------------

def _train_diffusion(args) -> int:
    from dapo_fast.diffusion.train_diffusion import load_diffusion_config, train_diffusion

    cfg = load_diffusion_config(args.config, args.set)
    if args.out:
        cfg.train.out_dir = args.out
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


def _add_diffusion_commands(sub) -> None:
    from dapo_fast.diffusion.generate import add_arguments

    ge = sub.add_parser("generate", help="DAPO's generated training set: images + final-step entity attention maps "
                                         "from a Stable Diffusion directory, optionally attention-guided (eq. 4)")
    add_arguments(ge)
    ge.set_defaults(func=_generate)
    td = sub.add_parser("train-diffusion", help="train the small text-to-image model (UNet + AutoencoderKL + CLIP "
                                                "text encoder) on the synthetic benchmark; saved with save_pretrained")
    td.add_argument("--config", help="YAML config (configs/diffusion.yaml); default: the built-in defaults")
    td.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override one config value (repeatable), e.g. --set unet.steps=100")
    td.add_argument("--out", help="run directory (default: train.out_dir); the model goes to <out>/model")
    td.set_defaults(func=_train_diffusion)


def _add_config_args(p, method: bool = True):
    from dapo_fast.train.methods import NAMES

    p.add_argument("--config", help="YAML config (see configs/); default: the built-in demo config")
    if method:
        p.add_argument("--method", choices=NAMES, help="training method (default: the config's, else wwbl)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable), e.g. --set train.max_steps=200")
    p.add_argument("--no-compile", action="store_true", help="run the training step eagerly (no torch.compile)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dapo-fast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="time every backend of every op side by side")
    bench.add_argument("--ops", nargs="*", help="only these ops (default: all)")
    bench.add_argument("--quick", action="store_true", help="small sizes only")
    bench.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median)")
    bench.add_argument("--impls", nargs="*", help="only these implementations")
    bench.add_argument("--out", default="benchmarks/results", help="directory for CSV/JSON/PNG")
    bench.set_defaults(func=_bench)

    tr = sub.add_parser("train", help="train a grounding method (default wwbl: DAPO progressive learning); DDP under torchrun")
    _add_config_args(tr)
    tr.add_argument("--resume", help="checkpoint (or run directory) to continue bit-for-bit")
    tr.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluate a checkpoint with its method's metrics per object-count subset; PNG")
    ev.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    ev.add_argument("--split", default="test", help="train | val | test | multi (synthetic)")
    ev.add_argument("--png", help="write the method's picture (e.g. a grid of heatmaps and boxes) here")
    ev.add_argument("--data-root", help="override the dataset root saved in the checkpoint")
    ev.add_argument("--limit", type=int, help="only the first N samples")
    ev.add_argument("--json", help="write the metrics as JSON here")
    ev.set_defaults(func=_eval)

    de = sub.add_parser("demo", help="generate the synthetic benchmark, train, evaluate, print the table, write the PNG")
    _add_config_args(de, method=False)
    de.add_argument("--out", help="run directory (default runs/demo)")
    de.set_defaults(func=_demo)

    ab = sub.add_parser("ablation", help="a method's ablation at one budget (wwbl: DAPO Table 4, no curriculum / "
                                         "ScoreQ / ScoreS / both), once per seed")
    _add_config_args(ab)
    ab.add_argument("--out", help="directory for the runs (default: the config's train.out_dir)")
    ab.add_argument("--variants", nargs="*", help="only these variants (wwbl: none ScoreQ ScoreS ScoreQ+ScoreS)")
    ab.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (default 0); the table "
                    "shows the mean and spread over them")
    ab.set_defaults(func=_ablation)
    _add_diffusion_commands(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        return args.func(args)
    from dapo_fast.train.checkpoint import CheckpointError
    from dapo_fast.train.config import ConfigError

    try:
        return args.func(args)
    except (ConfigError, CheckpointError, FileNotFoundError) as err:
        print(f"dapo-fast {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
