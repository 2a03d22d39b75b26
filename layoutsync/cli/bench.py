"""``layoutsync bench [NAME...] [--quick] [--json]``: run the benchmarks in layoutsync/bench/."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ..bench import BenchOptions, Figure, discover


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmarks (ratios against baselines measured in the same run)",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    options = BenchOptions(quick=args.quick)
    available = dict(discover())
    unknown = [name for name in args.names if name not in available]
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(available)}")
        return 2
    failed = False
    for name, bench in available.items():
        if args.names and name not in args.names:
            continue
        for figure in bench(options):
            failed |= figure.ok is False
            print(json.dumps(dataclasses.asdict(figure)) if args.json else _line(figure))
    return 1 if failed else 0


def _line(figure: Figure) -> str:
    verdict = {True: "ok  ", False: "MISS", None: "    "}[figure.ok]
    goal = f"  (goal {figure.goal})" if figure.goal else ""
    extra = "".join(f" {key}={value}" for key, value in figure.details.items())
    return f"{verdict} {figure.bench}.{figure.name}: {figure.value:.4g} {figure.unit}{goal}{extra}"
