"""Layout quality, measured: coverage against opentok-layout-js, legality, region moves.

Figures (issue 11), every one measured in the same run:

- ``coverage_vs_opentok``: over five canvases and n = 1..min(36, capacity) hosts,
  layoutsync's grid coverage (tile area / canvas area, 16:9, no gap or padding)
  over the coverage of ``layoutsync.layout.opentok.best_fit`` (opentok's
  getLayout with its defaults: scaleLastRow on, fixedRatio 16:9). Mean and
  minimum, with ``lastRow: grow`` (goal: mean >= 1.00, min >= 0.99) and with
  the default.
- ``illegal_regions_opentok``: how many of those opentok layouts the service
  would reject (a tile under 120 px, fractional, or off the canvas), beside
  layoutsync's count (0).
- ``region_moves_per_event``: on the reference churn trace, regions whose x, y,
  width or height changed for hosts visible before and after, per event, for
  every ``lastRow`` x ``stability``; and on the events that keep the grid
  shape, with ``start`` + ``stable`` at most 1 (0 on a join).
- ``capacity``: the most 16:9 tiles per canvas at the 120 px floor.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..compile import Compiled, compile_layout
from ..layout import LAST_ROWS, Rect, grid_capacity, grid_shape, grid_tiles, parse_aspect
from ..layout.opentok import best_fit, coverage, illegal
from ..spec import LayoutSpec, load_spec
from . import BenchOptions, Figure

__all__ = [
    "CANVASES",
    "GRID_TRACE_LAYOUT",
    "churn_trace",
    "coverage_table",
    "grid_spec",
    "region_moves",
    "replay",
    "run",
]

#: The canvases of issue 11's coverage figures.
CANVASES: tuple[tuple[int, int], ...] = (
    (1280, 720),
    (1920, 1080),
    (720, 1280),
    (640, 360),
    (1080, 1080),
)
#: The grid the reference churn trace is replayed on (the README's example grid).
GRID_TRACE_LAYOUT: Mapping[str, Any] = {"template": "grid", "gap": 8, "padding": 16}
_WIDE = parse_aspect("16:9")


def churn_trace(seed: int = 3, events: int = 60) -> list[tuple[str, int]]:
    """The reference trace: joins, leaves, rejoins and speaker changes, never empty."""
    rng = random.Random(seed)
    present: list[int] = []
    gone: list[int] = []
    next_uid = 100
    trace: list[tuple[str, int]] = []
    while len(trace) < events:
        roll = rng.random()
        if not present or (roll < 0.35 and len(present) < 12):
            next_uid += 1
            trace.append(("join", next_uid))
            present.append(next_uid)
        elif roll < 0.6 and len(present) > 1:
            uid = rng.choice(present)
            trace.append(("leave", uid))
            present.remove(uid)
            gone.append(uid)
        elif roll < 0.75 and gone:
            uid = gone.pop(rng.randrange(len(gone)))
            trace.append(("rejoin", uid))
            present.append(uid)
        else:
            trace.append(("speaker", rng.choice(present)))
    return trace


def grid_spec(width: int = 1280, height: int = 720, **layout: Any) -> LayoutSpec:
    """A grid spec on a canvas (tokens are literals: nothing to resolve)."""
    return load_spec(
        {
            "instanceId": "bench-layout",
            "input": {"channel": "bench", "token": "in"},
            "output": {
                "channel": "bench-live",
                "uid": 9000,
                "token": "out",
                "video": {"width": width, "height": height},
            },
            "placeholderImage": "https://cdn.example.com/offline.png",
            "layout": {"template": "grid", **layout},
        }
    )


def region_moves(before: Compiled, after: Compiled) -> int:
    """Hosts visible before and after whose region (x, y, width or height) changed."""
    old = {p.uid: p.rect for p in before.placements}
    return sum(1 for p in after.placements if p.uid in old and old[p.uid] != p.rect)


@dataclass(frozen=True, slots=True)
class Step:
    kind: str
    before: Compiled
    after: Compiled

    @property
    def moves(self) -> int:
        return region_moves(self.before, self.after)


def replay(
    spec: LayoutSpec, trace: Sequence[tuple[str, int]], *, env: Mapping[str, str] | None = None
) -> Iterator[Step]:
    """Compile after every event, each compile getting the previous one as ``previous``."""
    hosts: list[int] = []
    speaker: int | None = None
    previous = compile_layout(spec, hosts, env=env)
    for kind, uid in trace:
        if kind in ("join", "rejoin"):
            hosts.append(uid)
        elif kind == "leave":
            hosts.remove(uid)
        else:
            speaker = uid
        current = compile_layout(
            spec, hosts, speaker if speaker in hosts else None, previous, env=env
        )
        yield Step(kind, previous, current)
        previous = current


def _same_shape(spec: LayoutSpec, step: Step) -> bool:
    """The event kept the grid's best-fit shape (columns, rows, tile size)."""
    area, layout = spec.area, spec.layout

    def shape(compiled: Compiled) -> object:
        return grid_shape(len(compiled.visible), area.width, area.height, layout.gap, layout.aspect)

    return bool(step.before.visible) and shape(step.before) == shape(step.after)


def _coverage(tiles: Sequence[Rect], width: int, height: int) -> float:
    return sum(t.width * t.height for t in tiles) / (width * height)


