"""Drawing primitives, in paint order, that both the SVG and the PNG writer draw.

Everything is laid out once here, with the font Pillow ships (Aileron, via
``ImageFont.load_default``) measuring every string, so the two formats show
the same picture and a test can check that no text leaves its box.
Coordinates are output pixels, except a ``Fill`` with a ``panel``: that one
is in canvas pixels, drawn through the panel's transform, so the SVG's region
rectangles are exactly the body's regions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from PIL import ImageFont

__all__ = [
    "FONT_FAMILY",
    "Fill",
    "Label",
    "Outline",
    "Panel",
    "Polygon",
    "Scene",
    "Theme",
    "fit",
    "label",
    "measure",
    "metrics",
    "text_colour",
    "uid_colour",
]

#: What the SVG asks for; the first is the font every measurement is made with.
FONT_FAMILY = "Aileron, 'Helvetica Neue', Helvetica, Arial, sans-serif"


class Theme:
    """A dark control-room look: quiet page, saturated tiles, loud marks."""

    page = "#1c1f26"
    panel_edge = "#4a5060"
    text = "#eef0f4"
    muted = "#a3a9b6"
    speaker = "#ffd43b"
    moved = "#ff9f43"
    added = "#3ddc84"
    removed = "#ff5c6c"
    watermark = "#f4f6fa"
    background = "#74c0fc"
    #: Tile colours, chosen by uid so a host keeps its colour in every picture.
    tiles = (
        "#2f62ad",
        "#b3452f",
        "#2b7d55",
        "#7347b0",
        "#946512",
        "#1f7686",
        "#a23a72",
        "#56691d",
        "#4352c0",
        "#8c4f2c",
        "#2e7273",
        "#6a57a8",
    )


def uid_colour(uid: int) -> str:
    return Theme.tiles[uid % len(Theme.tiles)]


def _luminance(colour: str) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def text_colour(background: str) -> str:
    """Near-black or white, whichever reads better on ``background``."""
    lum = _luminance(background)
    return "#111318" if (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) else "#ffffff"


# --- fonts ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's own scalable font at ``size`` px, basic layout (the same on every machine)."""
    base = ImageFont.load_default(size=size)
    if not isinstance(base, ImageFont.FreeTypeFont):  # pragma: no cover - Pillow without FreeType
        raise RuntimeError("layoutsync.preview needs Pillow built with FreeType")
    return base.font_variant(size=size, layout_engine=ImageFont.Layout.BASIC)


def stroke(size: int, bold: bool) -> int:
    """Bold is drawn as a thin outline of the glyphs (Pillow ships one weight)."""
    return 1 if bold and size >= 22 else 0


@functools.lru_cache(maxsize=4096)
def measure(text: str, size: int, bold: bool = False) -> int:
    """The advance width of ``text`` in px, rounded up."""
    width = font(size).getlength(text)
    return int(-(-(width + 2 * stroke(size, bold)) // 1))


@functools.lru_cache(maxsize=128)
def metrics(size: int) -> tuple[int, int]:
    """(ascent, descent) in px."""
    ascent, descent = font(size).getmetrics()
    return ascent, descent


# --- primitives ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Panel:
    """Where a canvas sits in the picture: canvas px (x, y) show at (ox + x*s, oy + y*s)."""

    ox: float
    oy: float
    scale: float
    width: int  #: canvas px
    height: int
    index: int = 0

    def to_output(
        self, x: float, y: float, w: float, h: float
    ) -> tuple[float, float, float, float]:
        s = self.scale
        return (self.ox + x * s, self.oy + y * s, w * s, h * s)


@dataclass(frozen=True, slots=True)
class Fill:
    """A filled rectangle; in canvas px through ``panel`` when one is given."""

    x: float
    y: float
    width: float
    height: float
    colour: str
    role: str = ""
    panel: Panel | None = None
    radius: float = 0.0
    opacity: float = 1.0
    data: tuple[tuple[str, Any], ...] = ()

    def output_box(self) -> tuple[float, float, float, float]:
        if self.panel is None:
            return (self.x, self.y, self.width, self.height)
        return self.panel.to_output(self.x, self.y, self.width, self.height)


@dataclass(frozen=True, slots=True)
class Outline:
    """A rectangle's edge drawn inside it, ``line`` px wide (output px)."""

    x: float
    y: float
    width: float
    height: float
    colour: str
    line: float = 1.0
    dash: bool = False
    role: str = ""
    data: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Polygon:
    points: tuple[tuple[float, float], ...]
    colour: str


@dataclass(frozen=True, slots=True)
class Label:
    """One line of text: ``x`` its left edge, ``baseline`` its baseline, ``width`` measured."""

    text: str
    x: float
    baseline: float
    size: int
    colour: str
    bold: bool = False
    width: int = 0
    role: str = ""

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the ink's line box."""
        ascent, descent = metrics(self.size)
        return (self.x, self.baseline - ascent, self.x + self.width, self.baseline + descent)


Item = Fill | Outline | Polygon | Label


@dataclass(frozen=True, slots=True)
class Scene:
    width: int
    height: int
    items: tuple[Item, ...]
    panels: tuple[Panel, ...] = ()
    background: str = Theme.page
    title: str = ""
    meta: tuple[tuple[str, Any], ...] = field(default=())


def label(
    text: str,
    x: float,
    top: float,
    size: int,
    colour: str,
    *,
    bold: bool = False,
    align: str = "left",
    role: str = "",
) -> Label:
    """A label whose line box starts at ``top``; ``align`` right/centre measure from ``x``."""
    width = measure(text, size, bold)
    if align == "right":
        x -= width
    elif align == "centre":
        x -= width / 2
    ascent, _ = metrics(size)
    return Label(text, x, top + ascent, size, colour, bold, width, role)


def line_height(size: int) -> int:
    ascent, descent = metrics(size)
    return ascent + descent


def fit(text: str, room: float, size: int, *, bold: bool = False, smallest: int = 9) -> int | None:
    """The largest size <= ``size`` at which ``text`` fits ``room`` px; None below ``smallest``."""
    while size >= smallest:
        if measure(text, size, bold) <= room:
            return size
        size -= 1
    return None


def ellipsize(text: str, room: float, size: int, *, bold: bool = False) -> str:
    """``text`` cut with an ellipsis so it fits ``room`` px at ``size`` (may be empty)."""
    if measure(text, size, bold) <= room:
        return text
    while text and measure(text + "...", size, bold) > room:
        text = text[:-1]
    return text.rstrip(" ,·") + "..." if text else ""
