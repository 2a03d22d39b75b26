"""The grid template: best fit, ``lastRow``, aspect-true rounding; issue 11's cases as goldens."""

from __future__ import annotations

import itertools

import pytest
from _sessionkit import spec_doc
from hypothesis import given, settings
from hypothesis import strategies as st

from layoutsync.errors import SpecError
from layoutsync.layout import (
    DEFAULT_LAST_ROW,
    LAST_ROWS,
    MIN_TILE,
    Rect,
    grid_capacity,
    grid_shape,
    grid_tiles,
    inner_area,
    parse_aspect,
    row_lengths,
)
from layoutsync.layout.opentok import best_fit, coverage
from layoutsync.spec import load_spec

WIDE = parse_aspect("16:9")
CANVAS = Rect(0, 0, 1280, 720)
PADDED = inner_area(1280, 720, 16)  # the README grid: gap 8, padding 16


def rows_of(tiles: tuple[Rect, ...]) -> list[int]:
    """Tiles per row, top to bottom."""
    tops: dict[int, int] = {}
    for tile in tiles:
        tops[tile.y] = tops.get(tile.y, 0) + 1
    return [tops[y] for y in sorted(tops)]


def covered(tiles: tuple[Rect, ...], width: int = 1280, height: int = 720) -> float:
    return sum(t.area for t in tiles) / (width * height)


class TestGrow:
    """Coverage (16:9, no gap or padding) at least opentok-layout-js's, less 1% for even pixels."""

    @pytest.mark.parametrize(
        ("count", "before", "opentok"), [(10, 0.625, 1.0), (11, 0.69, 0.833), (17, 0.68, 0.92)]
    )
    def test_the_issue_counts_reach_opentok(
        self, count: int, before: float, opentok: float
    ) -> None:
        assert covered(grid_tiles(count, CANVAS, 0, WIDE, "center")) == pytest.approx(
            before, abs=0.01
        )
        grown = covered(grid_tiles(count, CANVAS, 0, WIDE, "grow"))
        theirs = coverage(
            best_fit(count, 1280, 720, fixed_ratio=9 / 16, scale_last_row=True), 1280, 720
        )
        assert theirs == pytest.approx(opentok, abs=0.001)
        assert grown >= 0.99 * theirs

    def test_ten_hosts_cover_the_canvas(self) -> None:
        tiles = grid_tiles(10, CANVAS, 0, WIDE, "grow")
        assert rows_of(tiles) == [4, 4, 2]
        assert {(t.width, t.height) for t in tiles[8:]} == {(640, 360)}
        assert covered(tiles) == 1.0

    @pytest.mark.parametrize(
        ("width", "height"), [(1280, 720), (1920, 1080), (720, 1280), (640, 360), (1080, 1080)]
    )
    def test_never_below_opentok_at_any_count(self, width: int, height: int) -> None:
        for count in range(1, min(36, grid_capacity(width, height, 0, WIDE)) + 1):
            ours = covered(
                grid_tiles(count, Rect(0, 0, width, height), 0, WIDE, "grow"), width, height
            )
            boxes = best_fit(count, width, height, fixed_ratio=9 / 16, scale_last_row=True)
            assert ours >= 0.99 * coverage(boxes, width, height), count

    def test_five_hosts_lose_the_black_bars(self) -> None:
        centred = grid_tiles(5, PADDED, 8, WIDE, "center")
        assert centred[0].y == 126  # 126 px of black above and below, as in the issue
        grown = grid_tiles(5, PADDED, 8, WIDE, "grow")
        assert rows_of(grown) == [3, 2] and grown[0].y == 66  # 50 px, not 110, inside padding
        assert covered(grown) > 0.75 > 0.51
        assert grown[-1].bottom <= PADDED.bottom and grown[-1].right <= PADDED.right


class TestBalanced:
    @pytest.mark.parametrize(
        ("count", "rows"), [(7, [2, 3, 2]), (13, [3, 4, 3, 3]), (10, [3, 4, 3]), (5, [3, 2])]
    )
    def test_no_lone_tiles_and_the_same_tile_size(self, count: int, rows: list[int]) -> None:
        balanced = grid_tiles(count, PADDED, 8, WIDE, "balanced")
        centred = grid_tiles(count, PADDED, 8, WIDE, "center")
        assert rows_of(balanced) == rows
        assert {(t.width, t.height) for t in balanced} == {(t.width, t.height) for t in centred}

    def test_before_the_issue_the_last_row_was_short(self) -> None:
        assert rows_of(grid_tiles(7, PADDED, 8, WIDE, "center")) == [3, 3, 1]
        assert rows_of(grid_tiles(13, PADDED, 8, WIDE, "center")) == [4, 4, 4, 1]
        assert rows_of(grid_tiles(10, PADDED, 8, WIDE, "center")) == [4, 4, 2]

    def test_row_lengths_differ_by_at_most_one_with_the_longer_in_the_middle(self) -> None:
        for count in range(1, 37):
            shape = grid_shape(count, 1280, 720, 0, WIDE)
            assert shape is not None
            lengths = row_lengths(count, shape, "balanced")
            assert sum(lengths) == count and max(lengths) - min(lengths) <= 1
            assert lengths == lengths[::-1] or lengths[0] <= lengths[1] or len(lengths) == 2

    def test_rows_are_centred(self) -> None:
        tiles = grid_tiles(7, PADDED, 8, WIDE, "balanced")
        for row in ([tiles[0], tiles[1]], tiles[2:5], tiles[5:]):
            assert abs((row[0].x - PADDED.x) - (PADDED.right - row[-1].right)) <= 2  # even offsets

    def test_is_the_default(self) -> None:
        assert DEFAULT_LAST_ROW == "balanced"


