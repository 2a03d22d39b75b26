"""The Python port of opentok-layout-js's getLayout that the grid is measured against."""

from __future__ import annotations

import pytest

from layoutsync.layout.opentok import Box, best_fit, coverage, illegal


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


class TestDefaultsOfTheBench:
    """scaleLastRow on and fixedRatio 16:9: the coverage figures issue 11 quotes."""

    @pytest.mark.parametrize(("count", "expected"), [(10, 1.0), (11, 0.8333), (17, 0.92)])
    def test_coverage_on_1280x720(self, count: int, expected: float) -> None:
        boxes = best_fit(count, 1280, 720, fixed_ratio=9 / 16, scale_last_row=True)
        assert coverage(boxes, 1280, 720) == pytest.approx(expected, abs=1e-4)

    def test_ten_tiles_grow_their_last_row_to_twice_the_size(self) -> None:
        boxes = best_fit(10, 1280, 720, fixed_ratio=9 / 16, scale_last_row=True)
        assert {(b.width, b.height) for b in boxes[:8]} == {(320, 180)}
        assert {(b.width, b.height) for b in boxes[8:]} == {(640, 360)}

    def test_opentok_emits_regions_the_service_rejects(self) -> None:
        portrait = best_fit(31, 720, 1280, fixed_ratio=9 / 16, scale_last_row=True)
        assert min(b.height for b in portrait) < 120 and illegal(portrait, 720, 1280)
        assert illegal(best_fit(10, 640, 360, fixed_ratio=9 / 16, scale_last_row=True), 640, 360)
        assert not illegal(best_fit(4, 1280, 720, fixed_ratio=9 / 16), 1280, 720)
