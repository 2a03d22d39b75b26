"""Compile a spec and the current hosts into a Cloud Transcoder request body.

``compile_layout(spec, hosts, speaker=None, previous=None)`` is deterministic and
pure apart from reading ``env:`` tokens. It orders the hosts (pinned, priority,
join order; allow/deny), decides who is visible and who overflows, gives each
visible host a slot (keeping slots stable across joins and leaves when asked),
places the slots with ``layoutsync.geometry``, and builds the body. The body goes
through the cached schema and semantic validation before it is returned: a body
the service would reject is a compiler bug (``InternalCompilerError``), never a
request that reaches the service.

A result with ``body=None`` means no task is needed (nobody to show or hear).
A video spec needs at least one visible host for a body: the audio+video scenario
chosen at Create cannot turn audio-only, and videoInputs cannot be empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .canonical import canonical_hash
from .errors import InternalCompilerError, SpecError
from .layout import FloatingFrames, Rect, SpeakerFrames, grid_tiles
from .redact import redact
from .spec import LayoutSpec, Watermark
from .validate import MAX_UID, check_request, is_host_uid, wrap_transcoder

__all__ = [
    "Compiled",
    "InternalCompilerError",
    "Placement",
    "SlotAssignment",
    "compile_layout",
    "compile_unchecked",
    "host_order",
]

_MAIN_Z = 0
_OVERLAY_Z = 1


#: uid -> (slot, region, zOrder), what each template's placer returns.
Placed = dict[int, tuple[int, Rect, int]]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one visible host is drawn; ``slot`` is the index that stability keeps."""

    uid: int
    x: int
    y: int
    width: int
    height: int
    z_order: int
    slot: int

    @property
    def rect(self) -> Rect:
        return Rect(self.x, self.y, self.width, self.height)


@dataclass(frozen=True, slots=True)
class SlotAssignment:
    """Which host holds which slot; pass it back as ``previous`` to keep slots stable."""

    template: str = ""
    pairs: tuple[tuple[int, int], ...] = ()  #: (uid, slot), by slot
    #: ``overflow: rotate``: who spoke most recently first (present hosts only)
    recency: tuple[int, ...] = ()

    def slot_of(self, uid: int) -> int | None:
        for host, slot in self.pairs:
            if host == uid:
                return slot
        return None

    def as_dict(self) -> dict[int, int]:
        return dict(self.pairs)


@dataclass(frozen=True, slots=True)
class Compiled:
    """The outcome of one compile. ``body`` is None when no task is needed.

    ``hosts`` are the hosts after allow/deny in order (pinned, priority, join order);
    ``visible`` and ``overflowed`` partition them in that order; ``placements`` are
    by slot; ``audio`` lists the audioInputs uids (0 for the whole-channel mix);
    ``speaker`` is the requested speaker when it is among ``hosts``.
    """

    body: dict[str, Any] | None = field(repr=False, compare=False)
    body_hash: str | None
    hosts: tuple[int, ...]
    visible: tuple[int, ...]
    overflowed: tuple[int, ...]
    audio: tuple[int, ...]
    placements: tuple[Placement, ...]
    slots: SlotAssignment
    speaker: int | None

    @property
    def empty(self) -> bool:
        """No task is needed: nobody to show and nothing to hear."""
        return self.body is None

    def redacted_body(self) -> dict[str, Any] | None:
        """The body with every token replaced by ``***`` (for printing and logs)."""
        return None if self.body is None else redact(self.body)


def compile_layout(
    spec: LayoutSpec,
    hosts: Iterable[int],
    speaker: int | None = None,
    previous: SlotAssignment | Compiled | None = None,
    *,
    env: Mapping[str, str] | None = None,
    tokens: tuple[str, str] | None = None,
) -> Compiled:
    """Compile and validate; ``env`` (default ``os.environ``) resolves ``env:`` tokens.
    ``tokens`` (input, output) overrides the spec's: a session's minted tokens."""
    compiled = compile_unchecked(spec, hosts, speaker, previous, env=env, tokens=tokens)
    if compiled.body is not None:
        errors = check_request(compiled.body)
        if errors:
            listed = "; ".join(map(str, errors))
            raise InternalCompilerError(
                f"layoutsync compiled a body the schema rejects (please report this bug): {listed}"
            )
    return compiled


