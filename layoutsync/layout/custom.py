"""The custom template: slots the spec places, in pixels or fractions of the canvas.

A slot's *edges* are rounded to even pixels, once each (``round_even``), so slots
that touch in relative units touch in pixels, and a slot reaching the canvas edge
reaches it: 0.3333 + 0.3333 of 720 px ends where the next slot starts, 0.6666 +
0.3333 ends at 720. (Rounding x, y, width and height on their own left 2 px seams
and a 4 px bar.) An edge never passes the canvas's last even pixel.

``EMPTY_SLOT_POLICIES`` are the values of ``layout.emptySlot``, what a slot bound to
an absent uid shows: ``next`` (the default: the next host in order not shown
elsewhere, until the bound host comes back, so the picture keeps no black hole) or
``blank`` (nothing: the slot stays the canvas, for a studio background that
expects that host there).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

from .base import Rect, even, round_even

__all__ = ["DEFAULT_EMPTY_SLOT", "EMPTY_SLOT_POLICIES", "slot_rect"]

EMPTY_SLOT_POLICIES: Final = ("next", "blank")
DEFAULT_EMPTY_SLOT: Final = "next"


def _edge(value: Fraction, limit: int) -> int:
    return max(0, min(round_even(value), even(limit)))


def slot_rect(
    x: Fraction, y: Fraction, width: Fraction, height: Fraction, canvas: tuple[int, int]
) -> Rect:
    """A slot given in canvas pixels (exact, possibly fractional) as an even-pixel region."""
    cw, ch = canvas
    left, top = _edge(x, cw), _edge(y, ch)
    right, bottom = _edge(x + width, cw), _edge(y + height, ch)
    return Rect(left, top, right - left, bottom - top)
