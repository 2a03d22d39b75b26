"""Benchmarks run by ``layoutsync bench``.

Every module in this package (not starting with ``_``) defines
``run(options: BenchOptions) -> list[Figure]``. A figure is a ratio against
a baseline measured in the same run, so shared machines do not make it flaky,
or an absolute figure with its goal stated beside it.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import logging
import pkgutil
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import structlog

__all__ = [
    "BenchOptions",
    "Figure",
    "describe",
    "discover",
    "measure",
    "median_seconds",
    "quiet_logs",
]


@dataclass(frozen=True, slots=True)
class BenchOptions:
    quick: bool = False  #: fewer rounds, for CI smoke runs


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure; ``ok`` is None when there is no goal to meet.

    ``machine`` marks a figure that measures the machine more than layoutsync (an
    absolute rate or time, not a ratio against a baseline of the same run): a miss
    is reported but fails ``layoutsync bench`` only with ``--strict``.
    """

    bench: str
    name: str
    value: float
    unit: str
    goal: str = ""
    ok: bool | None = None
    details: dict[str, float | int | str] = field(default_factory=dict)
    machine: bool = False


def median_seconds(fn: Callable[[], object], *, rounds: int, inner: int = 1) -> float:
    """Median wall time of one call of ``fn`` over ``rounds`` samples of ``inner`` calls."""
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - start) / inner)
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(samples)


def measure(fn: Callable[[], object], *, budget: float = 0.3, rounds: int = 15) -> float:
    """Median seconds per call, picking an inner loop count that fills ``budget``."""
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    inner = max(1, int(budget / rounds / once))
    return median_seconds(fn, rounds=rounds, inner=inner)


@contextlib.contextmanager
def quiet_logs(level: int = logging.WARNING) -> Iterator[None]:
    """Drop log events below ``level`` while measuring (as the CLI and daemon would), and put
    structlog's configuration back after."""
    configured = structlog.is_configured()
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
    try:
        yield
    finally:
        if configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


def discover() -> Iterable[tuple[str, Callable[[BenchOptions], list[Figure]]]]:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            yield module.name, importlib.import_module(f"{__name__}.{module.name}").run


def describe() -> list[tuple[str, str]]:
    """(name, first docstring line) of every benchmark, read without importing them."""
    import ast

    found = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        spec = importlib.util.find_spec(f"{__name__}.{module.name}")
        doc = ""
        if spec is not None and spec.origin:
            with open(spec.origin, encoding="utf-8") as source:
                doc = ast.get_docstring(ast.parse(source.read())) or ""
        found.append((module.name, doc.split("\n", 1)[0].strip()))
    return found
