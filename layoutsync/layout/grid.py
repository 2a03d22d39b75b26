"""The grid template: opentok-layout-js's best fit on exact ratios, in even pixels.

Gaps and padding are subtracted first, every arrangement with a tile under the
service's 120 px floor is dropped, and ``layout.lastRow`` decides what happens to
a short last row:

- ``center``: full rows, the short last row centred (opentok without scaleLastRow);
- ``start``: full rows, the short last row aligned with the rows' start edge, so a
  join into the last row moves nobody and a leave moves at most one host;
- ``balanced`` (the default): row lengths differ by at most one and the longer rows
  sit in the middle (7 hosts: 2+3+2), with the best fit's tile size;
- ``grow``: the tiles of the short last row grow, aspect kept, into the height the
  full rows leave, as opentok's scaleLastRow does; the arrangement is chosen by
  the area *after* growing, so coverage never trails opentok's.

Tiles come back in slot order: row by row, left to right.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .base import MIN_TILE, Aspect, Rect, even, fit
from .opentok import pick

__all__ = [
    "DEFAULT_LAST_ROW",
    "LAST_ROWS",
    "GridShape",
    "grid_capacity",
    "grid_shape",
    "grid_tiles",
    "row_lengths",
]

#: The values of ``layout.lastRow``.
LAST_ROWS: Final = ("center", "start", "balanced", "grow")
#: Equal tiles and no lone tile on a row of its own: what a producer would pick.
DEFAULT_LAST_ROW: Final = "balanced"


@dataclass(frozen=True, slots=True)
class GridShape:
    """A best-fit arrangement: at most ``cols`` tiles on each of ``rows`` rows."""

    cols: int
    rows: int
    tile_width: int
    tile_height: int


def _grid_size(
    width: int, height: int, gap: int, aspect: Aspect
) -> Callable[[int, int], tuple[int, int] | None]:
    def size(cols: int, rows: int) -> tuple[int, int] | None:
        wn = width - (cols - 1) * gap
        hn = height - (rows - 1) * gap
        if wn < cols * MIN_TILE or hn < rows * MIN_TILE:
            return None
        w, h = fit(aspect, wn, cols, hn, rows)
        return (w, h) if w >= MIN_TILE and h >= MIN_TILE else None

    return size


def _max_cols(width: int, gap: int) -> int:
    return (width + gap) // (MIN_TILE + gap)


def grid_shape(count: int, width: int, height: int, gap: int, aspect: Aspect) -> GridShape | None:
    """The best-fit arrangement of ``count`` equal tiles, or None when none clears 120 px."""
    if count <= 0:
        return None
    gap = even(gap)
    chosen = pick(count, _grid_size(width, height, gap, aspect), max_cols=_max_cols(width, gap))
    if chosen is None:
        return None
    cols, rows, w, h = chosen
    return GridShape(cols, rows, int(w), int(h))


def _grown(
    count: int, shape: GridShape, width: int, height: int, gap: int, aspect: Aspect
) -> tuple[int, int]:
    """The size of the short last row's tiles under ``grow``: the largest of the aspect in
    the height the full rows leave, ``shape``'s size when the last row is full."""
    last = count - (shape.rows - 1) * shape.cols
    if last == shape.cols:
        return shape.tile_width, shape.tile_height
    room = height - (shape.rows - 1) * (shape.tile_height + gap)
    w, h = fit(aspect, width - (last - 1) * gap, last, room, 1)
    if w < shape.tile_width or h < shape.tile_height:  # rounding: never shrink
        return shape.tile_width, shape.tile_height
    return w, h


def _grow_shape(
    count: int, width: int, height: int, gap: int, aspect: Aspect
) -> tuple[GridShape, tuple[int, int]] | None:
    """The arrangement with the most tile area once its short last row has grown.

    opentok picks by the area before growing; picking after it is what keeps
    coverage at or above opentok's at every count (10 hosts on 1280x720: 4+4+2,
    the two last tiles twice the size, the canvas covered).
    """
    size = _grid_size(width, height, gap, aspect)
    best: tuple[GridShape, tuple[int, int]] | None = None
    best_area = -1
    for cols in range(1, min(count, _max_cols(width, gap)) + 1):
        rows = -(-count // cols)
        dims = size(cols, rows)
        if dims is None:
            continue
        shape = GridShape(cols, rows, *dims)
        grown = _grown(count, shape, width, height, gap, aspect)
        last = count - (rows - 1) * cols
        area = (count - last) * dims[0] * dims[1] + last * grown[0] * grown[1]
        if area >= best_area:  # a tie goes to more columns, as opentok's does
            best, best_area = (shape, grown), area
    return best


def row_lengths(count: int, shape: GridShape, last_row: str) -> tuple[int, ...]:
    """How many tiles each row holds, top to bottom."""
    if last_row != "balanced":
        full, rest = divmod(count, shape.cols)
        return (shape.cols,) * full + ((rest,) if rest else ())
    rows = shape.rows
    longest = -(-count // rows)
    long_rows = count - rows * (longest - 1)
    first_long = (rows - long_rows) // 2  # the longer rows in the middle
    return tuple(
        longest if first_long <= row < first_long + long_rows else longest - 1
        for row in range(rows)
    )


# A daemon's sessions share a few shapes (canvas, gap, host count): the same tiles each time.
@functools.lru_cache(maxsize=1024)
def grid_tiles(
    count: int, area: Rect, gap: int, aspect: Aspect, last_row: str = "center"
) -> tuple[Rect, ...]:
    """``count`` tiles in slot order inside ``area``; () when they cannot all clear 120 px."""
    if count <= 0:
        return ()
    gap = even(gap)
    grown: tuple[int, int] | None = None
    if last_row == "grow":
        chosen = _grow_shape(count, area.width, area.height, gap, aspect)
        if chosen is None:
            return ()
        shape, grown = chosen
    else:
        found = grid_shape(count, area.width, area.height, gap, aspect)
        if found is None:
            return ()
        shape = found
    lengths = row_lengths(count, shape, last_row)
    w, h = shape.tile_width, shape.tile_height
    sizes = [(w, h)] * len(lengths)
    if grown is not None:
        sizes[-1] = grown
    total_h = sum(size[1] for size in sizes) + (len(lengths) - 1) * gap
    full_w = shape.cols * w + (shape.cols - 1) * gap
    start_x = area.x + even(area.width - full_w, 2)
    y = area.y + even(area.height - total_h, 2)
    tiles: list[Rect] = []
    for in_row, (tw, th) in zip(lengths, sizes, strict=True):
        row_w = in_row * tw + (in_row - 1) * gap
        x = start_x if last_row == "start" else area.x + even(area.width - row_w, 2)
        tiles.extend(Rect(x + i * (tw + gap), y, tw, th) for i in range(in_row))
        y += th + gap
    return tuple(tiles)


def grid_capacity(width: int, height: int, gap: int, aspect: Aspect) -> int:
    """The most tiles any grid arrangement holds with every tile >= 120 px in both sides."""
    gap = even(gap)
    size = _grid_size(width, height, gap, aspect)
    max_rows = (height + gap) // (MIN_TILE + gap)
    best = 0
    rows = max_rows
    for cols in range(1, _max_cols(width, gap) + 1):
        # The feasible row count only shrinks as columns grow: walk it down once.
        while rows > 0 and size(cols, rows) is None:
            rows -= 1
        if rows == 0:
            break
        best = max(best, cols * rows)
    return best
