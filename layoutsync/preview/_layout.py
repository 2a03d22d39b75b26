"""Lay frames out as pictures: one layout, a contact sheet, a plan's before and after."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._model import Frame, Mark, Tile, coverage
from ._scene import (
    Fill,
    Item,
    Label,
    Outline,
    Panel,
    Polygon,
    Scene,
    Theme,
    ellipsize,
    fit,
    label,
    line_height,
    measure,
    text_colour,
    uid_colour,
)

__all__ = ["SheetPanel", "SheetRow", "plan_scene", "sheet_scene", "single_scene"]

MARGIN = 24
MARK_COLOURS: dict[Mark, str] = {
    "added": Theme.added,
    "moved": Theme.moved,
    "removed": Theme.removed,
}
MARK_WORDS: dict[Mark, str] = {"added": "ADDED", "moved": "MOVED", "removed": "REMOVED"}


def _hex(colour: int) -> str:
    return f"#{colour & 0xFFFFFF:06x}"


def _shade(colour: str, factor: float) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{max(0, min(255, round(c * factor))):02x}" for c in (r, g, b))


def _scale(frame: Frame, width: float, height: float) -> float:
    return min(1.0, width / frame.width, height / frame.height)


# --- one canvas ----------------------------------------------------------------------------------


def draw_canvas(
    frame: Frame, panel: Panel, *, compact: bool = False, new_word: str = "ADDED"
) -> list[Item]:
    """Everything drawn on one canvas: the canvas, the tiles in zOrder, marks, watermarks."""
    s = panel.scale
    ox, oy = panel.ox, panel.oy
    pw, ph = frame.width * s, frame.height * s
    items: list[Item] = [
        Fill(0, 0, frame.width, frame.height, _hex(frame.color), "canvas", panel),
    ]
    for tile in frame.tiles:
        items.extend(_tile(frame, tile, panel, compact=compact, new_word=new_word))
    for mark in frame.watermarks:
        x, y, w, h = panel.to_output(mark.x, mark.y, mark.width, mark.height)
        items.append(
            Outline(
                x,
                y,
                w,
                h,
                Theme.watermark,
                1.5,
                dash=True,
                role="watermark",
                data=(
                    ("x", mark.x),
                    ("y", mark.y),
                    ("width", mark.width),
                    ("height", mark.height),
                    ("z", mark.z_order),
                ),
            )
        )
        size = fit(mark.name, w - 8, 12 if compact else 13, smallest=8)
        if size is not None and line_height(size) + 6 <= h:
            text = label(mark.name, x + w / 2, y + h - line_height(size) - 4, size, "#ffffff")
            text = _centred(text, x + w / 2)
            items.append(
                Fill(
                    text.x - 3,
                    text.box[1] - 1,
                    text.width + 6,
                    line_height(size) + 2,
                    "#000000",
                    "watermark-label",
                    radius=2,
                    opacity=0.55,
                )
            )
            items.append(text)
    if frame.empty or frame.audio_only:
        words = frame.note if frame.empty else "audio only: no video output"
        size = fit(words, pw - 16, 12 if compact else 18, smallest=8)
        if size is not None:
            items.append(
                label(
                    words,
                    ox + pw / 2,
                    oy + ph / 2 - line_height(size) / 2,
                    size,
                    Theme.muted,
                    align="centre",
                    role="note",
                )
            )
    if frame.background:
        items.append(
            Outline(
                ox + 1, oy + 1, pw - 2, ph - 2, Theme.background, 1.5, dash=True, role="background"
            )
        )
    items.append(Outline(ox - 1, oy - 1, pw + 2, ph + 2, Theme.panel_edge, 1, role="edge"))
    return items


def _centred(text: Label, centre: float) -> Label:
    return Label(
        text.text,
        centre - text.width / 2,
        text.baseline,
        text.size,
        text.colour,
        text.bold,
        text.width,
        text.role,
    )


def _tile(frame: Frame, tile: Tile, panel: Panel, *, compact: bool, new_word: str) -> list[Item]:
    colour = uid_colour(tile.uid)
    mark = frame.marks.get(tile.uid)
    removed = mark == "removed"
    x, y, w, h = panel.to_output(tile.x, tile.y, tile.width, tile.height)
    data = (
        ("uid", tile.uid),
        ("z", tile.z_order),
    )
    items: list[Item] = [
        Fill(
            tile.x,
            tile.y,
            tile.width,
            tile.height,
            colour,
            "region",
            panel,
            opacity=0.4 if removed else 1.0,
            data=data,
        ),
        Outline(x, y, w, h, _shade(colour, 0.6), 1, role="tile-edge"),
    ]
    ink = "#ffffff" if removed else text_colour(colour)
    badges: list[tuple[str, str]] = []
    if tile.uid == frame.speaker:
        items.append(Outline(x, y, w, h, Theme.speaker, 3, role="speaker", data=data[:1]))
        badges.append(("SPEAKER", Theme.speaker))
    if mark is not None:
        inset = 3 if tile.uid == frame.speaker else 0
        items.append(
            Outline(
                x + inset,
                y + inset,
                w - 2 * inset,
                h - 2 * inset,
                MARK_COLOURS[mark],
                2.5,
                dash=mark != "added",
                role=mark,
                data=data[:1],
            )
        )
        word = new_word if mark == "added" else MARK_WORDS[mark]
        badges.append((word, MARK_COLOURS[mark]))
    badge_items, badge_bottom = _badges(badges, x, y, w, h, compact=compact)
    items.extend(badge_items)
    items.extend(_tile_text(tile, x, y, w, h, ink, compact=compact, top=badge_bottom))
    return items


def _badges(
    badges: list[tuple[str, str]], x: float, y: float, w: float, h: float, *, compact: bool
) -> tuple[list[Item], float]:
    """Small filled tags in the tile's top-left corner; returns them and their bottom edge."""
    if not badges:
        return [], y
    size = 9 if compact else 11
    pad = 4 if compact else 6
    height = line_height(size) + 4
    if height * 3 > h:
        return [], y
    items: list[Item] = []
    cx = x + pad
    for word, colour in badges:
        width = measure(word, size) + 8
        if cx + width > x + w - pad:
            break
        items.append(Fill(cx, y + pad, width, height, colour, "badge", radius=3))
        items.append(label(word, cx + 4, y + pad + 2, size, "#111318", role="badge"))
        cx += width + 4
    return items, (y + pad + height if items else y)


