"""Pure layout geometry: where tiles go on a canvas, with no hosts and no I/O.

Two layers:

1. ``best_fit`` is opentok-layout-js's best-fit grid (``src/getLayout.ts``), ported
   step by step with its fractional boxes, so its published test vectors hold.
2. Our layer (``grid_shape``, ``grid_tiles``, ``speaker_frames``, ``floating_frames``)
   runs the same search on exact integer ratios after subtracting gaps and padding,
   keeps the tile aspect, rounds to even pixels in ONE place (``even``), and drops
   every arrangement whose tiles fall below the service's 120 px floor. That floor
   is also what ``grid_capacity`` derives the maximum tile count from.

Every coordinate this layer returns is an even integer, so adjacent tiles never
overlap by a rounding pixel and every region lies inside the canvas.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "FILL_RANGE",
    "MAX_REGION",
    "MIN_TILE",
    "Aspect",
    "Box",
    "FloatingFrames",
    "GridShape",
    "Rect",
    "SpeakerFrames",
    "best_fit",
    "even",
    "fit",
    "floating_frames",
    "grid_capacity",
    "grid_shape",
    "grid_tiles",
    "inner_area",
    "parse_aspect",
    "speaker_frames",
]

#: The service rejects regions smaller than this in either dimension.
MIN_TILE = 120
#: ... and larger than this (canvas sizes are capped at it too).
MAX_REGION = 3840


def even(num: int, den: int = 1) -> int:
    """The one rounding rule of layoutsync: ``num / den`` floored to an even integer.

    Flooring never grows a tile past its cell, and even values keep every sum of
    sizes, gaps and offsets even, so centring never lands on half a pixel.
    """
    return (num // (2 * den)) * 2


# --- opentok-layout-js best fit (fractional, faithful) -------------------------------------------


@dataclass(frozen=True, slots=True)
class Box:
    """A tile of ``best_fit``: fractional, as opentok-layout-js returns it."""

    left: float
    top: float
    width: float
    height: float


def _pick(
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

    chosen = _pick(count, size, even_rows=even_rows)
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


# --- our layer: exact ratios, gaps, even pixels, the 120 px floor --------------------------------


@dataclass(frozen=True, slots=True)
class Rect:
    """A region in canvas pixels (even integers when it comes from this module)."""

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

    def overlaps(self, other: Rect) -> bool:
        return (
            self.x < other.right
            and other.x < self.right
            and self.y < other.bottom
            and other.y < self.bottom
        )

    def inside(self, width: int, height: int) -> bool:
        return self.x >= 0 and self.y >= 0 and self.right <= width and self.bottom <= height


@dataclass(frozen=True, slots=True)
class Aspect:
    """Allowed tile shapes as exact height:width ratios ``lo <= h/w <= hi``."""

    text: str
    lo: tuple[int, int]  #: (h, w) of the widest allowed shape
    hi: tuple[int, int]  #: (h, w) of the tallest allowed shape


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

    opentok's step 2 on exact fractions: a too-tall cell loses height, a too-wide
    one loses width; then ``even`` rounds both down.
    """
    (lo_h, lo_w), (hi_h, hi_w) = aspect.lo, aspect.hi
    if hn * wd * hi_w > wn * hd * hi_h:  # h/w > hi: too tall
        hn, hd = wn * hi_h, wd * hi_w
    elif hn * wd * lo_w < wn * hd * lo_h:  # h/w < lo: too wide
        wn, wd = hn * lo_w, hd * lo_h
    return even(wn, wd), even(hn, hd)


def inner_area(width: int, height: int, padding: int) -> Rect:
    """The canvas minus ``padding`` on each side, with even bounds (an odd last pixel is unused)."""
    pad = even(padding)
    return Rect(pad, pad, max(0, even(width - 2 * pad)), max(0, even(height - 2 * pad)))


@dataclass(frozen=True, slots=True)
class GridShape:
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


def grid_shape(count: int, width: int, height: int, gap: int, aspect: Aspect) -> GridShape | None:
    """The best-fit arrangement of ``count`` tiles in an area, or None when none clears 120 px."""
    if count <= 0:
        return None
    size = _grid_size(width, height, even(gap), aspect)
    max_cols = (width + even(gap)) // (MIN_TILE + even(gap))
    chosen = _pick(count, size, max_cols=max_cols)
    if chosen is None:
        return None
    cols, rows, w, h = chosen
    return GridShape(cols, rows, int(w), int(h))


def grid_tiles(count: int, area: Rect, gap: int, aspect: Aspect) -> tuple[Rect, ...]:
    """``count`` tiles in row order, rows and the short last row centred; () if they cannot fit."""
    shape = grid_shape(count, area.width, area.height, gap, aspect)
    if shape is None:
        return ()
    gap = even(gap)
    w, h = shape.tile_width, shape.tile_height
    total_h = shape.rows * h + (shape.rows - 1) * gap
    y = area.y + even(area.height - total_h, 2)
    tiles: list[Rect] = []
    for start in range(0, count, shape.cols):
        in_row = min(shape.cols, count - start)
        row_w = in_row * w + (in_row - 1) * gap
        x = area.x + even(area.width - row_w, 2)
        for i in range(in_row):
            tiles.append(Rect(x + i * (w + gap), y, w, h))
        y += h + gap
    return tuple(tiles)