def coverage_table(last_row: str) -> list[tuple[int, int, int, float, float]]:
    """(width, height, n, layoutsync coverage, opentok coverage) over ``CANVASES``."""
    rows = []
    for width, height in CANVASES:
        area = Rect(0, 0, width, height)
        for n in range(1, min(36, grid_capacity(width, height, 0, _WIDE)) + 1):
            ours = _coverage(grid_tiles(n, area, 0, _WIDE, last_row), width, height)
            theirs = coverage(
                best_fit(n, width, height, fixed_ratio=9 / 16, scale_last_row=True), width, height
            )
            rows.append((width, height, n, ours, theirs))
    return rows


def _coverage_figure(last_row: str, goal: bool) -> Figure:
    table = coverage_table(last_row)
    ratios = [ours / theirs for *_, ours, theirs in table]
    worst = min(range(len(table)), key=ratios.__getitem__)
    mean, low = statistics.fmean(ratios), ratios[worst]
    w, h, n, *_ = table[worst]
    return Figure(
        bench="layout",
        name=f"coverage_vs_opentok[{last_row}]",
        value=round(mean, 4),
        unit="x (mean)",
        goal=">= 1.00 mean, >= 0.99 min" if goal else "",
        ok=(mean >= 1.0 and low >= 0.99) if goal else None,
        details={"min": round(low, 4), "min_at": f"{w}x{h} n={n}", "cases": len(table)},
    )


def _illegal_figure() -> Figure:
    theirs = small = ours = cases = 0
    for width, height in CANVASES:
        area = Rect(0, 0, width, height)
        for n in range(1, min(36, grid_capacity(width, height, 0, _WIDE)) + 1):
            cases += 1
            boxes = best_fit(n, width, height, fixed_ratio=9 / 16, scale_last_row=True)
            theirs += illegal(boxes, width, height)

            for last_row in LAST_ROWS:
                tiles = grid_tiles(n, area, 0, _WIDE, last_row)
                ours += any(
                    min(t.width, t.height) < 120 or not t.inside(width, height) for t in tiles
                )
    for width, height in CANVASES:  # and at every count to 36, past layoutsync's capacity
        for n in range(1, 37):
            boxes = best_fit(n, width, height, fixed_ratio=9 / 16, scale_last_row=True)
            small += min(min(b.width, b.height) for b in boxes) < 120
    return Figure(
        bench="layout",
        name="illegal_regions_opentok",
        value=theirs,
        unit=f"of {cases} layouts",
        goal="layoutsync: 0",
        ok=ours == 0,
        details={
            "opentok_under_120px_n1_36": small,
            "layoutsync_illegal": ours,
            "layoutsync_layouts": cases * len(LAST_ROWS),
        },
    )


def _moves_figures() -> list[Figure]:
    trace = churn_trace()
    figures = []
    for last_row in LAST_ROWS:
        for stability in ("stable", "ordered"):
            spec = grid_spec(**GRID_TRACE_LAYOUT, lastRow=last_row, stability=stability)
            steps = list(replay(spec, trace))
            kept = [s for s in steps if _same_shape(spec, s)]
            joins = [s.moves for s in kept if s.kind in ("join", "rejoin")]
            leaves = [s.moves for s in kept if s.kind == "leave"]
            details: dict[str, float | int | str] = {
                "events": len(steps),
                "regions_moved": sum(s.moves for s in steps),
                "same_shape_events": len(kept),
                "same_shape_per_event": round(sum(s.moves for s in kept) / max(1, len(kept)), 2),
                "same_shape_join_max": max(joins, default=0),
                "same_shape_leave_max": max(leaves, default=0),
                "same_shape_join_mean": round(statistics.fmean(joins), 2) if joins else 0,
                "same_shape_leave_mean": round(statistics.fmean(leaves), 2) if leaves else 0,
            }
            strict = last_row == "start" and stability == "stable"
            figures.append(
                Figure(
                    bench="layout",
                    name=f"region_moves_per_event[{last_row},{stability}]",
                    value=round(sum(s.moves for s in steps) / len(steps), 3),
                    unit="regions",
                    goal="same shape: <= 1, join 0" if strict else "",
                    ok=(max((s.moves for s in kept), default=0) <= 1 and max(joins, default=0) == 0)
                    if strict
                    else None,
                    details=details,
                )
            )
    return figures


def _capacity_figures() -> list[Figure]:
    figures = []
    for width, height in CANVASES:
        for gap in (0, 8):
            figures.append(
                Figure(
                    bench="layout",
                    name=f"capacity[{width}x{height},gap={gap}]",
                    value=grid_capacity(width, height, gap, _WIDE),
                    unit="tiles",
                    goal="36" if (width, height, gap) == (1280, 720, 0) else "",
                    ok=grid_capacity(width, height, gap, _WIDE) == 36
                    if (width, height, gap) == (1280, 720, 0)
                    else None,
                )
            )
    return figures


def run(options: BenchOptions) -> list[Figure]:
    """Deterministic figures: ``--quick`` changes nothing (the whole run takes a second)."""
    del options
    return [
        _coverage_figure("grow", goal=True),
        _coverage_figure(grid_spec().layout.last_row, goal=False),
        _illegal_figure(),
        *_moves_figures(),
        *_capacity_figures(),
    ]