def _tile_text(
    tile: Tile, x: float, y: float, w: float, h: float, ink: str, *, compact: bool, top: float
) -> list[Item]:
    """The uid, large, and its size and zOrder below it, centred in what the badges leave."""
    uid = str(tile.uid)
    dims = f"{tile.width}x{tile.height}  z{tile.z_order}"
    room_w = w - 10
    area_top = max(y + 3, top + 2)
    room_h = y + h - 3 - area_top
    biggest = max(9, min(int(h * 0.3), int(w * 0.2), 22 if compact else 40))
    size = fit(uid, room_w, biggest, bold=True)
    if size is None or line_height(size) > room_h:
        size = fit(uid, room_w, max(9, int(room_h * 0.8)), bold=True)
        if size is None or line_height(size) > room_h:
            return []
    small = max(9, round(size * 0.5))
    show_dims = (
        (not compact or w >= 150)
        and measure(dims, small) <= room_w
        and line_height(size) + line_height(small) + 2 <= room_h
    )
    block = line_height(size) + (line_height(small) + 2 if show_dims else 0)
    middle = y + h / 2
    start = min(max(middle - block / 2, area_top), y + h - 3 - block)
    items: list[Item] = [
        label(uid, x + w / 2, start, size, ink, bold=True, align="centre", role="uid")
    ]
    if show_dims:
        items.append(
            label(
                dims,
                x + w / 2,
                start + line_height(size) + 2,
                small,
                ink,
                align="centre",
                role="dims",
            )
        )
    return items


# --- footers and notes ---------------------------------------------------------------------------


