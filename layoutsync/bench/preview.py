"""Drawing cost: a 36-host contact sheet, and one layout as the dashboard asks for it.

Goal (issue 12): a 36-host sheet (36 panels, the last holding 36 tiles) is drawn well under
a second, as SVG and as PNG. The baseline measured in the same run is compiling the 36
layouts the sheet shows (with validation, as ``contact_sheet`` does), so the ratio says
what drawing adds to what the sheet has to compute anyway.
"""

from __future__ import annotations

import time

from ..preview import compile_for_preview, contact_sheet, layout_picture
from ..spec import load_spec
from . import BenchOptions, Figure, measure
from .compile import GRID_16

__all__ = ["GRID_36", "run"]

#: The compile benchmark's grid, made to show 36 hosts: 212x120 tiles on 1280x720, no gap.
GRID_36 = {
    **GRID_16,
    "instanceId": "bench-grid-36",
    "layout": {"template": "grid", "gap": 0, "padding": 0, "maxTiles": 36},
}

HOSTS = 36


def run(options: BenchOptions) -> list[Figure]:
    spec = load_spec(GRID_36)
    budget, rounds = (0.5, 3) if options.quick else (3.0, 7)

    def compile_all() -> object:
        previous = None
        for count in range(1, HOSTS + 1):
            previous = compile_for_preview(spec, range(101, 101 + count), None, previous)
        return previous

    start = time.perf_counter()
    first = contact_sheet(spec, HOSTS).svg()
    cold = time.perf_counter() - start
    assert first.count('class="region"') == HOSTS * (HOSTS + 1) // 2

    baseline = measure(compile_all, budget=budget, rounds=rounds)
    svg = measure(lambda: contact_sheet(spec, HOSTS).svg(), budget=budget, rounds=rounds)
    sheet = contact_sheet(spec, HOSTS)
    png_only = measure(sheet.png, budget=budget, rounds=rounds)
    png = svg - measure(sheet.svg, budget=budget, rounds=rounds) + png_only
    compiled = compile_for_preview(spec, range(101, 101 + 16))
    one = measure(
        lambda: layout_picture(compiled, max_width=640).png(), budget=budget, rounds=rounds
    )
    return [
        Figure(
            "preview",
            "sheet_36_svg_seconds",
            svg,
            "s",
            "<= 1 s",
            svg <= 1.0,
            {"first_call_s": round(cold, 4), "vs_compiling_its_layouts": round(svg / baseline, 2)},
        ),
        Figure(
            "preview",
            "sheet_36_png_seconds",
            png,
            "s",
            "<= 1 s",
            png <= 1.0,
            {
                "pixels": f"{sheet.width}x{sheet.height}",
                "vs_compiling_its_layouts": round(png / baseline, 2),
            },
        ),
        Figure("preview", "compile_36_layouts_seconds", baseline, "s"),
        Figure("preview", "dashboard_png_16_hosts_ms", one * 1000, "ms"),
    ]
