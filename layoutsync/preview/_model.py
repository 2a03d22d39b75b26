"""What a picture shows, read from a request body: the canvas, the tiles, the marks.

A ``Frame`` is one canvas as the service will compose it, in canvas pixels.
It is built from a Create/Update body (``frame_of``) plus what the body does
not say: who is the speaker, who overflowed, which template made it, and
what changed since another frame (``marks_between``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "Frame",
    "Mark",
    "Tile",
    "WatermarkBox",
    "coverage",
    "frame_of",
    "image_name",
    "marks_between",
]

#: How a tile changed against the frame it is compared with.
Mark = Literal["added", "moved", "removed"]


@dataclass(frozen=True, slots=True)
class Tile:
    """One video input's region, in canvas px."""

    uid: int
    x: int
    y: int
    width: int
    height: int
    z_order: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)


@dataclass(frozen=True, slots=True)
class WatermarkBox:
    name: str
    x: int
    y: int
    width: int
    height: int
    z_order: int


@dataclass(frozen=True, slots=True)
class Frame:
    """One canvas to draw. ``tiles`` are in paint order (zOrder, then body order)."""

    width: int
    height: int
    color: int = 0
    background: str | None = None  #: the background image's name (file part of its URL)
    fill_mode: str | None = None
    tiles: tuple[Tile, ...] = ()
    watermarks: tuple[WatermarkBox, ...] = ()
    speaker: int | None = None
    overflowed: tuple[int, ...] = ()
    heard: frozenset[int] = frozenset()  #: uids in audioInputs (0: the whole channel)
    template: str | None = None
    audio_only: bool = False
    empty: bool = False  #: no body: nothing on air
    note: str = "nobody to show"  #: what an empty frame says
    marks: Mapping[int, Mark] = field(default_factory=dict)

    @property
    def hosts(self) -> int:
        return len(self.tiles) + len(self.overflowed)

    def tile(self, uid: int) -> Tile | None:
        return next((t for t in self.tiles if t.uid == uid), None)


def image_name(url: str) -> str:
    """``https://cdn.example.com/a/logo.png?v=2`` -> ``logo.png`` (what a person calls it)."""
    path = urlsplit(url).path
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name or urlsplit(url).netloc or url


def frame_of(
    body: Mapping[str, Any] | None,
    *,
    speaker: int | None = None,
    overflowed: Iterable[int] = (),
    template: str | None = None,
    canvas: tuple[int, int, int] | None = None,
    note: str = "nobody to show",
) -> Frame:
    """The frame a body composes. ``body=None`` draws an empty ``canvas`` (width, height,
    colour; 1280x720 black when not given) that says ``note``."""
    if body is None:
        width, height, color = canvas or (1280, 720, 0)
        return Frame(width, height, color, template=template, empty=True, note=note)
    transcoder = body["services"]["cloudTranscoder"]["config"]["transcoder"]
    raw_canvas = transcoder.get("canvas") or {}
    outputs = transcoder.get("outputs") or [{}]
    video = outputs[0].get("videoOption") or {}
    width = int(raw_canvas.get("width") or video.get("width") or 1280)
    height = int(raw_canvas.get("height") or video.get("height") or 720)
    inputs = transcoder.get("videoInputs")
    tiles = []
    for item in inputs or ():
        region = item["region"]
        tiles.append(
            Tile(
                int(item["rtc"]["rtcUid"]),
                int(region["x"]),
                int(region["y"]),
                int(region["width"]),
                int(region["height"]),
                int(region.get("zOrder", 0)),
            )
        )
    order = sorted(range(len(tiles)), key=lambda i: (tiles[i].z_order, i))
    marks = tuple(
        WatermarkBox(
            image_name(str(mark.get("imageUrl", ""))),
            int(mark["region"]["x"]),
            int(mark["region"]["y"]),
            int(mark["region"]["width"]),
            int(mark["region"]["height"]),
            int(mark["region"].get("zOrder", 0)),
        )
        for mark in transcoder.get("waterMarks") or ()
    )
    background = raw_canvas.get("backgroundImage")
    shown = {t.uid for t in tiles}
    return Frame(
        width=width,
        height=height,
        color=int(_colour(raw_canvas.get("color", 0))),
        background=image_name(background) if background else None,
        fill_mode=raw_canvas.get("fillMode") if background else None,
        tiles=tuple(tiles[i] for i in order),
        watermarks=tuple(sorted(marks, key=lambda m: m.z_order)),
        speaker=speaker if speaker in shown else None,
        overflowed=tuple(uid for uid in overflowed if uid not in shown),
        heard=frozenset(int(a["rtc"]["rtcUid"]) for a in transcoder.get("audioInputs") or ()),
        template=template,
        audio_only=inputs is None,
    )


def _colour(value: Any) -> int:
    if isinstance(value, str) and value.startswith("#"):
        return int(value[1:], 16)
    return int(value or 0)


def marks_between(before: Frame, after: Frame) -> tuple[dict[int, Mark], dict[int, Mark]]:
    """(marks for ``before``, marks for ``after``): removed hosts in the first, added and
    moved (any change of x, y, size or zOrder) in the second, and moved in both."""
    old = {t.uid: t for t in before.tiles}
    new = {t.uid: t for t in after.tiles}
    before_marks: dict[int, Mark] = {}
    after_marks: dict[int, Mark] = {}
    for uid, tile in new.items():
        if uid not in old:
            after_marks[uid] = "added"
        elif old[uid] != tile:
            after_marks[uid] = before_marks[uid] = "moved"
    for uid in old:
        if uid not in new:
            before_marks[uid] = "removed"
    return before_marks, after_marks


def coverage(frame: Frame) -> float:
    """The share of the canvas that some tile covers (overlaps counted once), 0..1."""
    boxes = [
        (
            max(0, t.x),
            max(0, t.y),
            min(frame.width, t.x + t.width),
            min(frame.height, t.y + t.height),
        )
        for t in frame.tiles
    ]
    boxes = [b for b in boxes if b[0] < b[2] and b[1] < b[3]]
    if not boxes or frame.width <= 0 or frame.height <= 0:
        return 0.0
    xs = sorted({x for b in boxes for x in (b[0], b[2])})
    covered = 0
    for left, right in itertools.pairwise(xs):
        spans = sorted((b[1], b[3]) for b in boxes if b[0] <= left and b[2] >= right)
        length, reach = 0, -1
        for top, bottom in spans:
            if bottom <= reach:
                continue
            length += bottom - max(top, reach)
            reach = bottom
        covered += length * (right - left)
    return covered / (frame.width * frame.height)