def frame_facts(frame: Frame) -> list[str]:
    """The footer's parts: template, canvas, coverage, host count."""
    parts = []
    if frame.template:
        parts.append(frame.template)
    parts.append(f"canvas {frame.width}x{frame.height} {_hex(frame.color)}")
    if not frame.empty and not frame.audio_only:
        parts.append(f"coverage {coverage(frame) * 100:.1f}%")
    shown, hidden = len(frame.tiles), len(frame.overflowed)
    if frame.audio_only:
        heard = len(frame.heard - {0})
        parts.append("the whole channel heard" if 0 in frame.heard else f"{heard} heard")
        return parts
    hosts = f"{frame.hosts} host{'s' if frame.hosts != 1 else ''}"
    if hidden:
        hosts += f": {shown} shown, {hidden} overflowed"
    parts.append(hosts)
    return parts


def frame_extras(frame: Frame) -> list[str]:
    parts = []
    if frame.background:
        mode = f", {frame.fill_mode}" if frame.fill_mode else ""
        parts.append(f"background image {frame.background}{mode} (blue outline)")
    for mark in frame.watermarks:
        parts.append(f"watermark {mark.name} {mark.width}x{mark.height} z{mark.z_order}")
    return parts


def wrap(parts: Sequence[str], room: float, size: int, *, joiner: str = "  ·  ") -> list[str]:
    """Join ``parts`` into lines no wider than ``room`` (a part too long is ellipsized)."""
    lines: list[str] = []
    current = ""
    for part in parts:
        candidate = f"{current}{joiner}{part}" if current else part
        if measure(candidate, size) <= room:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = ellipsize(part, room, size)
    if current:
        lines.append(current)
    return lines


def text_block(
    lines: Sequence[str],
    x: float,
    top: float,
    size: int,
    colour: str,
    *,
    bold: bool = False,
    gap: int = 4,
    role: str = "",
) -> tuple[list[Item], float]:
    """Lines stacked from ``top``; returns them and the bottom."""
    items: list[Item] = []
    for line in lines:
        items.append(label(line, x, top, size, colour, bold=bold, role=role))
        top += line_height(size) + gap
    return items, top


def overflow_lines(frame: Frame, room: float, size: int) -> list[tuple[str, bool]]:
    """The margin note: (line, is_heading) pairs for the hosts that were not placed."""
    heard = [u for u in frame.overflowed if u in frame.heard or 0 in frame.heard]
    dropped = [u for u in frame.overflowed if u not in heard]
    out: list[tuple[str, bool]] = [(f"Not shown ({len(frame.overflowed)})", True)]
    for title, uids in (("audio only", heard), ("dropped", dropped)):
        if uids:
            out.append((title, False))
            out.extend(
                (line, False) for line in wrap([str(u) for u in uids], room, size, joiner=", ")
            )
    return out


# --- pictures ------------------------------------------------------------------------------------


def single_scene(frame: Frame, *, title: str | None = None, max_width: int = 960) -> Scene:
    """One layout: title, canvas, margin note (overflow), footer."""
    s = _scale(frame, max_width, max_width * 0.75)
    cw, ch = frame.width * s, frame.height * s
    note_w = 200 if frame.overflowed else 0
    width = round(MARGIN + cw + (20 + note_w if note_w else 0) + MARGIN)
    items: list[Item] = []
    top: float = MARGIN
    if title:
        text = ellipsize(title, width - 2 * MARGIN, 18, bold=True)
        items.append(label(text, MARGIN, top, 18, Theme.text, bold=True, role="title"))
        top += line_height(18) + 10
    panel = Panel(MARGIN, top, s, frame.width, frame.height)
    items.extend(draw_canvas(frame, panel))
    bottom = top + ch
    if note_w:
        note_x = MARGIN + cw + 20
        y: float = top
        for line, heading in overflow_lines(frame, note_w, 13):
            size = 14 if heading else 13
            colour = Theme.text if heading else Theme.muted
            items.append(label(line, note_x, y, size, colour, bold=heading, role="note"))
            y += line_height(size) + (8 if heading else 3)
        bottom = max(bottom, y)
    y = bottom + 12
    room = width - 2 * MARGIN
    block, y = text_block(
        wrap(frame_facts(frame), room, 14), MARGIN, y, 14, Theme.text, role="footer"
    )
    items.extend(block)
    extras = frame_extras(frame)
    if extras:
        block, y = text_block(wrap(extras, room, 13), MARGIN, y, 13, Theme.muted, role="footer")
        items.extend(block)
    return Scene(width, round(y - 4 + MARGIN), tuple(items), (panel,), title=title or "")


