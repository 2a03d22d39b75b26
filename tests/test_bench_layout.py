"""``layoutsync bench layout``: its goals hold, and the CLI runs it."""

from __future__ import annotations

import pytest

from layoutsync.bench import BenchOptions, discover
from layoutsync.bench.layout import run
from layoutsync.cli import main


def test_every_goal_of_the_layout_bench_holds() -> None:
    figures = {figure.name: figure for figure in run(BenchOptions(quick=True))}
    grow = figures["coverage_vs_opentok[grow]"]
    assert grow.ok and grow.value >= 1.0 and float(grow.details["min"]) >= 0.99
    assert figures["illegal_regions_opentok"].value > 0  # opentok's, next to our 0
    assert figures["illegal_regions_opentok"].details["layoutsync_illegal"] == 0
    strict = figures["region_moves_per_event[start,stable]"]
    assert strict.ok and strict.details["same_shape_join_max"] == 0
    assert strict.details["same_shape_leave_max"] <= 1
    for last_row in ("balanced", "center", "start"):
        stable = figures[f"region_moves_per_event[{last_row},stable]"]
        ordered = figures[f"region_moves_per_event[{last_row},ordered]"]
        assert stable.value < ordered.value
    assert figures["capacity[1280x720,gap=0]"].value == 36


def test_it_is_part_of_layoutsync_bench(capsys: pytest.CaptureFixture[str]) -> None:
    assert "layout" in dict(discover())
    assert main(["bench", "layout", "--quick"]) == 0
    assert "ok   layout.coverage_vs_opentok[grow]" in capsys.readouterr().out
