"""The floating template: the main host fills the canvas, the others overlay it.

Overlays fill rows from ``corner``: the first row runs along the corner's edge away
from the corner, later rows stack inward. With an edge instead of a corner
(``top``, ``bottom``, ``left``, ``right``) the overlays form a strip along that
edge, centred, a partly filled row centred too. Rows and columns are capped by
what fits inside the margin. Overlays may cover the main tile (that is the
template); they never cover each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .base import Rect, even, inner_area

__all__ = ["CORNERS", "EDGES", "FloatingFrames", "floating_frames"]

CORNERS: Final = ("top-left", "top-right", "bottom-left", "bottom-right")
EDGES: Final = ("top", "bottom", "left", "right")


@dataclass(frozen=True, slots=True)
class FloatingFrames:
    """Regions of the floating template: the main tile and how the overlays are laid out."""

    main: Rect
    room: Rect  #: the canvas inside the margin
    corner: str
    tile: tuple[int, int]
    gap: int
    per_row: int  #: overlays along a row (down a side for a left/right edge)
    rows: int

    @property
    def overlays(self) -> tuple[Rect, ...]:
        """Every overlay cell, in fill order."""
        return self.overlays_for(self.per_row * self.rows)

    def overlays_for(self, count: int) -> tuple[Rect, ...]:
        """The overlays of ``count`` hosts (at most every cell), in fill order."""
        count = max(0, min(count, self.per_row * self.rows))
        tw, th = self.tile
        return tuple(
            _cell(i, count, self.per_row, self.corner, self.room, tw, th, self.gap)
            for i in range(count)
        )


def floating_frames(
    width: int,
    height: int,
    padding: int,
    gap: int,
    corner: str,
    tile: tuple[int, int],
    margin: int,
    columns: int,
    rows: int,
) -> FloatingFrames:
    """Main fills the canvas (inside the padding); overlays fill rows from ``corner``."""
    gap = even(gap)
    main = inner_area(width, height, padding)
    room = inner_area(width, height, margin)
    tw, th = even(tile[0]), even(tile[1])
    vertical = corner in ("left", "right")  # an edge strip running down a side
    # Along = the direction a row runs; across = the direction rows stack.
    along_room, across_room = (room.height, room.width) if vertical else (room.width, room.height)
    t_along, t_across = (th, tw) if vertical else (tw, th)
    # Down a side, "rows" counts the tiles of a line and "columns" the lines.
    along_max, across_max = (rows, columns) if vertical else (columns, rows)
    per_row = max(0, min(along_max, (along_room + gap) // (t_along + gap)))
    row_count = max(0, min(across_max, (across_room + gap) // (t_across + gap))) if per_row else 0
    return FloatingFrames(main, room, corner, (tw, th), gap, per_row, row_count)


def _cell(
    index: int, count: int, per_row: int, corner: str, room: Rect, tw: int, th: int, gap: int
) -> Rect:
    row, col = divmod(index, per_row)
    if corner in CORNERS:
        from_right = corner.endswith("right")
        from_bottom = corner.startswith("bottom")
        y = room.bottom - th - row * (th + gap) if from_bottom else room.y + row * (th + gap)
        x = room.right - tw - col * (tw + gap) if from_right else room.x + col * (tw + gap)
        return Rect(x, y, tw, th)
    in_row = min(per_row, count - row * per_row)
    if corner in ("top", "bottom"):
        row_w = in_row * tw + (in_row - 1) * gap
        x = room.x + even(room.width - row_w, 2) + col * (tw + gap)
        y = room.bottom - th - row * (th + gap) if corner == "bottom" else room.y + row * (th + gap)
        return Rect(x, y, tw, th)
    col_h = in_row * th + (in_row - 1) * gap
    y = room.y + even(room.height - col_h, 2) + col * (th + gap)
    x = room.right - tw - row * (tw + gap) if corner == "right" else room.x + row * (tw + gap)
    return Rect(x, y, tw, th)
