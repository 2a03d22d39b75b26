"""The floating template: overlays from a corner, or a centred strip along an edge."""

from __future__ import annotations

import itertools

import pytest

from layoutsync.layout import Rect, floating_frames


class TestFloatingFrames:
    @pytest.mark.parametrize(
        ("corner", "expected"),
        [
            ("bottom-left", Rect(16, 560, 256, 144)),
            ("bottom-right", Rect(1008, 560, 256, 144)),
            ("top-left", Rect(16, 16, 256, 144)),
            ("top-right", Rect(1008, 16, 256, 144)),
        ],
    )
    def test_first_overlay_sits_in_the_corner(self, corner: str, expected: Rect) -> None:
        frames = floating_frames(1280, 720, 0, 8, corner, (256, 144), 16, 4, 4)
        assert frames.main == Rect(0, 0, 1280, 720)
        assert frames.overlays[0] == expected

    def test_rows_grow_away_from_the_corner_and_are_capped_by_the_canvas(self) -> None:
        frames = floating_frames(1280, 720, 0, 8, "bottom-left", (256, 144), 16, 4, 9)
        assert len(frames.overlays) == 4 * 4  # 4 rows fit in 720 - 32
        assert frames.overlays[4].y < frames.overlays[0].y
        for a, b in itertools.combinations(frames.overlays, 2):
            assert not a.overlaps(b)

    def test_a_join_moves_no_overlay(self) -> None:
        frames = floating_frames(1280, 720, 0, 8, "bottom-left", (256, 144), 16, 4, 4)
        for count in range(1, len(frames.overlays)):
            assert frames.overlays_for(count + 1)[:count] == frames.overlays_for(count)


class TestEdges:
    def test_a_bottom_strip_is_centred_and_its_short_row_too(self) -> None:
        frames = floating_frames(1280, 720, 0, 8, "bottom", (256, 144), 24, 4, 2)
        two = frames.overlays_for(2)
        assert two[0].x - 24 == 1280 - 24 - two[1].right and two[0].y == 720 - 24 - 144
        five = frames.overlays_for(5)
        assert [t.y for t in five] == [552] * 4 + [400]
        assert five[4].x == (1280 - 256) // 2

    def test_a_right_strip_runs_down_the_side(self) -> None:
        frames = floating_frames(1280, 720, 0, 8, "right", (256, 144), 24, 2, 3)
        three = frames.overlays_for(3)
        assert {t.right for t in three} == {1280 - 24}
        assert three[0].y - 24 == 720 - 24 - three[-1].bottom
        assert len(frames.overlays) == 6  # 3 down each of 2 lines

    @pytest.mark.parametrize("edge", ["top", "bottom", "left", "right"])
    def test_overlays_never_cover_each_other(self, edge: str) -> None:
        frames = floating_frames(1920, 1080, 0, 12, edge, (320, 180), 24, 4, 3)
        for count in range(len(frames.overlays) + 1):
            cells = frames.overlays_for(count)
            assert len(cells) == count
            for a, b in itertools.combinations(cells, 2):
                assert not a.overlaps(b)
            assert all(c.inside(1920, 1080) for c in cells)
