"""Pictures of layouts: one layout, a contact sheet of joins, a plan's before and after.

People judge a layout by looking at it. Each function returns a ``Picture``
(``.svg()``, ``.png()``, ``.save(path)``); ``render_svg`` and ``render_png``
are the one-call forms. The SVG is written by hand, the PNG drawn by Pillow
with the font Pillow ships, so both look the same on a fresh machine.

What a picture shows: the canvas at its size and colour (a background image
outlined in blue and named), every region filled in its uid's colour with the
uid, size and zOrder, painted in zOrder order as the service composes them;
the speaker outlined in yellow; watermarks outlined (dashed); hosts that
overflowed in a margin note; a footer with template, canvas, coverage and host
count. A uid has the same colour in every picture.

``python -m layoutsync.preview --write-docs docs/`` redraws the README's pictures.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..compile import Compiled, SlotAssignment, compile_layout
from ..spec import LayoutSpec
from ._layout import SheetPanel, SheetRow, plan_scene, sheet_scene, single_scene
from ._model import Frame, Mark, Tile, coverage, frame_of, marks_between
from ._scene import Scene, uid_colour

if TYPE_CHECKING:
    from ..apply import AsyncSession, Session
    from ..plan import Plan

__all__ = [
    "PREVIEW_ENV",
    "Frame",
    "Mark",
    "Picture",
    "Tile",
    "compile_for_preview",
    "contact_sheet",
    "coverage",
    "frame_of",
    "layout_picture",
    "picture_of_plan",
    "plan_picture",
    "render_png",
    "render_svg",
    "uid_colour",
]


class _AnyToken(Mapping[str, str]):
    """An environment in which every ``env:`` token resolves: pictures need no secrets."""

    def __getitem__(self, key: str) -> str:
        return "preview-token"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


#: Pass as ``env`` to compile a spec for a picture without its token variables set.
PREVIEW_ENV: Mapping[str, str] = _AnyToken()


@dataclass(frozen=True, slots=True)
class Picture:
    """A laid-out picture; ``svg()`` and ``png()`` draw the same thing."""

    scene: Scene

    @property
    def width(self) -> int:
        return self.scene.width

    @property
    def height(self) -> int:
        return self.scene.height

    def svg(self) -> str:
        from ._svg import write_svg

        return write_svg(self.scene)

    def png(self, *, zoom: float = 1.0) -> bytes:
        """PNG bytes; ``zoom=2`` doubles every length for high-density screens."""
        from ._png import write_png

        return write_png(self.scene, zoom)

    def save(self, path: str | os.PathLike[str], *, zoom: float = 1.0) -> Path:
        """Write PNG when the name ends in ``.png``, else SVG."""
        target = Path(path)
        if target.suffix.lower() == ".png":
            target.write_bytes(self.png(zoom=zoom))
        else:
            target.write_text(self.svg(), encoding="utf-8")
        return target


def compile_for_preview(
    spec: LayoutSpec,
    hosts: Iterable[int],
    speaker: int | None = None,
    previous: SlotAssignment | Compiled | None = None,
) -> Compiled:
    """``compile_layout`` with every ``env:`` token resolved to a stand-in."""
    return compile_layout(spec, hosts, speaker, previous, env=PREVIEW_ENV)


def _spec_canvas(spec: LayoutSpec) -> tuple[int, int, int]:
    return (spec.canvas.width, spec.canvas.height, spec.canvas.color)


def _frame(
    body: Mapping[str, Any] | Compiled | None,
    *,
    speaker: int | None,
    overflowed: Iterable[int],
    template: str | None,
    canvas: tuple[int, int, int] | None = None,
    note: str = "nobody to show",
) -> Frame:
    if isinstance(body, Compiled):
        compiled = body
        return frame_of(
            compiled.body,
            speaker=compiled.speaker if speaker is None else speaker,
            overflowed=compiled.overflowed or overflowed,
            template=template,
            canvas=canvas,
            note=note,
        )
    return frame_of(
        body,
        speaker=speaker,
        overflowed=overflowed,
        template=template,
        canvas=canvas,
        note=note,
    )


def layout_picture(
    body: Mapping[str, Any] | Compiled | None,
    *,
    speaker: int | None = None,
    overflowed: Iterable[int] = (),
    template: str | None = None,
    title: str | None = None,
    canvas: tuple[int, int, int] | None = None,
    max_width: int = 960,
    note: str = "nobody to show",
) -> Picture:
    """One layout. ``body`` is a request body (or a ``Compiled``, which brings its speaker
    and overflow); None draws an empty ``canvas`` (width, height, colour) saying ``note``."""
    frame = _frame(
        body,
        speaker=speaker,
        overflowed=overflowed,
        template=template,
        canvas=canvas,
        note=note,
    )
    return Picture(single_scene(frame, title=title, max_width=max_width))


def render_svg(body: Mapping[str, Any] | Compiled | None, **options: Any) -> str:
    """``layout_picture(body, **options).svg()``."""
    return layout_picture(body, **options).svg()


def render_png(body: Mapping[str, Any] | Compiled | None, **options: Any) -> bytes:
    """``layout_picture(body, **options).png()``."""
    zoom = options.pop("zoom", 1.0)
    return layout_picture(body, **options).png(zoom=zoom)


def _uids(uids: Sequence[int]) -> str:
    return ", ".join(map(str, uids))


def sheet_row(
    spec: LayoutSpec,
    max_hosts: int,
    *,
    hosts: Sequence[int] | None = None,
    speaker: int | None = None,
) -> SheetRow:
    """One spec's panels: 1..max_hosts hosts joining in order, slots kept as a session would."""
    if max_hosts < 1:
        raise ValueError(f"max_hosts must be at least 1, not {max_hosts}")
    uids = list(hosts or ())
    taken = set(uids)
    candidate = 101
    while len(uids) < max_hosts:
        if candidate not in taken:
            uids.append(candidate)
        candidate += 1
    template = spec.layout.template if not spec.audio_only else "audio only"
    panels: list[SheetPanel] = []
    previous: Compiled | None = None
    before: Frame | None = None
    for count in range(1, max_hosts + 1):
        present = uids[:count]
        compiled = compile_for_preview(spec, present, speaker, previous)
        frame = _frame(
            compiled, speaker=None, overflowed=(), template=template, canvas=_spec_canvas(spec)
        )
        joined = present[-1]
        if before is None:
            marks: dict[int, Mark] = {}
        else:
            _, marks = marks_between(before, frame)
        moved = sorted(uid for uid, mark in marks.items() if mark == "moved")
        parts = [f"{joined} joined" + ("" if frame.tile(joined) else " (not shown)")]
        if before is not None:
            parts.append(f"{len(moved)} moved" if moved else "nobody moved")
        heading = f"{count} host{'s' if count != 1 else ''}"
        if frame.overflowed:
            heading += f", {len(frame.overflowed)} not shown"
        frame = _with_marks(frame, marks)
        panels.append(SheetPanel(frame, heading, " · ".join(parts), len(moved)))
        previous, before = compiled, frame
    layout = spec.layout
    facts = [
        template,
        f"canvas {spec.canvas.width}x{spec.canvas.height}",
        f"gap {layout.gap}, padding {layout.padding}",
        f"stability {layout.stability}",
        f"overflow {layout.overflow}",
    ]
    if speaker is not None:
        facts.append(f"speaker {speaker}")
    return SheetRow(spec.instance_id, " · ".join(facts), tuple(panels))