def compile_unchecked(
    spec: LayoutSpec,
    hosts: Iterable[int],
    speaker: int | None = None,
    previous: SlotAssignment | Compiled | None = None,
    *,
    env: Mapping[str, str] | None = None,
    tokens: tuple[str, str] | None = None,
) -> Compiled:
    """Layout and body building only, without the validation pass (benchmarks time this)."""
    order = host_order(spec, hosts)
    if speaker is not None and (isinstance(speaker, bool) or not isinstance(speaker, int)):
        raise SpecError("speaker", f"{speaker!r} is not a host uid (an integer 1..{MAX_UID})")
    speaker = speaker if speaker in order else None
    prev = previous.slots if isinstance(previous, Compiled) else previous
    template = spec.layout.template
    prior = _prior(spec, prev) if not spec.audio_only else _Prior({}, {}, None, ())

    placed: Placed = {} if spec.audio_only else _PLACERS[template](spec, order, speaker, prior)
    visible = tuple(uid for uid in order if uid in placed)
    overflowed = () if spec.audio_only else tuple(uid for uid in order if uid not in placed)
    audio = _audio(spec, order, visible)
    placements = tuple(
        Placement(uid, r.x, r.y, r.width, r.height, z, slot)
        for uid, (slot, r, z) in sorted(placed.items(), key=lambda item: item[1][0])
    )
    assignment = SlotAssignment(
        template,
        tuple((p.uid, p.slot) for p in placements),
        _recency(spec, order, speaker, prior),
    )

    needed = bool(audio) if spec.audio_only else bool(visible)
    body = _body(spec, placements, audio, env, tokens) if needed else None
    return Compiled(
        body=body,
        body_hash=None if body is None else canonical_hash(body),
        hosts=order,
        visible=visible,
        overflowed=overflowed,
        audio=audio,
        placements=placements,
        slots=assignment,
        speaker=speaker,
    )


def host_order(spec: LayoutSpec, hosts: Iterable[int]) -> tuple[int, ...]:
    """Hosts to compose, in order: pinned, then priority, then join order; allow/deny applied.

    Repeated uids count once. The transcoder's own output uid is skipped when it
    publishes into the input channel (it is not a host).
    """
    seen: dict[int, None] = {}
    for index, uid in enumerate(hosts):
        if not is_host_uid(uid):
            raise SpecError(
                "hosts",
                f"{uid!r} at index {index} is not a host uid (an integer 1..{MAX_UID})",
            )
        seen.setdefault(uid, None)
    layout = spec.layout
    if spec.output_channel == spec.input_channel:
        seen.pop(spec.output_uid, None)
    present = [uid for uid in seen if layout.admits(uid)]
    if not (layout.pinned or layout.priority):
        return tuple(present)
    first = list(
        dict.fromkeys(
            uid for uid in (*layout.pinned, *layout.priority) if uid in seen and layout.admits(uid)
        )
    )
    chosen = set(first)
    return tuple(first + [uid for uid in present if uid not in chosen])


# --- slots --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prior:
    """What the previous compile tells this one: each host's slot and region, who was visible,
    and (``overflow: rotate``) who spoke most recently, first."""

    slots: Mapping[int, int]
    rects: Mapping[int, Rect]
    visible: frozenset[int] | None
    recency: tuple[int, ...]


def _prior(spec: LayoutSpec, prev: SlotAssignment | None) -> _Prior:
    if prev is None or prev.template != spec.layout.template:
        return _Prior({}, {}, None, ())
    slots = prev.as_dict()
    # The previous regions, recomputed from the previous slot count: the compiler is pure,
    # so a Session (which stores only the assignment) and a chain of compiles agree.
    cells = _CELLS[spec.layout.template](spec, len(slots))
    rects = {uid: cells[slot] for uid, slot in slots.items() if slot in cells}
    return _Prior(slots, rects, frozenset(slots), prev.recency)


