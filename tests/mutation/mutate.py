"""A small mutation tester: one realistic bug at a time, the relevant tests run against it.

    python tests/mutation/mutate.py --sample 30 --seed 1 --out /tmp/mutation.json

For each target (a module or package and the test files that should notice a
bug in it) the source is parsed, every mutation point is listed (a comparison
flipped, ``and``/``or`` swapped, a ``not`` dropped, a number moved by one, a
boolean flipped, ``+``/``-`` swapped, a statement that calls something
removed, a ``return`` made to return None), a seeded sample is drawn, and each
mutant is written over the file, the tests are run (``pytest -x``), and the
file is put back byte for byte. A mutant is *killed* when the tests fail.

``--before`` names test files that are left out of the first run: a mutant
those files alone kill is counted "killed only with them", so one run gives
the score without and with them. Log calls, docstrings and ``__all__`` are
never mutated: a missing log line is not a bug the suite is meant to catch.
Results go to ``--out`` (JSON, one entry per mutant); nothing is committed.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: target -> the tests that should catch a bug in it (relative to the repository root).
TARGETS: dict[str, tuple[str, ...]] = {
    "layoutsync/plan.py": ("tests/test_plan.py", "tests/test_session.py"),
    "layoutsync/apply.py": (
        "tests/test_session.py",
        "tests/test_churn.py",
        "tests/test_promises.py",
        "tests/test_fault_soak.py",
    ),
    "layoutsync/redact.py": (
        "tests/test_protocol.py",
        "tests/test_session.py",
        "tests/test_promises.py",
    ),
    "layoutsync/daemon": (
        "tests/test_daemon_queue.py",
        "tests/test_daemon_app.py",
        "tests/test_daemon_webhooks.py",
        "tests/test_promises.py",
    ),
}

#: The test files this branch added: a mutant only they kill shows what they add.
NEW_TESTS = ("tests/test_promises.py", "tests/test_fault_soak.py")

_LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
_COMPARE_SWAPS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BINOP_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}


@dataclass
class Mutant:
    path: str
    line: int
    kind: str
    before: str
    after: str
    start: tuple[int, int]
    end: tuple[int, int]
    outcome: str = ""
    seconds: float = 0.0


def _is_log_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Expr) or not isinstance(node.value, ast.Call):
        return False
    func = node.value.func
    return isinstance(func, ast.Attribute) and func.attr in _LOG_METHODS


def _docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.add(id(value))
    return found


def _skipped(tree: ast.Module) -> set[int]:
    """Nodes never mutated: docstrings, annotations, ``__all__``, log calls."""
    skip = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign | ast.arg) and node.annotation is not None:
            skip.update(id(n) for n in ast.walk(node.annotation))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            skip.update(id(n) for n in ast.walk(node.returns))
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            skip.update(id(n) for n in ast.walk(node))
        if _is_log_call(node):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def _replacement(node: ast.AST) -> list[tuple[str, str]]:
    """(kind, new source) for each mutation of ``node`` itself."""
    out: list[tuple[str, str]] = []
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        swap = _COMPARE_SWAPS.get(type(node.ops[0]))
        if swap is not None:
            changed = ast.Compare(node.left, [swap()], node.comparators)
            out.append(("compare", ast.unparse(changed)))
    elif isinstance(node, ast.BoolOp):
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        out.append(("boolop", ast.unparse(ast.BoolOp(other, node.values))))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        out.append(("not", ast.unparse(node.operand)))
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value = node.value
        moved = value + 1 if isinstance(value, int) else (value * 2 if value else 1.0)
        out.append(("number", repr(moved)))
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        out.append(("bool", repr(not node.value)))
    elif isinstance(node, ast.BinOp):
        swap = _BINOP_SWAPS.get(type(node.op))
        if swap is not None:
            out.append(("binop", ast.unparse(ast.BinOp(node.left, swap(), node.right))))
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call | ast.Await):
        out.append(("remove-call", "pass"))
    elif isinstance(node, ast.Return) and not (
        node.value is None or (isinstance(node.value, ast.Constant) and node.value.value is None)
    ):
        out.append(("return-none", "return None"))
    return out


def mutants_of(path: Path) -> list[Mutant]:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    skip = _skipped(tree)
    found: list[Mutant] = []
    for node in ast.walk(tree):
        if id(node) in skip or not hasattr(node, "lineno"):
            continue
        if node.lineno != node.end_lineno and not isinstance(node, ast.Expr | ast.Return):
            continue  # keep replacements on one line (and readable in the report)
        segment = ast.get_source_segment(source, node)
        if segment is None:
            continue
        for kind, after in _replacement(node):
            found.append(
                Mutant(
                    str(path.relative_to(ROOT)),
                    node.lineno,
                    kind,
                    segment.splitlines()[0][:90],
                    after[:90],
                    (node.lineno, node.col_offset),
                    (node.end_lineno or node.lineno, node.end_col_offset or 0),
                )
            )
    return found


def _apply(source: str, mutant: Mutant, after: str) -> str:
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode("utf-8")))
    raw = source.encode("utf-8")
    start = offsets[mutant.start[0] - 1] + mutant.start[1]
    end = offsets[mutant.end[0] - 1] + mutant.end[1]
    return (raw[:start] + after.encode("utf-8") + raw[end:]).decode("utf-8")


def _run(tests: list[str], timeout: float) -> str:
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return "killed (timeout)"
    return "survived" if done.returncode == 0 else "killed"


def run(mutant: Mutant, tests: tuple[str, ...], timeout: float) -> None:
    path = ROOT / mutant.path
    original = path.read_bytes()
    source = original.decode("utf-8")
    mutated = _apply(source, mutant, mutant.after)
    try:
        ast.parse(mutated)
    except SyntaxError:
        mutant.outcome = "invalid"
        return
    started = time.monotonic()
    try:
        path.write_text(mutated, encoding="utf-8")
        old = [t for t in tests if t not in NEW_TESTS]
        new = [t for t in tests if t in NEW_TESTS]
        outcome = _run(old, timeout)
        if outcome == "survived" and new:
            outcome = "killed only by new tests" if _run(new, timeout) != "survived" else outcome
        mutant.outcome = outcome
    finally:
        path.write_bytes(original)
        mutant.seconds = round(time.monotonic() - started, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=30, help="mutants per target (0: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per test run")
    parser.add_argument("--target", action="append", help="only these targets")
    parser.add_argument("--list", action="store_true", help="count the mutants and stop")
    parser.add_argument("--out", type=Path, default=Path("/tmp/layoutsync-mutation.json"))
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the file under test is always put back.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rng = random.Random(args.seed)
    results: list[Mutant] = []
    for target, tests in TARGETS.items():
        if args.target and target not in args.target:
            continue
        base = ROOT / target
        files = sorted(base.rglob("*.py")) if base.is_dir() else [base]
        every = [m for f in files for m in mutants_of(f)]
        chosen = every if args.sample == 0 else rng.sample(every, min(args.sample, len(every)))
        print(f"{target}: {len(every)} mutants, running {len(chosen)}", flush=True)
        if args.list:
            continue
        for mutant in chosen:
            run(mutant, tests, args.timeout)
            results.append(mutant)
            print(
                f"  {mutant.outcome:26} {mutant.path}:{mutant.line} {mutant.kind}: "
                f"{mutant.before!r} -> {mutant.after!r} ({mutant.seconds}s)",
                flush=True,
            )
            args.out.write_text(json.dumps([asdict(m) for m in results], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
