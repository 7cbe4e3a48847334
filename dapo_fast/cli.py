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

    res = evaluate_checkpoint(args.checkpoint, args.split, png=args.png, data_root=args.data_root, limit=args.limit)
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
    from dapo_fast.train.demo import run_ablation

    cfg = config_from_args(args, builtin_demo=True)
    if args.out:
        cfg.train.out_dir = args.out
    if args.no_compile:
        cfg.train.compile = False
    cfg.train.progress = False
    run_ablation(cfg, args.variants, args.seeds, overwrite=args.overwrite)
    return 0


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
    ab.add_argument("--out", help="directory for the runs (default: the config's train.out_dir)")
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
