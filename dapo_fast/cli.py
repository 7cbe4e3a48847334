"""The `dapo-fast` command: one entry point for the benchmark runner and the training stack."""
import argparse
import sys


def _bench(args) -> int:
    from dapo_fast.bench import runner

    runner.main(ops=args.ops, quick=args.quick, repeats=args.repeats, out_dir=args.out, impls=args.impls)
    return 0


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
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
