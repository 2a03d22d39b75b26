"""The custom template: edges rounded once, and what a slot of an absent host shows."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from layoutsync.compile import compile_layout
from layoutsync.errors import SpecError
from layoutsync.layout import Rect, slot_rect
from layoutsync.spec import load_spec

EXAMPLE = json.loads((Path(__file__).parent.parent / "examples" / "custom.json").read_text())


def example(**layout: Any) -> Any:
    doc = json.loads(json.dumps(EXAMPLE))
    doc["layout"].update(layout)
    return load_spec(doc)


def regions(hosts: list[int], **layout: Any) -> dict[int, Rect]:
    compiled = compile_layout(example(**layout), hosts)
    return {p.uid: p.rect for p in compiled.placements}


class TestEdges:
    def test_the_right_column_has_no_seam_and_reaches_the_bottom(self) -> None:
        placed = regions([101, 102, 103, 104, 105])
        column = sorted((r for r in placed.values() if r.x == 960), key=lambda r: r.y)
        assert [(r.y, r.bottom) for r in column] == [
            (0, 240),
            (240, 480),
            (480, 720),
        ]  # was 476|478
        assert {r.right for r in column} == {1280}
        assert placed[102] == Rect(0, 0, 960, 720)  # the speaker slot touches the column

    def test_rounding_is_per_edge(self) -> None:
        third = Fraction("0.3333")
        assert slot_rect(Fraction(0), third * 720, Fraction(320), third * 720, (1280, 720)) == Rect(
            0, 240, 320, 240
        )

    def test_an_edge_never_passes_an_odd_canvas(self) -> None:
        assert slot_rect(
            Fraction(0), Fraction(0), Fraction(1281), Fraction(721), (1281, 721)
        ) == Rect(0, 0, 1280, 720)

    def test_px_slots_round_their_edges_too(self) -> None:
        spec = example(
            units="px",
            slots=[
                {"x": 0, "y": 0, "width": 641, "height": 361},
                {"x": 641, "y": 0, "width": 639, "height": 361},
            ],
        )
        left, right = (slot.rect for slot in spec.layout.slots)
        assert left.right == right.x == 640 and right.right == 1280

    def test_a_slot_past_the_canvas_is_a_spec_error(self) -> None:
        with pytest.raises(SpecError, match="beyond the canvas width"):
            example(slots=[{"x": 0.5, "y": 0, "width": 0.6, "height": 1}])


class TestEmptySlot:
    def test_by_default_the_next_host_stands_in_for_an_absent_one(self) -> None:
        placed = regions([102, 103])
        assert placed[103] == Rect(960, 0, 320, 240)  # 101's cell, not the middle one

    def test_the_bound_host_takes_its_slot_back(self) -> None:
        spec = example()
        first = compile_layout(spec, [102, 103])
        back = compile_layout(spec, [102, 103, 101], previous=first)
        rects = {p.uid: p.rect for p in back.placements}
        assert rects[101] == Rect(960, 0, 320, 240) and rects[103] == Rect(960, 240, 320, 240)

    def test_blank_keeps_the_slot_for_its_host(self) -> None:
        placed = regions([102, 103], emptySlot="blank")
        assert placed[103] == Rect(960, 240, 320, 240)  # 101's cell stays empty

    def test_empty_slot_belongs_to_custom_only(self) -> None:
        doc = json.loads(json.dumps(EXAMPLE))
        doc["layout"] = {"template": "grid", "emptySlot": "next"}
        with pytest.raises(SpecError, match="applies only to template 'custom'"):
            load_spec(doc)
