"""Pure geometry: opentok's best fit (golden vectors), then our even-pixel, 120 px layer."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layoutsync.geometry import (
    FILL_RANGE,
    MIN_TILE,
    Box,
    Rect,
    best_fit,
    even,
    fit,
    floating_frames,
    grid_capacity,
    grid_shape,
    grid_tiles,
    inner_area,
    parse_aspect,
    speaker_frames,
)

WIDE = parse_aspect("16:9")


def _lefts(boxes: tuple[Box, ...]) -> list[float]:
    return [b.left for b in boxes]


class TestBestFitGoldenVectors:
    """The vectors of opentok-layout-js ``tests/unit/opentok-layout-spec.js``."""

    def test_two_tiles_in_400x300_sit_side_by_side(self) -> None:
        assert best_fit(2, 400, 300) == (Box(0, 0, 200, 300), Box(200, 0, 200, 300))

    def test_five_tiles_in_400x300_centre_the_short_row_with_fractional_lefts(self) -> None:
        boxes = best_fit(5, 400, 300)
        assert {(b.width, b.height) for b in boxes} == {(133, 150)}
        assert _lefts(boxes) == [0.5, 133.5, 266.5, 67, 200]
        assert [b.top for b in boxes] == [0, 0, 0, 150, 150]

    def test_four_tiles_capped_at_400x300_make_two_rows_of_two(self) -> None:
        boxes = best_fit(4, 1280, 720, max_width=400, max_height=300)
        assert [(b.left, b.top) for b in boxes] == [(240, 60), (640, 60), (240, 360), (640, 360)]
        assert {(b.width, b.height) for b in boxes} == {(400, 300)}

    def test_without_even_rows_the_tie_goes_to_more_columns(self) -> None:
        boxes = best_fit(4, 1280, 720, max_width=400, max_height=300, even_rows=False)
        assert [b.top for b in boxes] == [60, 60, 60, 360]  # 3 + 1
        assert _lefts(boxes) == [40, 440, 840, 440]

    def test_fixed_ratio_sets_both_bounds(self) -> None:
        boxes = best_fit(1, 400, 300, fixed_ratio=9 / 16)
        assert (boxes[0].width, boxes[0].height) == (400, 225)
        assert boxes[0].top == 37.5

    def test_scale_last_row_gives_leftover_height_to_the_short_row(self) -> None:
        plain = best_fit(4, 1280, 720, max_width=400, max_height=300, even_rows=False)
        scaled = best_fit(
            4, 1280, 720, max_width=400, max_height=300, even_rows=False, scale_last_row=True
        )
        assert {(b.width, b.height) for b in plain} == {(400, 300)}
        # Both rows are narrower than the box: the first grows until it is 1280 wide
        # (aspect kept), the rest of the leftover 120 px goes to the last row.
        assert sum(b.width for b in scaled[:3]) == pytest.approx(1280)
        assert scaled[0].height == pytest.approx(320)
        assert (scaled[3].width, scaled[3].height) == (pytest.approx(1600 / 3), pytest.approx(400))
        assert scaled[0].top == 0 and scaled[3].top == pytest.approx(320)  # 320 + 400 = 720

    def test_zero_tiles_is_empty(self) -> None:
        assert best_fit(0, 400, 300) == ()


class TestEvenRounding:
    def test_even_floors_to_an_even_integer(self) -> None:
        assert [even(n) for n in (0, 1, 2, 3, 119, 120, 121)] == [0, 0, 2, 2, 118, 120, 120]
        assert even(1280, 6) == 212  # 213.33 -> 212

    def test_fit_keeps_the_ratio_exactly_before_rounding(self) -> None:
        # 1280/6 x 720/6 is exactly 16:9: no float error may push the height to 118.
        assert fit(WIDE, 1280, 6, 720, 6) == (212, 120)

    def test_fit_shrinks_the_long_side(self) -> None:
        assert fit(WIDE, 1000, 1, 1000, 1) == (1000, 562)  # too tall: loses height
        assert fit(WIDE, 2000, 1, 360, 1) == (640, 360)  # too wide: loses width

    def test_fill_takes_any_shape_between_16_9_and_2_3(self) -> None:
        assert fit(FILL_RANGE, 600, 1, 600, 1) == (600, 600)
        assert fit(FILL_RANGE, 200, 1, 600, 1) == (200, 300)

    @pytest.mark.parametrize("text", ["16:0", "a:b", "16", "-4:3", "0:1"])
    def test_bad_aspects_raise(self, text: str) -> None:
        with pytest.raises(ValueError):
            parse_aspect(text)

    def test_aspects_are_reduced(self) -> None:
        assert parse_aspect("32:18").lo == (9, 16)

    def test_inner_area_has_even_bounds(self) -> None:
        assert inner_area(1281, 721, 7) == Rect(6, 6, 1268, 708)


class TestGridLayer:
    def test_capacity_reaches_36_tiles_of_212x120_on_1280x720(self) -> None:
        assert grid_capacity(1280, 720, 0, WIDE) == 36
        shape = grid_shape(36, 1280, 720, 0, WIDE)
        assert shape is not None
        assert (shape.cols, shape.rows, shape.tile_width, shape.tile_height) == (6, 6, 212, 120)
        assert grid_shape(37, 1280, 720, 0, WIDE) is None

    def test_capacity_of_640x360_is_nine(self) -> None:
        assert grid_capacity(640, 360, 0, WIDE) == 9

    def test_gaps_lower_the_capacity(self) -> None:
        assert grid_capacity(1280, 720, 8, WIDE) < 36

    def test_three_tiles_make_two_rows_with_the_last_centred(self) -> None:
        tiles = grid_tiles(3, Rect(0, 0, 1280, 720), 0, WIDE)
        assert tiles == (
            Rect(0, 0, 640, 360),
            Rect(640, 0, 640, 360),
            Rect(320, 360, 640, 360),
        )

    def test_gap_and_padding_are_subtracted_first(self) -> None:
        tiles = grid_tiles(4, inner_area(1280, 720, 16), 8, WIDE)
        assert tiles[0].x >= 16 and tiles[0].y >= 16
        assert tiles[1].x - tiles[0].right == 8
        assert tiles[2].y - tiles[0].bottom == 8

    def test_no_arrangement_below_the_floor(self) -> None:
        assert grid_tiles(2, Rect(0, 0, 200, 120), 0, WIDE) == ()

    @settings(max_examples=200, deadline=None)
    @given(
        w=st.integers(120, 3840),
        h=st.integers(120, 3840),
        gap=st.integers(0, 64),
        aspect=st.sampled_from(["16:9", "4:3", "1:1", "9:16", "fill"]),
        data=st.data(),
    )
    def test_tiles_are_even_inside_apart_and_at_least_120(
        self, w: int, h: int, gap: int, aspect: str, data: st.DataObject
    ) -> None:
        shape_aspect = parse_aspect(aspect)
        area = inner_area(w, h, 0)
        capacity = grid_capacity(area.width, area.height, gap, shape_aspect)
        if capacity == 0:
            return
        count = data.draw(st.integers(1, min(capacity, 60)))
        tiles = grid_tiles(count, area, gap, shape_aspect)
        assert len(tiles) == count
        for tile in tiles:
            assert all(v % 2 == 0 for v in (tile.x, tile.y, tile.width, tile.height))
            assert tile.width >= MIN_TILE and tile.height >= MIN_TILE
            assert tile.inside(w, h)
        for a, b in itertools.combinations(tiles, 2):
            assert not a.overlaps(b)


class TestSpeakerFrames:
    @pytest.mark.parametrize("position", ["left", "right", "top", "bottom"])
    def test_strip_sits_on_its_side_and_never_overlaps_the_main_tile(self, position: str) -> None:
        area = inner_area(1280, 720, 16)
        frames = speaker_frames(area, 8, WIDE, position, (1, 4), 4)
        assert len(frames.strip) == 4
        for tile in frames.strip:
            assert not tile.overlaps(frames.main)
            assert tile.inside(1280, 720)
        first = frames.strip[0]
        side = {
            "left": first.right <= frames.main.x,
            "right": first.x >= frames.main.right,
            "top": first.bottom <= frames.main.y,
            "bottom": first.y >= frames.main.bottom,
        }
        assert side[position]
        for a, b in itertools.combinations(frames.strip, 2):
            assert not a.overlaps(b)

    def test_alone_takes_the_whole_area(self) -> None:
        frames = speaker_frames(Rect(0, 0, 1280, 720), 0, WIDE, "right", (1, 4), 4)
        assert frames.alone == Rect(0, 0, 1280, 720)


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
