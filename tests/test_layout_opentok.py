"""The Python port of opentok-layout-js's getLayout that the grid is measured against."""

from __future__ import annotations

import pytest

from layoutsync.layout.opentok import Box, best_fit, coverage, illegal


class TestStyleVectors:
    """The vectors of opentok-layout-js ``tests/unit/opentok-layout-spec.js`` (style.md)."""

    def test_two_tiles_in_400x300(self) -> None:
        assert best_fit(2, 400, 300) == (Box(0, 0, 200, 300), Box(200, 0, 200, 300))

    def test_five_tiles_in_400x300(self) -> None:
        boxes = best_fit(5, 400, 300)
        assert {(b.width, b.height) for b in boxes} == {(133, 150)}
        assert [b.left for b in boxes] == [0.5, 133.5, 266.5, 67, 200]

    def test_four_tiles_capped_at_400x300_and_without_even_rows(self) -> None:
        boxes = best_fit(4, 1280, 720, max_width=400, max_height=300)
        assert [(b.left, b.top) for b in boxes] == [(240, 60), (640, 60), (240, 360), (640, 360)]
        uneven = best_fit(4, 1280, 720, max_width=400, max_height=300, even_rows=False)
        assert [b.top for b in uneven] == [60, 60, 60, 360]  # 3 + 1


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