class TestStartAndCenter:
    def test_start_aligns_the_short_row_with_the_full_rows(self) -> None:
        tiles = grid_tiles(7, PADDED, 8, WIDE, "start")
        assert rows_of(tiles) == [3, 3, 1] and tiles[6].x == tiles[0].x

    def test_start_keeps_every_region_on_a_join_into_the_last_row(self) -> None:
        seven, eight = (grid_tiles(n, PADDED, 8, WIDE, "start") for n in (7, 8))
        assert eight[:7] == seven

    def test_center_centres_the_short_row(self) -> None:
        tiles = grid_tiles(3, CANVAS, 0, WIDE, "center")
        assert tiles == (Rect(0, 0, 640, 360), Rect(640, 0, 640, 360), Rect(320, 360, 640, 360))


class TestAspectTrueRounding:
    @pytest.mark.parametrize("count", [22, 28])
    def test_1080x1080_keeps_16_9(self, count: int) -> None:
        tiles = grid_tiles(count, Rect(0, 0, 1080, 1080), 0, WIDE, "center")
        assert {(t.width, t.height) for t in tiles} == {(270, 152)}  # was 270x150

    def test_every_fixed_aspect_tile_is_within_one_percent(self) -> None:
        for aspect in ("16:9", "4:3", "1:1", "9:16", "21:9"):
            shape = parse_aspect(aspect)
            ratio = shape.lo[0] / shape.lo[1]
            for count in range(1, 30):
                for last_row in LAST_ROWS:
                    for tile in grid_tiles(count, Rect(0, 0, 1920, 1080), 8, shape, last_row):
                        assert abs(tile.height / tile.width - ratio) <= 0.01 * ratio


class TestCapacity:
    @pytest.mark.parametrize(
        ("width", "height", "capacity"),
        [(1280, 720, 36), (1920, 1080, 81), (720, 1280, 30), (640, 360, 9), (1080, 1080, 45)],
    )
    def test_at_the_120_px_floor(self, width: int, height: int, capacity: int) -> None:
        assert grid_capacity(width, height, 0, WIDE) == capacity
        for last_row in LAST_ROWS:
            tiles = grid_tiles(capacity, Rect(0, 0, width, height), 0, WIDE, last_row)
            assert len(tiles) == capacity and min(min(t.width, t.height) for t in tiles) >= 120


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
        last_row=st.sampled_from(LAST_ROWS),
        data=st.data(),
    )
    def test_tiles_are_even_inside_apart_and_at_least_120(
        self, w: int, h: int, gap: int, aspect: str, last_row: str, data: st.DataObject
    ) -> None:
        shape_aspect = parse_aspect(aspect)
        area = inner_area(w, h, 0)
        capacity = grid_capacity(area.width, area.height, gap, shape_aspect)
        if capacity == 0:
            return
        count = data.draw(st.integers(1, min(capacity, 60)))
        tiles = grid_tiles(count, area, gap, shape_aspect, last_row)
        assert len(tiles) == count
        for tile in tiles:
            assert all(v % 2 == 0 for v in (tile.x, tile.y, tile.width, tile.height))
            assert tile.width >= MIN_TILE and tile.height >= MIN_TILE
            assert tile.inside(w, h)
        for a, b in itertools.combinations(tiles, 2):
            assert not a.overlaps(b)


class TestSpecKey:
    def test_last_row_is_a_grid_key_with_four_values(self) -> None:
        assert load_spec(spec_doc()).layout.last_row == "balanced"
        assert load_spec(spec_doc(layout={"lastRow": "grow"})).layout.last_row == "grow"
        with pytest.raises(SpecError, match="lastRow"):
            load_spec(spec_doc(layout={"lastRow": "middle"}))
        with pytest.raises(SpecError, match="applies only to template 'grid'"):
            load_spec(spec_doc(layout={"template": "speaker", "lastRow": "start"}))