def _assign(
    hosts: Sequence[int], cells: Mapping[int, Rect], prior: _Prior, stable: bool
) -> dict[int, int]:
    """Give each host a slot of ``cells`` (slot -> region; ``len(hosts) <= len(cells)``).

    ``stable`` moves the fewest regions: a host whose previous region is still offered
    keeps it; the others take the free slots in order, those who were visible (in
    their previous slot order) before newcomers. Otherwise slots follow the order.
    """
    slots = sorted(cells)
    if not stable:
        return dict(zip(hosts, slots, strict=False))
    by_rect = {rect: slot for slot, rect in cells.items()}
    result: dict[int, int] = {}
    taken: set[int] = set()
    for uid in hosts:
        rect = prior.rects.get(uid)
        slot = by_rect.get(rect) if rect is not None else None
        if slot is not None and slot not in taken:
            result[uid] = slot
            taken.add(slot)
    waiting = [uid for uid in hosts if uid not in result]
    waiting.sort(key=lambda uid: prior.slots.get(uid, len(cells) + 1_000_000))
    free = (slot for slot in slots if slot not in taken)
    for uid in waiting:
        result[uid] = next(free)
    return result


def _stable(spec: LayoutSpec) -> bool:
    return spec.layout.stability == "stable"


def _shown(
    spec: LayoutSpec,
    order: tuple[int, ...],
    speaker: int | None,
    prior: _Prior,
    capacity: int,
) -> tuple[int, ...]:
    """Who is visible, in order. Without ``rotate``: the first ``capacity``.

    With ``overflow: rotate`` the visible set carries over from the previous compile;
    pinned hosts and the speaker are always in it, and a host beyond capacity who
    becomes the speaker takes the place of the visible host who spoke least recently
    (never spoke: the latest in order), so nobody else moves.
    """
    capacity = max(0, capacity)
    if spec.layout.overflow != "rotate" or len(order) <= capacity:
        return order[:capacity]
    pinned = set(spec.layout.pinned)
    must = [uid for uid in order if uid in pinned]
    if speaker is not None and speaker not in must:
        must.append(speaker)
    must = must[:capacity]
    held = set(must)
    if prior.visible is None:
        kept = [uid for uid in order if uid not in held][:capacity]
    else:
        kept = [uid for uid in order if uid in prior.visible and uid not in held]
    rank = {uid: index for index, uid in enumerate(prior.recency)}
    position = {uid: index for index, uid in enumerate(order)}
    while len(must) + len(kept) > capacity:
        kept.remove(max(kept, key=lambda uid: (rank.get(uid, len(rank)), position[uid])))
    held.update(kept)
    rest = [uid for uid in order if uid not in held]
    held.update(rest[: capacity - len(held)])
    return tuple(uid for uid in order if uid in held)


def _recency(
    spec: LayoutSpec, order: tuple[int, ...], speaker: int | None, prior: _Prior
) -> tuple[int, ...]:
    """Who spoke most recently, first (present hosts only); carried for ``overflow: rotate``."""
    if spec.layout.overflow != "rotate":
        return ()
    present = set(order)
    head = (speaker,) if speaker is not None else ()
    return head + tuple(uid for uid in prior.recency if uid in present and uid != speaker)


def _grid_cells(spec: LayoutSpec, count: int) -> dict[int, Rect]:
    layout = spec.layout
    return dict(enumerate(grid_tiles(count, spec.area, layout.gap, layout.aspect, layout.last_row)))


def _place_grid(
    spec: LayoutSpec, order: tuple[int, ...], speaker: int | None, prior: _Prior
) -> Placed:
    shown = _shown(spec, order, speaker, prior, spec.max_visible)
    cells = _grid_cells(spec, len(shown))
    slots = _assign(shown, cells, prior, _stable(spec))
    return {uid: (slot, cells[slot], _MAIN_Z) for uid, slot in slots.items()}


