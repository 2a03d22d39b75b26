"""The speaker template: a main tile and a strip of the other hosts along one side.

The strip's cells are sized for ``stripTiles`` hosts (a join never resizes them)
and a partly filled strip is centred along its side. The gap between strip tiles,
and between the strip and the main tile, is exactly ``gap``: the strip is as
thick as its tiles, and the main tile is laid against it. Under ``aspect: fill``
the main tile takes every pixel the strip does not use; with a fixed aspect the
main tile and the strip are centred together. The speaker stays clearly dominant:
the main tile has at least ``DOMINANCE`` times a strip tile's area (the strip's
thickness is lowered until it does, where ``stripFraction`` would give more).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .base import Aspect, Rect, even, fit

__all__ = ["DOMINANCE", "SpeakerFrames", "speaker_frames"]

#: The main tile is at least this many times a strip tile's area.
DOMINANCE: Final = 4


@dataclass(frozen=True, slots=True)
class SpeakerFrames:
    """Regions of the speaker template: the main tile and how the strip is laid out."""

    main: Rect  #: the main tile while the strip shows someone
    alone: Rect  #: the main tile when the strip is empty (it takes the whole area)
    cells: int  #: ``stripTiles``
    tile: tuple[int, int]  #: (across, along) of a strip tile
    origin: tuple[int, int]  #: the area's top-left corner
    strip_offset: int  #: where the strip starts across the area
    along: int  #: the area's length along the strip
    gap: int
    vertical: bool  #: a left/right strip

    @property
    def strip(self) -> tuple[Rect, ...]:
        """The full strip."""
        return self.strip_for(self.cells)

    def strip_for(self, count: int) -> tuple[Rect, ...]:
        """The cells of a strip holding ``count`` hosts, centred along its side."""
        count = max(0, min(count, self.cells))
        t_across, t_along = self.tile
        total = count * t_along + (count - 1) * self.gap if count else 0
        first = even(self.along - total, 2)
        x0, y0 = self.origin
        rects = []
        for i in range(count):
            along_off = first + i * (t_along + self.gap)
            if self.vertical:
                rects.append(Rect(x0 + self.strip_offset, y0 + along_off, t_across, t_along))
            else:
                rects.append(Rect(x0 + along_off, y0 + self.strip_offset, t_along, t_across))
        return tuple(rects)


def _main_size(aspect: Aspect, across: int, along: int, vertical: bool) -> tuple[int, int]:
    """(across, along) of the main tile in its cell: all of it under a range aspect."""
    if not aspect.fixed:
        return across, along
    if vertical:
        w, h = fit(aspect, across, 1, along, 1)
        return w, h
    w, h = fit(aspect, along, 1, across, 1)
    return h, w


def speaker_frames(
    area: Rect,
    gap: int,
    aspect: Aspect,
    position: str,
    fraction: tuple[int, int],
    strip_tiles: int,
) -> SpeakerFrames:
    """Main tile plus a strip of ``strip_tiles`` cells on ``position``'s side.

    The strip takes at most ``fraction`` of the area (minus the gap) across its short
    side. Tiles may come out below 120 px: spec validation reports that as an error.
    """
    gap = even(gap)
    num, den = fraction
    if aspect.fixed:
        alone_w, alone_h = fit(aspect, area.width, 1, area.height, 1)
    else:
        alone_w, alone_h = area.width, area.height
    alone = Rect(
        area.x + even(area.width - alone_w, 2),
        area.y + even(area.height - alone_h, 2),
        alone_w,
        alone_h,
    )
    vertical = position in ("left", "right")
    across = area.width if vertical else area.height
    along = area.height if vertical else area.width
    cell_along = (along - (strip_tiles - 1) * gap, strip_tiles)
    strip_max = even((across - gap) * num, den)
    while True:
        if vertical:
            t_across, t_along = fit(aspect, strip_max, 1, *cell_along)
        else:
            t_along, t_across = fit(aspect, *cell_along, strip_max, 1)
        main_across, main_along = _main_size(
            aspect, max(0, across - gap - t_across), along, vertical
        )
        small = t_across * t_along * DOMINANCE > main_across * main_along
        if not small or strip_max <= 2:
            break
        strip_max = even(strip_max * 15, 16)

    group = main_across + gap + t_across
    start = even(across - group, 2)
    strip_first = position in ("left", "top")
    strip_off = start if strip_first else start + main_across + gap
    main_off = start + t_across + gap if strip_first else start

    def place(across_off: int, along_off: int, a: int, b: int) -> Rect:
        if vertical:
            return Rect(area.x + across_off, area.y + along_off, a, b)
        return Rect(area.x + along_off, area.y + across_off, b, a)

    main = place(main_off, even(along - main_along, 2), main_across, main_along)
    return SpeakerFrames(
        main,
        alone,
        strip_tiles,
        (t_across, t_along),
        (area.x, area.y),
        strip_off,
        along,
        gap,
        vertical,
    )