def grid_capacity(width: int, height: int, gap: int, aspect: Aspect) -> int:
    """The most tiles any grid arrangement holds with every tile >= 120 px in both sides."""
    gap = even(gap)
    size = _grid_size(width, height, gap, aspect)
    max_cols = (width + gap) // (MIN_TILE + gap)
    max_rows = (height + gap) // (MIN_TILE + gap)
    best = 0
    rows = max_rows
    for cols in range(1, max_cols + 1):
        # The feasible row count only shrinks as columns grow: walk it down once.
        while rows > 0 and size(cols, rows) is None:
            rows -= 1
        if rows == 0:
            break
        best = max(best, cols * rows)
    return best


@dataclass(frozen=True, slots=True)
class SpeakerFrames:
    """Regions of the speaker template: the main tile and the strip's fixed cells."""

    main: Rect  #: the main tile while the strip shows someone
    alone: Rect  #: the main tile when the strip is empty (it takes the whole area)
    strip: tuple[Rect, ...]


def speaker_frames(
    area: Rect,
    gap: int,
    aspect: Aspect,
    position: str,
    fraction: tuple[int, int],
    strip_tiles: int,
) -> SpeakerFrames:
    """Main tile plus a strip of ``strip_tiles`` cells on ``position``'s side.

    The strip takes ``fraction`` of the area (minus the gap) across its short side;
    its tiles are stacked with ``gap`` and centred along it. Tiles may come out
    below 120 px: the caller (spec validation) reports that as a spec error.
    """
    gap = even(gap)
    num, den = fraction
    alone_w, alone_h = fit(aspect, area.width, 1, area.height, 1)
    alone_x = area.x + even(area.width - alone_w, 2)
    alone = Rect(alone_x, area.y + even(area.height - alone_h, 2), alone_w, alone_h)
    vertical_strip = position in ("left", "right")
    across = area.width if vertical_strip else area.height
    along = area.height if vertical_strip else area.width
    strip_across = even((across - gap) * num, den)
    main_across = max(0, across - gap - strip_across)

    # Main cell and strip cell in (across, along) coordinates, then mapped to x/y.
    if vertical_strip:
        mw, mh = fit(aspect, main_across, 1, along, 1)
        tw, th = fit(aspect, strip_across, 1, along - (strip_tiles - 1) * gap, strip_tiles)
        t_across, t_along, m_across, m_along = tw, th, mw, mh
    else:
        mw, mh = fit(aspect, along, 1, main_across, 1)
        tw, th = fit(aspect, along - (strip_tiles - 1) * gap, strip_tiles, strip_across, 1)
        t_across, t_along, m_across, m_along = th, tw, mh, mw

    strip_first = position in ("left", "top")
    main_start = strip_across + gap if strip_first else 0
    strip_start = 0 if strip_first else main_across + gap
    main_off = main_start + even(main_across - m_across, 2)
    main_along = even(along - m_along, 2)
    total = strip_tiles * t_along + (strip_tiles - 1) * gap
    first = even(along - total, 2)
    cell_off = strip_start + even(strip_across - t_across, 2)

    def place(across_off: int, along_off: int, a: int, b: int) -> Rect:
        if vertical_strip:
            return Rect(area.x + across_off, area.y + along_off, a, b)
        return Rect(area.x + along_off, area.y + across_off, b, a)

    main = place(main_off, main_along, m_across, m_along)
    strip = tuple(
        place(cell_off, first + i * (t_along + gap), t_across, t_along) for i in range(strip_tiles)
    )
    return SpeakerFrames(main, alone, strip)


@dataclass(frozen=True, slots=True)
class FloatingFrames:
    """Regions of the floating template: the main tile and the overlay cells, in fill order."""

    main: Rect
    overlays: tuple[Rect, ...]


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
    """Main fills the canvas (inside the padding); overlays fill rows from ``corner``.

    The first row runs along the corner's edge away from the corner; later rows
    stack inward. Rows and columns are capped by what fits inside the margin.
    """
    gap = even(gap)
    main = inner_area(width, height, padding)
    room = inner_area(width, height, margin)
    tw, th = even(tile[0]), even(tile[1])
    cols = min(columns, (room.width + gap) // (tw + gap))
    rows = min(rows, (room.height + gap) // (th + gap))
    from_right = corner.endswith("right")
    from_bottom = corner.startswith("bottom")
    overlays: list[Rect] = []
    for row in range(max(0, rows) if cols > 0 else 0):
        y = room.bottom - th - row * (th + gap) if from_bottom else room.y + row * (th + gap)
        for col in range(cols):
            x = room.right - tw - col * (tw + gap) if from_right else room.x + col * (tw + gap)
            overlays.append(Rect(x, y, tw, th))
    return FloatingFrames(main, tuple(overlays))