def _main_and_others(
    spec: LayoutSpec, order: tuple[int, ...], speaker: int | None, prior: _Prior
) -> tuple[int | None, tuple[int, ...]]:
    if not order:
        return None, ()
    shown = _shown(spec, order, speaker, prior, spec.max_visible)
    main = speaker if speaker is not None else shown[0]
    return main, tuple(uid for uid in shown if uid != main)[: max(0, spec.max_visible - 1)]


def _speaker_cells(spec: LayoutSpec, count: int) -> dict[int, Rect]:
    frames = spec.frames
    assert isinstance(frames, SpeakerFrames)
    cells = {0: frames.main if count > 1 else frames.alone}
    cells.update(enumerate(frames.strip_for(max(0, count - 1)), start=1))
    return cells


def _floating_cells(spec: LayoutSpec, count: int) -> dict[int, Rect]:
    frames = spec.frames
    assert isinstance(frames, FloatingFrames)
    cells = {0: frames.main}
    cells.update(enumerate(frames.overlays_for(max(0, count - 1)), start=1))
    return cells


def _place_speaker(
    spec: LayoutSpec, order: tuple[int, ...], speaker: int | None, prior: _Prior
) -> Placed:
    return _place_main_and_rest(spec, order, speaker, prior, _speaker_cells, _MAIN_Z)


def _place_floating(
    spec: LayoutSpec, order: tuple[int, ...], speaker: int | None, prior: _Prior
) -> Placed:
    return _place_main_and_rest(spec, order, speaker, prior, _floating_cells, _OVERLAY_Z)


def _place_main_and_rest(
    spec: LayoutSpec,
    order: tuple[int, ...],
    speaker: int | None,
    prior: _Prior,
    cells_for: Callable[[LayoutSpec, int], dict[int, Rect]],
    rest_z: int,
) -> Placed:
    """Slot 0 is the main host (the whole area when nobody else is there); slots 1.. the rest."""
    main, others = _main_and_others(spec, order, speaker, prior)
    if main is None:
        return {}
    cells = cells_for(spec, 1 + len(others))
    placed: Placed = {main: (0, cells.pop(0), _MAIN_Z)}
    for uid, slot in _assign(others, cells, prior, _stable(spec)).items():
        placed[uid] = (slot, cells[slot], rest_z)
    return placed


def _custom_cells(spec: LayoutSpec, count: int) -> dict[int, Rect]:
    return {index: slot.rect for index, slot in enumerate(spec.layout.slots)}


def _place_custom(
    spec: LayoutSpec, order: tuple[int, ...], speaker: int | None, prior: _Prior
) -> Placed:
    """Bound slots first (a uid, then the speaker), then "next" slots in order; a slot bound to
    an absent host is one more "next" slot unless ``emptySlot`` is ``blank``."""
    slots = spec.layout.slots
    budget = spec.max_visible
    present = set(order)
    if spec.layout.overflow == "rotate":
        shown = _shown(spec, order, speaker, prior, budget)
        order = shown + tuple(uid for uid in order if uid not in set(shown))
    placed: Placed = {}

    def put(uid: int, index: int) -> None:
        slot = slots[index]
        placed[uid] = (index, slot.rect, slot.z_order)

    for index, slot in enumerate(slots):
        if isinstance(slot.host, int) and slot.host in present and len(placed) < budget:
            put(slot.host, index)
    for index, slot in enumerate(slots):
        if slot.host == "speaker" and len(placed) < budget:
            if speaker is not None and speaker not in placed:
                pick: int | None = speaker
            else:
                pick = next((uid for uid in order if uid not in placed), None)
            if pick is not None:
                put(pick, index)
    fill_vacant = spec.layout.empty_slot == "next"
    used = {index for index, _rect, _z in placed.values()}
    free = {
        index: slot.rect
        for index, slot in enumerate(slots)
        if slot.host == "next" or (fill_vacant and isinstance(slot.host, int) and index not in used)
    }
    waiting = [uid for uid in order if uid not in placed]
    room = min(len(free), budget - len(placed))
    for uid, index in _assign(waiting[:room], free, prior, _stable(spec)).items():
        put(uid, index)
    return placed