@dataclass(frozen=True, slots=True)
class SheetPanel:
    frame: Frame
    heading: str  #: "3 hosts"
    change: str  #: "103 joined · 2 moved"
    moved: int = 0


@dataclass(frozen=True, slots=True)
class SheetRow:
    title: str
    subtitle: str
    panels: tuple[SheetPanel, ...]


def sheet_scene(rows: Sequence[SheetRow], *, panel_width: int = 300, columns: int = 6) -> Scene:
    """A contact sheet: per row (one spec) a panel per host count, wrapped at ``columns``."""
    gap_x, gap_y = 20, 22
    widest = max(min(columns, len(row.panels)) for row in rows)
    width = round(2 * MARGIN + widest * panel_width + (widest - 1) * gap_x)
    items: list[Item] = []
    panels: list[Panel] = []
    y: float = MARGIN
    for row_index, row in enumerate(rows):
        if row_index:
            y += 10
            items.append(Fill(MARGIN, y, width - 2 * MARGIN, 1, Theme.panel_edge, "rule"))
            y += 20
        title = ellipsize(row.title, width - 2 * MARGIN, 17, bold=True)
        items.append(label(title, MARGIN, y, 17, Theme.text, bold=True, role="title"))
        y += line_height(17) + 4
        block, y = text_block(
            wrap([row.subtitle], width - 2 * MARGIN, 13),
            MARGIN,
            y,
            13,
            Theme.muted,
            role="subtitle",
        )
        items.extend(block)
        y += 10
        for start in range(0, len(row.panels), columns):
            chunk = row.panels[start : start + columns]
            tallest = 0.0
            for col, entry in enumerate(chunk):
                frame = entry.frame
                px = MARGIN + col * (panel_width + gap_x)
                s = panel_width / frame.width
                items.append(label(entry.heading, px, y, 13, Theme.text, bold=True, role="caption"))
                cov = "" if frame.empty or frame.audio_only else f"{coverage(frame) * 100:.0f}%"
                if cov:
                    items.append(
                        label(
                            f"coverage {cov}",
                            px + panel_width,
                            y,
                            12,
                            Theme.muted,
                            align="right",
                            role="caption",
                        )
                    )
                line2 = y + line_height(13) + 3
                colour = Theme.moved if entry.moved else Theme.muted
                text = ellipsize(entry.change, panel_width, 12)
                items.append(label(text, px, line2, 12, colour, role="caption"))
                top = line2 + line_height(12) + 6
                panel = Panel(px, top, s, frame.width, frame.height, len(panels))
                panels.append(panel)
                items.extend(draw_canvas(frame, panel, compact=True, new_word="NEW"))
                tallest = max(tallest, top + frame.height * s - y)
            y += tallest + gap_y
    y += 2
    legend, y = _legend(
        [
            ("speaker", Theme.speaker, False),
            ("NEW: joined in this panel", Theme.added, False),
            ("MOVED since the previous panel", Theme.moved, True),
            ("watermark", Theme.watermark, True),
            ("background image", Theme.background, True),
        ],
        MARGIN,
        y,
        width - 2 * MARGIN,
    )
    items.extend(legend)
    return Scene(width, round(y + MARGIN - 6), tuple(items), tuple(panels))


