"""opentok-layout-js's best fit (``src/getLayout.ts``), ported step by step.

Fractional boxes, as opentok returns them, so its published test vectors hold.
The grid template runs the same selection (``pick``) on exact integer ratios;
``layoutsync bench layout`` compares coverage against ``best_fit`` and counts
how many of its layouts the service would reject.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Box", "best_fit", "coverage", "illegal", "pick"]


@dataclass(frozen=True, slots=True)
class Box:
    """A tile of ``best_fit``: fractional, as opentok-layout-js returns it."""

    left: float
    top: float
    width: float
    height: float


def pick(
    count: int,
    size: Callable[[int, int], tuple[float, float] | None],
    *,
    even_rows: bool = True,
    max_cols: int | None = None,
) -> tuple[int, int, float, float] | None:
    """opentok's selection: the largest total tile area over cols = 1..count.

    A candidate replaces the best when its score is >= the best's, so exact ties
    go to more columns, unless ``even_rows`` and the tie leaves more empty cells.
    ``size`` returns None for an arrangement that is not allowed at all.
    """
    best: tuple[int, int, float, float] | None = None
    best_score = -1.0
    limit = count if max_cols is None else min(count, max_cols)
    for cols in range(1, limit + 1):
        rows = -(-count // cols)
        dims = size(cols, rows)
        if dims is None:
            continue
        width, height = dims
        score = width * height * count
        if score < best_score:
            continue
        if (
            even_rows
            and best is not None
            and score == best_score
            and cols * rows - count > best[0] * best[1] - count
        ):
            continue
        best, best_score = (cols, rows, width, height), score
    return best


def best_fit(
    count: int,
    width: float,
    height: float,
    *,
    min_ratio: float = 9 / 16,
    max_ratio: float = 3 / 2,
    fixed_ratio: float | None = None,
    max_width: float = math.inf,
    max_height: float = math.inf,
    even_rows: bool = True,
    scale_last_row: bool = False,
) -> tuple[Box, ...]:
    """opentok-layout-js's grid of ``count`` equal tiles in a ``width`` x ``height`` box.

    Ratios are height / width. ``fixed_ratio`` sets min = max. Offsets are not
    rounded; boxes come back in input order. (The "big tiles" split of step 7 is
    not ported: our speaker template is its counterpart.)
    """
    if count <= 0:
        return ()
    if fixed_ratio is not None:
        min_ratio = max_ratio = fixed_ratio

    def size(cols: int, rows: int) -> tuple[float, float]:
        h: float = math.floor(height / rows)
        w: float = math.floor(width / cols)
        ratio = h / w if w else math.inf
        if ratio > max_ratio:
            h = w * max_ratio
        if w and h / w < min_ratio:
            w = h / min_ratio
        return min(w, max_width), min(h, max_height)

    chosen = pick(count, size, even_rows=even_rows)
    assert chosen is not None  # every arrangement is allowed here
    cols, _rows, tile_w, tile_h = chosen

    rows_of_tiles: list[list[list[float]]] = []  # each tile is [width, height]
    for start in range(0, count, cols):
        rows_of_tiles.append([[tile_w, tile_h] for _ in range(min(cols, count - start))])

    row_sizes: list[list[float]] = []  # [row width, row height]
    for tiles in rows_of_tiles:
        row_w = sum(t[0] for t in tiles)
        if row_w > width:  # step 5: a row wider than the box is scaled down to it
            scale = width / row_w
            for t in tiles:
                t[0] *= scale
                t[1] *= scale
            row_w = width
        row_sizes.append([row_w, max(t[1] for t in tiles)])

    total = sum(r[1] for r in row_sizes)
    if scale_last_row and total < height:
        short = sum(1 for r in row_sizes if r[0] < width)
        left_over = height - total
        for tiles, row in zip(rows_of_tiles, row_sizes, strict=True):
            if row[0] >= width or short == 0:
                continue
            extra = left_over / short
            if extra / row[1] > (width - row[0]) / row[0]:  # capped at the box width
                extra = (width - row[0]) / row[0] * row[1]
            scale = (row[1] + extra) / row[1]
            for t in tiles:
                t[0] *= scale
                t[1] *= scale
            row[0] *= scale
            row[1] += extra
            left_over -= extra
            short -= 1
        total = sum(r[1] for r in row_sizes)

    boxes: list[Box] = []
    top = (height - total) / 2
    for tiles, (row_w, row_h) in zip(rows_of_tiles, row_sizes, strict=True):
        left = (width - row_w) / 2
        for tile_width, tile_height in tiles:
            boxes.append(Box(left, top, tile_width, tile_height))
            left += tile_width
        top += row_h
    return tuple(boxes)


def coverage(boxes: tuple[Box, ...], width: float, height: float) -> float:
    """Tile area over canvas area."""
    return sum(b.width * b.height for b in boxes) / (width * height)


def illegal(boxes: tuple[Box, ...], width: float, height: float, min_tile: int = 120) -> bool:
    """Whether the service would reject one of these boxes as a region: under ``min_tile``,
    fractional, or off the canvas."""
    for b in boxes:
        values = (b.left, b.top, b.width, b.height)
        if any(v != int(v) for v in values) or min(b.width, b.height) < min_tile:
            return True
        if b.left < 0 or b.top < 0 or b.left + b.width > width or b.top + b.height > height:
            return True
    return False
