"""Shared geometry of every template: rectangles, tile shapes, the even-pixel rules.

The service takes integer regions at least 120 px in each side; layoutsync emits
even integers only, so sums of sizes, gaps and offsets stay even and centring
never lands on half a pixel. Rounding happens here, in three rules:

- ``even`` floors a length (a size must never outgrow its cell);
- ``round_even`` rounds an *edge* to the nearest even pixel (slots that touch keep
  touching, a slot reaching the canvas edge keeps reaching it);
- ``fit`` gives the largest even tile of an aspect inside a cell, keeping the
  aspect within 1% (flooring width and height on their own bends it further).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "ASPECT_TOLERANCE",
    "FILL_RANGE",
    "MAX_REGION",
    "MIN_TILE",
    "Aspect",
    "Rect",
    "even",
    "fit",
    "inner_area",
    "parse_aspect",
    "round_even",
]

#: The service rejects regions smaller than this in either dimension.
MIN_TILE = 120
#: ... and larger than this (canvas sizes are capped at it too).
MAX_REGION = 3840
#: How far an even-pixel tile may stray from its exact aspect (relative).
ASPECT_TOLERANCE = Fraction(1, 100)


def even(num: int, den: int = 1) -> int:
    """A length ``num / den`` floored to an even integer: it never outgrows its cell."""
    return (num // (2 * den)) * 2


def round_even(value: Fraction | int) -> int:
    """An edge coordinate rounded to the nearest even integer (a tie goes down)."""
    return 2 * math.ceil((Fraction(value) - 1) / 2)


@dataclass(frozen=True, slots=True)
class Rect:
    """A region in canvas pixels (even integers when it comes from this package)."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def area(self) -> int:
        return self.width * self.height

    def overlaps(self, other: Rect) -> bool:
        return (
            self.x < other.right
            and other.x < self.right
            and self.y < other.bottom
            and other.y < self.bottom
        )

    def inside(self, width: int, height: int) -> bool:
        return self.x >= 0 and self.y >= 0 and self.right <= width and self.bottom <= height

    def moved(self, dx: int, dy: int) -> Rect:
        return Rect(self.x + dx, self.y + dy, self.width, self.height)


@dataclass(frozen=True, slots=True)
class Aspect:
    """Allowed tile shapes as exact height:width ratios ``lo <= h/w <= hi``."""

    text: str
    lo: tuple[int, int]  #: (h, w) of the widest allowed shape
    hi: tuple[int, int]  #: (h, w) of the tallest allowed shape

    @property
    def fixed(self) -> bool:
        """One exact shape (``"16:9"``), not a range (``"fill"``)."""
        return self.lo == self.hi


#: "fill": opentok-layout-js's default range, from 16:9 wide to 2:3 tall.
FILL_RANGE = Aspect("fill", (9, 16), (3, 2))


def parse_aspect(text: str) -> Aspect:
    """``"16:9"`` -> that exact ratio; ``"fill"`` -> ``FILL_RANGE``. Raises ValueError."""
    if text == "fill":
        return FILL_RANGE
    w_text, sep, h_text = text.partition(":")
    if not sep or not (w_text.isdigit() and h_text.isdigit()):
        raise ValueError(f"{text!r} is not 'W:H' or 'fill'")
    w, h = int(w_text), int(h_text)
    if w <= 0 or h <= 0:
        raise ValueError(f"{text!r} needs positive width and height")
    g = math.gcd(w, h)
    return Aspect(text, (h // g, w // g), (h // g, w // g))


def fit(aspect: Aspect, wn: int, wd: int, hn: int, hd: int) -> tuple[int, int]:
    """The largest even-pixel tile of an allowed shape inside a ``wn/wd`` x ``hn/hd`` cell.

    opentok's step 2 on exact fractions (a too-tall cell loses height, a too-wide one
    width). A fixed aspect is then kept within ``ASPECT_TOLERANCE``: of the even sizes
    inside the cell, the widest whose height, the nearest even one to the exact height,
    is that close (270x152, not 270x150, for 16:9 in a 270 px wide cell). A range
    takes the floored cell.
    """
    (lo_h, lo_w), (hi_h, hi_w) = aspect.lo, aspect.hi
    if hn * wd * hi_w > wn * hd * hi_h:  # h/w > hi: too tall
        hn_fit, hd_fit, wn_fit, wd_fit = wn * hi_h, wd * hi_w, wn, wd
    elif hn * wd * lo_w < wn * hd * lo_h:  # h/w < lo: too wide
        hn_fit, hd_fit, wn_fit, wd_fit = hn, hd, hn * lo_w, hd * lo_h
    else:
        hn_fit, hd_fit, wn_fit, wd_fit = hn, hd, wn, wd
    width, height = even(wn_fit, wd_fit), even(hn_fit, hd_fit)
    if not aspect.fixed or width <= 0:
        return width, height
    max_h = even(hn, hd)
    tolerance = ASPECT_TOLERANCE.denominator // ASPECT_TOLERANCE.numerator  # 1% -> 100
    for w in range(width, max(0, width - 24), -2):
        # The even height nearest w * lo_h / lo_w (a tie goes down), in integers: this runs
        # for every arrangement the best fit tries.
        h = min(2 * -((lo_w - w * lo_h) // (2 * lo_w)), max_h)
        if h > 0 and abs(h * lo_w - lo_h * w) * tolerance <= lo_h * w:
            return w, h
    return width, height


def inner_area(width: int, height: int, padding: int) -> Rect:
    """The canvas minus ``padding`` on each side, with even bounds (an odd last pixel is unused)."""
    pad = even(padding)
    return Rect(pad, pad, max(0, even(width - 2 * pad)), max(0, even(height - 2 * pad)))