def _with_marks(frame: Frame, marks: Mapping[int, Mark]) -> Frame:
    return replace(frame, marks=dict(marks))


def contact_sheet(
    spec: LayoutSpec | Sequence[LayoutSpec],
    max_hosts: int,
    *,
    hosts: Sequence[int] | None = None,
    speaker: int | None = None,
    columns: int = 6,
    panel_width: int = 300,
) -> Picture:
    """A panel per host count 1..max_hosts (hosts join in ``hosts`` order, then 101, 102...),
    hosts that moved since the previous panel marked; one row per spec when given several."""
    specs = [spec] if isinstance(spec, LayoutSpec) else list(spec)
    rows = [sheet_row(s, max_hosts, hosts=hosts, speaker=speaker) for s in specs]
    return Picture(sheet_scene(rows, panel_width=panel_width, columns=columns))


def plan_picture(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | Compiled | None,
    *,
    summary: str,
    reasons: Sequence[str] = (),
    before_speaker: int | None = None,
    after_speaker: int | None = None,
    before_overflowed: Iterable[int] = (),
    after_overflowed: Iterable[int] = (),
    template: str | None = None,
    before_note: str = "",
    after_note: str = "",
    canvas: tuple[int, int, int] | None = None,
) -> Picture:
    """ "Before -> after": the live layout as last applied beside the desired one, with added,
    moved and removed hosts marked. ``summary`` is the plan's one line (``Plan.summary()``)."""
    new = _frame(
        after, speaker=after_speaker, overflowed=after_overflowed, template=template, canvas=canvas
    )
    fallback = canvas or (new.width, new.height, new.color)
    old = frame_of(
        before,
        speaker=before_speaker,
        overflowed=before_overflowed,
        template=template,
        canvas=fallback,
        note="no live task",
    )
    old_marks, new_marks = marks_between(old, new)
    scene = plan_scene(
        _with_marks(old, old_marks),
        _with_marks(new, new_marks),
        before_title="Before: live, as last applied",
        before_note=before_note or ("no task yet" if before is None else "the live task"),
        after_title="After: desired",
        after_note=after_note or ("nothing to show" if new.empty else "what apply sends"),
        summary=summary,
        reasons=reasons,
    )
    return Picture(scene)


def picture_of_plan(session: Session | AsyncSession, plan: Plan) -> Picture:
    """The before -> after picture of ``plan`` for a ``Session`` (what ``plan --preview`` draws)."""
    compiled: Compiled | None = session.compiled
    applied, inputs = session.applied
    spec: LayoutSpec = session.spec
    template = spec.layout.template if not spec.audio_only else "audio only"
    live_hosts = tuple(inputs.hosts) if inputs is not None else ()
    shown = _video_uids(applied)
    seq = f", sequenceId {plan.next_sequence_id}" if plan.next_sequence_id is not None else ""
    task = f"task {plan.task_id}" if plan.task_id else "no task yet"
    return plan_picture(
        applied,
        compiled,
        summary=f"Plan: {plan.summary()}",
        reasons=plan.reasons,
        before_speaker=inputs.speaker if inputs is not None else None,
        before_overflowed=[uid for uid in live_hosts if uid not in shown],
        template=template,
        before_note=task,
        after_note=f"{plan.action}{seq}",
        canvas=_spec_canvas(spec),
    )


def _video_uids(body: Mapping[str, Any] | None) -> set[int]:
    if body is None:
        return set()
    transcoder = body["services"]["cloudTranscoder"]["config"]["transcoder"]
    return {int(item["rtc"]["rtcUid"]) for item in transcoder.get("videoInputs") or ()}
