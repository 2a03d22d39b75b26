"""``layoutsync bench [NAME...] [--quick] [--json] [--strict]``: run layoutsync/bench/.

Exit 1 when a figure misses its goal, except a figure that measures the machine
more than layoutsync (``Figure.machine``: an absolute rate or time), whose miss
is reported and fails the run only with ``--strict``. Exit 2 on an unknown name.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from ..bench import BenchOptions, Figure, describe, discover
from ._common import HelpFormatter, eprint


def register(subparsers: argparse._SubParsersAction) -> None:
    known = [(name, doc.replace("``", "")) for name, doc in describe()]
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmarks (ratios against baselines measured in the same run)",
        description="Run the benchmarks: all of them, or the NAMEs given. Exit 1 when a "
        "figure misses its goal (machine properties only with --strict).",
        epilog="benchmarks:\n" + "\n".join(f"  {name:<10} {doc}" for name, doc in known),
        formatter_class=_EpilogFormatter,
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"only these benchmarks ({', '.join(name for name, _ in known)}; default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="also fail on figures that measure the machine (emulator Updates/s, absolute "
        "times), which otherwise are only reported",
    )
    parser.set_defaults(handler=run)


class _EpilogFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's list of benchmarks one per line."""


def run(args: argparse.Namespace) -> int:
    options = BenchOptions(quick=args.quick)
    available = dict(discover())
    unknown = [name for name in args.names if name not in available]
    if unknown:
        eprint(f"error: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(available)}")
        return 2
    failed = False
    for name, bench in available.items():
        if args.names and name not in args.names:
            continue
        for figure in bench(options):
            failed |= figure.ok is False and (args.strict or not figure.machine)
            print(json.dumps(dataclasses.asdict(figure)) if args.json else _line(figure))
    return 1 if failed else 0


def _line(figure: Figure) -> str:
    verdict = {True: "ok  ", False: "MISS", None: "    "}[figure.ok]
    if figure.ok is False and figure.machine:
        verdict = "miss"  # a machine property: reported, fails only with --strict
    goal = f"  (goal {figure.goal})" if figure.goal else ""
    machine = " [machine property]" if figure.machine else ""
    extra = "".join(f" {key}={value}" for key, value in figure.details.items())
    return (
        f"{verdict} {figure.bench}.{figure.name}: {figure.value:.4g} {figure.unit}{goal}"
        f"{machine}{extra}"
    )
