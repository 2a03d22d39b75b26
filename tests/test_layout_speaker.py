"""The speaker template: centred strips, exact gaps, a main tile that takes the rest."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layoutsync.compile import compile_layout
from layoutsync.layout import DOMINANCE, FILL_RANGE, Rect, inner_area, parse_aspect, speaker_frames
from layoutsync.spec import load_spec

EXAMPLE = json.loads((Path(__file__).parent.parent / "examples" / "speaker.json").read_text())


def example(**layout: Any) -> list[Rect]:
    """examples/speaker.json (gap 8, padding 8, aspect fill, 5 strip tiles) with 3 hosts."""
    doc = json.loads(json.dumps(EXAMPLE))
    doc["layout"].update(layout)
    compiled = compile_layout(load_spec(doc), [101, 102, 103])
    return [p.rect for p in compiled.placements]


class TestTheIssueCases:
    def test_a_bottom_strip_is_centred(self) -> None:
        _main, a, b = example()
        assert (a.y, b.y) == (538, 538) and b.x - a.right == 8
        assert a.x - 8 == 1272 - b.right  # as much room on the left as on the right

    def test_a_left_strip_is_centred(self) -> None:
        _main, a, b = example(position="left")
        assert (a.x, b.x) == (8, 8) and b.y - a.bottom == 8
        assert a.y - 8 == 712 - b.bottom

    def test_a_right_strip_under_fill_leaves_no_dead_column(self) -> None:
        main, a, _b = example(position="right")
        assert a.x - main.right == 8  # exactly the gap, not 46 + 8 + 46
        assert main == Rect(8, 8, 1018, 704) and a.right == 1272

    @pytest.mark.parametrize("position", ["top", "bottom"])
    def test_a_top_or_bottom_strip_under_fill_has_no_side_bars(self, position: str) -> None:
        main, a, _ = example(position=position)
        assert (main.x, main.width) == (8, 1264)  # was 16:9 with 176 px bars each side
        gap = a.y - main.bottom if position == "bottom" else main.y - a.bottom
        assert gap == 8

    def test_a_fixed_aspect_main_tile_and_strip_are_centred_together(self) -> None:
        main, a, _ = example(position="bottom", aspect="16:9")
        assert a.y - main.bottom == 8
        assert main.y - 8 == 712 - a.bottom  # the group is centred across


class TestFrames:
    @pytest.mark.parametrize("position", ["left", "right", "top", "bottom"])
    @pytest.mark.parametrize("aspect", ["16:9", "fill", "4:3"])
    def test_every_count_is_centred_and_apart_by_the_gap(self, position: str, aspect: str) -> None:
        area = inner_area(1280, 720, 16)
        frames = speaker_frames(area, 8, parse_aspect(aspect), position, (1, 4), 4)
        vertical = position in ("left", "right")
        for count in range(1, 5):
            strip = frames.strip_for(count)
            assert len(strip) == count
            lead = strip[0].y - area.y if vertical else strip[0].x - area.x
            tail = area.bottom - strip[-1].bottom if vertical else area.right - strip[-1].right
            assert abs(lead - tail) <= 2
            for one, two in itertools.pairwise(strip):
                assert (two.y - one.bottom if vertical else two.x - one.right) == 8
            for tile in strip:
                assert not tile.overlaps(frames.main)
        first = frames.strip[0]
        between = {
            "left": frames.main.x - first.right,
            "right": first.x - frames.main.right,
            "top": frames.main.y - first.bottom,
            "bottom": first.y - frames.main.bottom,
        }[position]
        assert between == 8

    def test_fill_gives_the_main_tile_every_pixel_the_strip_does_not_use(self) -> None:
        area = Rect(0, 0, 1280, 720)
        frames = speaker_frames(area, 8, FILL_RANGE, "right", (1, 4), 4)
        tile = frames.strip[0]
        assert frames.main.width + 8 + tile.width == 1280 and frames.main.height == 720

    def test_alone_takes_the_whole_area(self) -> None:
        frames = speaker_frames(Rect(0, 0, 1280, 720), 0, parse_aspect("16:9"), "right", (1, 4), 4)
        assert frames.alone == Rect(0, 0, 1280, 720)

    @settings(max_examples=60, deadline=None)
    @given(
        position=st.sampled_from(["left", "right", "top", "bottom"]),
        aspect=st.sampled_from(["16:9", "fill", "1:1", "4:3"]),
        tiles=st.integers(1, 8),
        fraction=st.sampled_from([(1, 20), (1, 4), (1, 3), (1, 2)]),
        width=st.integers(640, 3840),
        height=st.integers(360, 2160),
    )
    def test_the_speaker_stays_clearly_dominant(
        self,
        position: str,
        aspect: str,
        tiles: int,
        fraction: tuple[int, int],
        width: int,
        height: int,
    ) -> None:
        frames = speaker_frames(
            inner_area(width, height, 8), 8, parse_aspect(aspect), position, fraction, tiles
        )
        tile = frames.strip[0]
        if min(tile.width, tile.height) >= 120:
            assert frames.main.area >= DOMINANCE * tile.area
