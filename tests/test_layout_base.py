"""Shared layout rules: even-pixel rounding, aspects, and the old ``layoutsync.geometry`` names."""

from __future__ import annotations

from fractions import Fraction

import pytest

from layoutsync import geometry, layout
from layoutsync.layout import FILL_RANGE, Rect, even, fit, inner_area, parse_aspect, round_even

WIDE = parse_aspect("16:9")


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

    def test_round_even_goes_to_the_nearest_even_pixel(self) -> None:
        assert [round_even(v) for v in (0, 1, 2, 3, 239, 240, 241)] == [0, 0, 2, 2, 238, 240, 240]
        assert round_even(Fraction("0.3333") * 720) == 240
        assert round_even(Fraction("0.6666") * 720) == 480


def test_the_geometry_module_keeps_its_names() -> None:
    for name in geometry.__all__:
        assert getattr(geometry, name) is getattr(layout, name)
    assert {"best_fit", "grid_tiles", "speaker_frames", "floating_frames", "even", "Rect"} <= set(
        geometry.__all__
    )
