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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .canonical import canonical_hash
from .errors import InternalCompilerError, SpecError
from .geometry import FloatingFrames, Rect, SpeakerFrames, grid_tiles
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
) -> Compiled:
    """Compile and validate; ``env`` (default ``os.environ``) resolves ``env:`` tokens."""
    compiled = compile_unchecked(spec, hosts, speaker, previous, env=env)
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
) -> Compiled:
    """Layout and body building only, without the validation pass (benchmarks time this)."""
    order = host_order(spec, hosts)
    if speaker is not None and (isinstance(speaker, bool) or not isinstance(speaker, int)):
        raise SpecError("speaker", f"{speaker!r} is not a host uid (an integer 1..{MAX_UID})")
    speaker = speaker if speaker in order else None
    prev = previous.slots if isinstance(previous, Compiled) else previous
    template = spec.layout.template
    prior = prev.as_dict() if prev is not None and prev.template == template else {}

    placed: Placed = {} if spec.audio_only else _PLACERS[template](spec, order, speaker, prior)
    visible = tuple(uid for uid in order if uid in placed)
    overflowed = () if spec.audio_only else tuple(uid for uid in order if uid not in placed)
    audio = _audio(spec, order, visible)
    placements = tuple(
        Placement(uid, r.x, r.y, r.width, r.height, z, slot)
        for uid, (slot, r, z) in sorted(placed.items(), key=lambda item: item[1][0])
    )
    assignment = SlotAssignment(template, tuple((p.uid, p.slot) for p in placements))

    needed = bool(audio) if spec.audio_only else bool(visible)
    body = _body(spec, placements, audio, env) if needed else None
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


def _assign(
    hosts: Sequence[int], slots: Sequence[int], prior: Mapping[int, int], stable: bool
) -> dict[int, int]:
    """Give each host a slot. ``stable``: a host keeps its previous slot when that slot is
    still offered; every other host takes the lowest free slot, in order. Otherwise slots
    follow the order. ``len(hosts) <= len(slots)``."""
    if not stable:
        return dict(zip(hosts, slots, strict=False))
    offered = set(slots)
    result: dict[int, int] = {}
    taken: set[int] = set()
    for uid in hosts:
        slot = prior.get(uid)
        if slot is not None and slot in offered and slot not in taken:
            result[uid] = slot
            taken.add(slot)
    free = (slot for slot in slots if slot not in taken)
    for uid in hosts:
        if uid not in result:
            result[uid] = next(free)
    return result


def _stable(spec: LayoutSpec) -> bool:
    return spec.layout.stability == "stable"


def _place_grid(
    spec: LayoutSpec, order: tuple[int, ...], speaker: int | None, prior: Mapping[int, int]
) -> Placed:
    shown = order[: spec.max_visible]
    tiles = grid_tiles(len(shown), spec.area, spec.layout.gap, spec.layout.aspect)
    slots = _assign(shown, range(len(shown)), prior, _stable(spec))
    return {uid: (slot, tiles[slot], _MAIN_Z) for uid, slot in slots.items()}


def _main_and_others(
    spec: LayoutSpec, order: tuple[int, ...], speaker: int | None
) -> tuple[int | None, tuple[int, ...]]:
    if not order:
        return None, ()
    main = speaker if speaker is not None else order[0]
    others = tuple(uid for uid in order if uid != main)
    return main, others[: max(0, spec.max_visible - 1)]


def _place_speaker(
    spec: LayoutSpec, order: tuple[int, ...], speaker: int | None, prior: Mapping[int, int]
) -> Placed:
    frames = spec.frames
    assert isinstance(frames, SpeakerFrames)
    return _place_main_and_rest(
        spec, order, speaker, prior, frames.main, frames.alone, frames.strip, _MAIN_Z
    )


def _place_floating(
    spec: LayoutSpec, order: tuple[int, ...], speaker: int | None, prior: Mapping[int, int]
) -> Placed:
    frames = spec.frames
    assert isinstance(frames, FloatingFrames)
    return _place_main_and_rest(
        spec, order, speaker, prior, frames.main, frames.main, frames.overlays, _OVERLAY_Z
    )


def _place_main_and_rest(
    spec: LayoutSpec,
    order: tuple[int, ...],
    speaker: int | None,
    prior: Mapping[int, int],
    main_rect: Rect,
    alone_rect: Rect,
    rest: Sequence[Rect],
    rest_z: int,
) -> Placed:
    """Slot 0 is the main host (``alone_rect`` when nobody else is there); slots 1.. the rest."""
    main, others = _main_and_others(spec, order, speaker)
    if main is None:
        return {}
    placed: Placed = {main: (0, main_rect if others else alone_rect, _MAIN_Z)}
    cells = range(1, len(rest) + 1)
    for uid, slot in _assign(others, cells, prior, _stable(spec)).items():
        placed[uid] = (slot, rest[slot - 1], rest_z)
    return placed


def _place_custom(
    spec: LayoutSpec, order: tuple[int, ...], speaker: int | None, prior: Mapping[int, int]
) -> Placed:
    """Bound slots first (a uid, then the speaker), then "next" slots in order."""
    slots = spec.layout.slots
    budget = spec.max_visible
    present = set(order)
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
    free = [index for index, slot in enumerate(slots) if slot.host == "next"]
    waiting = [uid for uid in order if uid not in placed]
    room = min(len(free), budget - len(placed))
    for uid, index in _assign(waiting[:room], free, prior, _stable(spec)).items():
        put(uid, index)
    return placed


_PLACERS = {
    "grid": _place_grid,
    "speaker": _place_speaker,
    "floating": _place_floating,
    "custom": _place_custom,
}


# --- body ---------------------------------------------------------------------------------------


def _audio(spec: LayoutSpec, order: tuple[int, ...], visible: tuple[int, ...]) -> tuple[int, ...]:
    mode = spec.audio_mode
    if mode == "none" or not order:
        return ()
    if mode == "channel":
        return (0,)
    if spec.audio_only or spec.layout.overflow == "audio-only":
        return order
    return visible


def _body(
    spec: LayoutSpec,
    placements: tuple[Placement, ...],
    audio: tuple[int, ...],
    env: Mapping[str, str] | None,
) -> dict[str, Any]:
    input_token, output_token = spec.tokens(env)
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