def _legend(
    entries: Sequence[tuple[str, str, bool]], x0: float, y: float, room: float
) -> tuple[list[Item], float]:
    items: list[Item] = []
    x = x0
    size = 12
    row_h = line_height(size) + 6
    for text, colour, dash in entries:
        width = 22 + 6 + measure(text, size) + 18
        if x > x0 and x + width > x0 + room:
            x = x0
            y += row_h
        items.append(
            Outline(x, y + 2, 22, line_height(size) - 2, colour, 2, dash=dash, role="legend")
        )
        items.append(label(text, x + 28, y, size, Theme.muted, role="legend"))
        x += width
    return items, y + row_h


def plan_scene(
    before: Frame,
    after: Frame,
    *,
    before_title: str,
    before_note: str,
    after_title: str,
    after_note: str,
    summary: str,
    reasons: Sequence[str] = (),
    max_panel: int = 600,
) -> Scene:
    """Before (live) and after (desired) side by side, with an arrow and the plan's summary."""
    arrow_w = 64
    sb = _scale(before, max_panel, max_panel * 0.75)
    sa = _scale(after, max_panel, max_panel * 0.75)
    bw, bh = before.width * sb, before.height * sb
    aw, ah = after.width * sa, after.height * sa
    width = round(2 * MARGIN + bw + arrow_w + aw)
    items: list[Item] = []
    top: float = MARGIN
    heads_bottom = top
    for x, w, title, note in (
        (MARGIN, bw, before_title, before_note),
        (MARGIN + bw + arrow_w, aw, after_title, after_note),
    ):
        items.append(
            label(
                ellipsize(title, w, 16, bold=True), x, top, 16, Theme.text, bold=True, role="title"
            )
        )
        block, bottom = text_block(
            wrap([note], w, 13), x, top + line_height(16) + 4, 13, Theme.muted, role="subtitle"
        )
        items.extend(block)
        heads_bottom = max(heads_bottom, bottom)
    canvas_top = heads_bottom + 6
    left = Panel(MARGIN, canvas_top, sb, before.width, before.height, 0)
    right = Panel(MARGIN + bw + arrow_w, canvas_top, sa, after.width, after.height, 1)
    items.extend(draw_canvas(before, left))
    items.extend(draw_canvas(after, right))
    mid = canvas_top + max(bh, ah) / 2
    ax = MARGIN + bw + 14
    items.append(Fill(ax, mid - 3, arrow_w - 40, 6, Theme.muted, "arrow"))
    items.append(
        Polygon(
            (
                (ax + arrow_w - 40, mid - 12),
                (ax + arrow_w - 26, mid),
                (ax + arrow_w - 40, mid + 12),
            ),
            Theme.muted,
        )
    )
    bottom = canvas_top + max(bh, ah) + 12
    for panel_x, w, frame in ((MARGIN, bw, before), (MARGIN + bw + arrow_w, aw, after)):
        block, end = text_block(
            wrap(frame_facts(frame) + frame_extras(frame), w, 13),
            panel_x,
            canvas_top + (bh if frame is before else ah) + 12,
            13,
            Theme.muted,
            role="footer",
        )
        items.extend(block)
        if frame.overflowed:
            names = ", ".join(map(str, frame.overflowed))
            block, end = text_block(
                wrap([f"not shown: {names}"], w, 13), panel_x, end, 13, Theme.muted, role="footer"
            )
            items.extend(block)
        bottom = max(bottom, end)
    y = bottom + 8
    block, y = text_block(
        wrap([summary], width - 2 * MARGIN, 16),
        MARGIN,
        y,
        16,
        Theme.text,
        bold=True,
        role="summary",
    )
    items.extend(block)
    if reasons:
        block, y = text_block(
            wrap(list(reasons), width - 2 * MARGIN, 13, joiner="; "),
            MARGIN,
            y,
            13,
            Theme.muted,
            role="summary",
        )
        items.extend(block)
    legend, y = _legend(
        [
            ("ADDED", Theme.added, False),
            ("MOVED (position, size or zOrder)", Theme.moved, True),
            ("REMOVED", Theme.removed, True),
            ("speaker", Theme.speaker, False),
        ],
        MARGIN,
        y + 4,
        width - 2 * MARGIN,
    )
    items.extend(legend)
    return Scene(width, round(y + MARGIN - 6), tuple(items), (left, right))