_PLACERS: dict[str, Callable[[LayoutSpec, tuple[int, ...], int | None, _Prior], Placed]] = {
    "grid": _place_grid,
    "speaker": _place_speaker,
    "floating": _place_floating,
    "custom": _place_custom,
}
_CELLS: dict[str, Callable[[LayoutSpec, int], dict[int, Rect]]] = {
    "grid": _grid_cells,
    "speaker": _speaker_cells,
    "floating": _floating_cells,
    "custom": _custom_cells,
}


# --- body ---------------------------------------------------------------------------------------


def _audio(spec: LayoutSpec, order: tuple[int, ...], visible: tuple[int, ...]) -> tuple[int, ...]:
    mode = spec.audio_mode
    if mode == "none" or not order:
        return ()
    if mode == "channel":
        return (0,)
    if spec.audio_only or spec.layout.overflow in ("audio-only", "rotate"):
        return order
    return visible


def _body(
    spec: LayoutSpec,
    placements: tuple[Placement, ...],
    audio: tuple[int, ...],
    env: Mapping[str, str] | None,
    tokens: tuple[str, str] | None = None,
) -> dict[str, Any]:
    input_token, output_token = tokens if tokens is not None else spec.tokens(env)
    channel = spec.input_channel
    transcoder: dict[str, Any] = {
        "idleTimeout": spec.idle_timeout,
        "audioInputs": [
            {"rtc": {"rtcChannel": channel, "rtcUid": uid, "rtcToken": input_token}}
            for uid in audio
        ],
    }
    if not spec.audio_only:
        placeholder = spec.placeholder_image
        transcoder["videoInputs"] = [
            {
                "rtc": {"rtcChannel": channel, "rtcUid": p.uid, "rtcToken": input_token},
                "region": {
                    "x": p.x,
                    "y": p.y,
                    "width": p.width,
                    "height": p.height,
                    "zOrder": p.z_order,
                },
                "placeholderImageUrl": placeholder,
            }
            for p in placements
        ]
    canvas = spec.canvas
    transcoder["canvas"] = {"width": canvas.width, "height": canvas.height, "color": canvas.color}
    if canvas.background_image is not None:
        transcoder["canvas"]["backgroundImage"] = canvas.background_image
    if canvas.fill_mode is not None:
        transcoder["canvas"]["fillMode"] = canvas.fill_mode
    if spec.watermarks:
        transcoder["waterMarks"] = [_watermark(mark) for mark in spec.watermarks]
    output: dict[str, Any] = {
        "rtc": {
            "rtcChannel": spec.output_channel,
            "rtcUid": spec.output_uid,
            "rtcToken": output_token,
        }
    }
    if spec.audio_profile is not None:
        output["audioOption"] = {"profileType": spec.audio_profile}
    video = spec.video
    if video is not None:
        option: dict[str, Any] = {
            "fps": video.fps,
            "codec": video.codec,
            "width": video.width,
            "height": video.height,
        }
        if video.bitrate is not None:
            option["bitrate"] = video.bitrate
        if video.low_bitrate_high_quality is not None:
            option["lowBitrateHighQuality"] = video.low_bitrate_high_quality
        output["videoOption"] = option
    transcoder["outputs"] = [output]
    return wrap_transcoder(transcoder)


def _watermark(mark: Watermark) -> dict[str, Any]:
    item: dict[str, Any] = {
        "imageUrl": mark.image_url,
        "region": {
            "x": mark.x,
            "y": mark.y,
            "width": mark.width,
            "height": mark.height,
            "zOrder": mark.z_order,
        },
    }
    if mark.fill_mode is not None:
        item["fillMode"] = mark.fill_mode
    return item
