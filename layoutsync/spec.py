"""The layout spec: a short file a person writes, checked and turned into frozen values.

``load_spec`` reads JSON (or TOML, by the ``.toml`` suffix) or takes a mapping,
checks it against ``schemas/layout-spec.schema.json`` and then against the rules a
schema cannot express (a pinned host that is denied, a canvas too small for one
tile, a watermark outside the canvas, a key of another template...). Every problem
is reported at once as a ``SpecError`` naming the field by JSON pointer.

Tokens stay unresolved in the spec (``"env:NAME"`` references are read when a body
is compiled), so a ``LayoutSpec`` can be printed, logged and hashed without
leaking a secret. With a top-level ``tokens`` object the tokens are minted
(``layoutsync.tokens``) and the spec keeps only a reference to the App Certificate.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import jsonschema

from ._resources import load_schema
from .canonical import canonical_hash
from .errors import FieldError, SpecError
from .layout import (
    DEFAULT_EMPTY_SLOT,
    DEFAULT_LAST_ROW,
    MIN_TILE,
    Aspect,
    FloatingFrames,
    Rect,
    SpeakerFrames,
    even,
    floating_frames,
    grid_capacity,
    inner_area,
    parse_aspect,
    slot_rect,
    speaker_frames,
)
from .validate import make_validator, schema_errors

__all__ = [
    "Canvas",
    "LayoutOptions",
    "LayoutSpec",
    "Slot",
    "SpecFileError",
    "Token",
    "TokenSettings",
    "VideoOptions",
    "Watermark",
    "load_spec",
    "read_spec_document",
    "session_name",
]


def session_name(path: str | os.PathLike[str]) -> str:
    """The session a spec file drives, for the CLI and the daemon alike: the file's stem
    (``specs/lobby.json`` -> ``lobby``), so both find each other's state rows."""
    return Path(path).stem


_ENV_PREFIX: Final = "env:"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Keys of ``layout`` that belong to one template only.
TEMPLATE_KEYS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "grid": ("lastRow",),
        "speaker": ("position", "stripFraction", "stripTiles"),
        "floating": ("corner", "tileWidth", "tileHeight", "margin", "columns", "rows"),
        "custom": ("units", "slots", "emptySlot"),
    }
)

_LAYOUT_DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "template": "grid",
        "gap": 0,
        "padding": 0,
        "aspect": "16:9",
        "maxTiles": None,
        "overflow": "audio-only",
        "stability": "stable",
        "pinned": [],
        "priority": [],
        "allow": None,
        "deny": [],
    }
)
_TEMPLATE_DEFAULTS: Final[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        "grid": {"lastRow": DEFAULT_LAST_ROW},
        "speaker": {"position": "right", "stripFraction": 0.25, "stripTiles": 4},
        "floating": {
            "corner": "bottom-left",
            "tileWidth": 256,
            "tileHeight": 144,
            "margin": 16,
            "columns": 4,
            "rows": 4,
        },
        "custom": {"units": "px", "emptySlot": DEFAULT_EMPTY_SLOT},
    }
)


class SpecFileError(SpecError):
    """The spec file is missing, unreadable or not JSON/TOML (the CLI exits 2 on it)."""

    def _render(self) -> str:
        head = f"{self.source}: " if self.source else ""
        return head + "; ".join(error.message for error in self.errors)


# --- values -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    """An RTC token as the spec gives it: a literal, or ``env:NAME`` read when compiling."""

    pointer: str  #: where it sits in the spec, e.g. ``/input/token``
    env: str | None = None  #: the variable name of an ``env:`` reference
    literal: str | None = field(default=None, repr=False)

    def resolve(self, environ: Mapping[str, str] | None = None) -> str:
        """The token's value; a missing variable is a ``SpecError`` naming field and variable."""
        if self.env is None:
            return self.literal or ""
        value = (os.environ if environ is None else environ).get(self.env)
        if value is None:
            raise SpecError(self.pointer, f"environment variable {self.env} is not set")
        return value

    def __repr__(self) -> str:
        shown = f"env:{self.env}" if self.env is not None else "***"
        return f"Token({self.pointer}, {shown})"


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """``tokens``: mint the rtcTokens from the App Certificate (see ``layoutsync.tokens``).

    The certificate stays a reference (``env:NAME`` or ``file:PATH``), read each time a
    token is minted, so the spec holds no secret and a rotated file is picked up.
    """

    certificate_env: str | None = None
    certificate_file: str | None = None
    lifetime: int = 86400
    renew_before: int = 3600
    output_expiry: str = "warn"  #: "warn" or "replace" (a scheduled Delete + Create)

    def certificate(self, environ: Mapping[str, str] | None = None) -> str:
        """The App Certificate; a missing variable or unreadable file is a ``SpecError``."""
        where = "/tokens/appCertificate"
        if self.certificate_env is not None:
            value = (os.environ if environ is None else environ).get(self.certificate_env)
            if not value:
                raise SpecError(where, f"environment variable {self.certificate_env} is not set")
            return value.strip()
        assert self.certificate_file is not None
        try:
            value = Path(self.certificate_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise SpecError(where, f"cannot read {self.certificate_file}: {reason}") from None
        if not value:
            raise SpecError(where, f"{self.certificate_file} is empty")
        return value

    def __repr__(self) -> str:
        shown = (
            f"env:{self.certificate_env}"
            if self.certificate_env is not None
            else f"file:{self.certificate_file}"
        )
        return f"TokenSettings({shown}, lifetime={self.lifetime}, renew_before={self.renew_before})"


@dataclass(frozen=True, slots=True)
class Canvas:
    width: int
    height: int
    color: int = 0
    background_image: str | None = None
    fill_mode: str | None = None


@dataclass(frozen=True, slots=True)
class VideoOptions:
    """``output.video``: the published stream's encoding."""

    width: int
    height: int
    fps: int = 15
    codec: str = "H264"
    bitrate: int | None = None
    low_bitrate_high_quality: bool | None = None


@dataclass(frozen=True, slots=True)
class Watermark:
    image_url: str
    x: int
    y: int
    width: int
    height: int
    z_order: int = 100
    fill_mode: str | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    """A custom slot, already in even canvas pixels; ``host`` is a uid, "speaker" or "next"."""

    x: int
    y: int
    width: int
    height: int
    z_order: int
    host: int | str = "next"

    @property
    def rect(self) -> Rect:
        return Rect(self.x, self.y, self.width, self.height)


@dataclass(frozen=True, slots=True)
class LayoutOptions:
    """``layout``: common keys, then the keys of each template (defaults when unused)."""

    template: str = "grid"
    gap: int = 0
    padding: int = 0
    aspect: Aspect = field(default_factory=lambda: parse_aspect("16:9"))
    max_tiles: int | None = None
    overflow: str = "audio-only"
    stability: str = "stable"
    pinned: tuple[int, ...] = ()
    priority: tuple[int, ...] = ()
    allow: frozenset[int] | None = None
    deny: frozenset[int] = frozenset()
    # grid
    last_row: str = DEFAULT_LAST_ROW
    # speaker
    position: str = "right"
    strip_fraction: tuple[int, int] = (1, 4)  #: exact, as numerator and denominator
    strip_tiles: int = 4
    # floating
    corner: str = "bottom-left"
    tile_width: int = 256
    tile_height: int = 144
    margin: int = 16
    columns: int = 4
    rows: int = 4
    # custom
    units: str = "px"
    slots: tuple[Slot, ...] = ()
    empty_slot: str = DEFAULT_EMPTY_SLOT

    def admits(self, uid: int) -> bool:
        """Whether ``allow``/``deny`` let this host be composed."""
        return uid not in self.deny and (self.allow is None or uid in self.allow)


@dataclass(frozen=True, slots=True, eq=False)
class LayoutSpec:
    """A checked spec. Equal specs (same normalized content) have equal fingerprints and compare
    equal; ``raw`` is that normalized document, read-only, with tokens unresolved."""

    instance_id: str
    input_channel: str
    input_token: Token = field(repr=False)
    output_channel: str
    output_uid: int
    output_token: Token = field(repr=False)
    video: VideoOptions | None
    audio_profile: str | None
    canvas: Canvas
    placeholder_image: str | None
    watermarks: tuple[Watermark, ...]
    idle_timeout: int
    on_empty: str
    audio_mode: str
    layout: LayoutOptions
    capacity: int  #: most visible hosts the template's geometry holds (0 when audio-only)
    fingerprint: str
    source: str | None = None
    raw: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    frames: SpeakerFrames | FloatingFrames | None = field(default=None, repr=False)
    #: ``tokens``: minted rtcTokens (None: ``input.token``/``output.token`` as given)
    token_settings: TokenSettings | None = None

    @property
    def audio_only(self) -> bool:
        """No ``output.video``: the vendor's audio-only scenario (no videoInputs)."""
        return self.video is None

    @property
    def max_visible(self) -> int:
        """Capacity, lowered by ``layout.maxTiles`` when that is set."""
        if self.layout.max_tiles is None:
            return self.capacity
        return min(self.capacity, self.layout.max_tiles)

    @property
    def area(self) -> Rect:
        """The canvas inside the padding, where grid and speaker tiles go."""
        return inner_area(self.canvas.width, self.canvas.height, self.layout.padding)

    def tokens(self, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
        """(input token, output token), resolved; every missing variable in one SpecError.

        With ``tokens`` (minted) this mints a fresh pair valid from now, for showing a
        body (``compile --show-secrets``); a session mints and keeps its task's own.
        """
        if self.token_settings is not None:
            from .tokens import TokenMinter  # the token library only where tokens are minted

            return TokenMinter(self.token_settings, environ=environ).fresh_pair(self)
        values: list[str] = []
        problems: list[FieldError] = []
        for token in (self.input_token, self.output_token):
            try:
                values.append(token.resolve(environ))
            except SpecError as exc:
                problems.extend(exc.errors)
        if problems:
            raise SpecError(problems, source=self.source)
        return values[0], values[1]

    def to_dict(self) -> dict[str, Any]:
        """A mutable deep copy of ``raw`` (for JSON output)."""
        return _thaw(self.raw)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayoutSpec):
            return NotImplemented
        return self.fingerprint == other.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)


# --- loading ------------------------------------------------------------------------------------


def read_spec_document(path: str | os.PathLike[str]) -> Any:
    """Parse a spec file: TOML when the name ends in ``.toml``, else JSON."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecFileError("/", "no such file", source=name) from None
    except IsADirectoryError:
        raise SpecFileError("/", "is a directory, not a spec file", source=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecFileError("/", f"cannot read: {exc}", source=name) from None
    if name.lower().endswith(".toml"):
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecFileError("/", f"not TOML: {exc}", source=name) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecFileError(
            "/", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", source=name
        ) from None


def load_spec(
    path_or_mapping: str | os.PathLike[str] | Mapping[str, Any], *, source: str | None = None
) -> LayoutSpec:
    """Read and check a spec; raise ``SpecError`` listing every problem found."""
    if isinstance(path_or_mapping, str | os.PathLike):
        source = source or os.fspath(path_or_mapping)
        document = read_spec_document(path_or_mapping)
    elif isinstance(path_or_mapping, Mapping):
        document = path_or_mapping
    else:
        raise TypeError(f"load_spec takes a path or a mapping, not {type(path_or_mapping)!r}")
    problems: list[FieldError] = []
    document = _plain(document, "", problems)
    if not isinstance(document, dict):
        raise SpecError("/", "a spec is a JSON object or a TOML table of keys", source=source)
    if problems:
        raise SpecError(problems, source=source)

    errors = schema_errors(_validator(), document, prefix="")
    if errors:
        raise SpecError(errors, source=source)
    normalized = _normalize(document)
    builder = _Builder(normalized, given_layout=document.get("layout") or {})
    spec = builder.build(source)
    if builder.errors:
        raise SpecError(builder.errors, source=source)
    return spec


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    return make_validator(load_schema("layout-spec"))


def _plain(value: Any, pointer: str, problems: list[FieldError]) -> Any:
    """A JSON-shaped copy: mappings -> dicts, tuples -> lists, whole floats -> ints (``1280.0``
    must not reach integer geometry or the body), and NaN/infinity reported (JSON and TOML
    parsers accept them; no range check can)."""
    if isinstance(value, Mapping):
        return {key: _plain(item, f"{pointer}/{key}", problems) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item, f"{pointer}/{i}", problems) for i, item in enumerate(value)]
    if isinstance(value, float):
        if not math.isfinite(value):
            problems.append(FieldError(pointer, f"{value} is not a finite number"))
        elif value.is_integer():
            return int(value)
    return value


def _number(value: Fraction) -> str:
    return str(int(value)) if value.denominator == 1 else f"{float(value):g}"


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        # Interned keys: a daemon's ten thousand specs share one copy of each field name.
        return MappingProxyType({sys.intern(key): _freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return value


def _normalize(document: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and colours as integers: equal content gives an equal document."""
    doc = copy.deepcopy(document)
    doc.pop("$schema", None)
    doc.setdefault("idleTimeout", 300)
    doc.setdefault("onEmpty", "idle")
    doc.setdefault("audio", "hosts")
    doc.setdefault("watermarks", [])
    tokens = doc.get("tokens")
    if tokens is not None:
        tokens.setdefault("lifetime", 86400)
        tokens.setdefault("renewBefore", min(3600, tokens["lifetime"] // 2))
        tokens.setdefault("outputExpiry", "warn")
    for mark in doc["watermarks"]:
        mark.setdefault("zOrder", 100)
    video = doc["output"].get("video")
    if video is not None:
        video.setdefault("fps", 15)
        video.setdefault("codec", "H264")
    canvas = doc.setdefault("canvas", {})
    if video is not None:
        canvas.setdefault("width", video["width"])
        canvas.setdefault("height", video["height"])
    color = canvas.get("color", 0)
    canvas["color"] = int(color[1:], 16) if isinstance(color, str) else color
    layout = doc.setdefault("layout", {})
    for key, value in _LAYOUT_DEFAULTS.items():
        layout.setdefault(key, copy.deepcopy(value))
    for key, value in _TEMPLATE_DEFAULTS[layout["template"]].items():
        layout.setdefault(key, value)
    for index, slot in enumerate(layout.get("slots") or []):
        slot.setdefault("host", "next")
        slot.setdefault("zOrder", min(index, 100))
    return doc


class _Builder:
    """Builds the values from a normalized document, collecting every cross-field problem."""

    def __init__(self, doc: dict[str, Any], *, given_layout: Mapping[str, Any]) -> None:
        self.doc = doc
        self.given_layout = given_layout
        self.errors: list[FieldError] = []

    def error(self, pointer: str, message: str) -> None:
        self.errors.append(FieldError(pointer, message))

    def build(self, source: str | None) -> LayoutSpec:
        doc = self.doc
        out = doc["output"]
        video = self.video(out.get("video"))
        canvas = self.canvas(doc["canvas"])
        layout = self.layout(doc["layout"], canvas)
        if video is not None and "placeholderImage" not in doc:
            self.error("/placeholderImage", "is required when output.video is set")
        if video is None and doc["audio"] == "none":
            self.error(
                "/audio",
                "'none' leaves an audio-only spec (no output.video) with nothing to send; "
                "use 'hosts' or 'channel'",
            )
        watermarks = tuple(self.watermarks(doc["watermarks"], canvas))
        settings = self.token_settings(doc.get("tokens"), source)
        input_token = self.given_token("/input/token", doc["input"].get("token"), settings)
        output_token = self.given_token("/output/token", out.get("token"), settings)
        capacity, frames = (0, None) if video is None else self.geometry(layout, canvas)
        return LayoutSpec(
            instance_id=doc["instanceId"],
            input_channel=doc["input"]["channel"],
            input_token=input_token,
            output_channel=out["channel"],
            output_uid=out["uid"],
            output_token=output_token,
            video=video,
            audio_profile=(out.get("audio") or {}).get("profile"),
            canvas=canvas,
            placeholder_image=doc.get("placeholderImage"),
            watermarks=watermarks,
            idle_timeout=doc["idleTimeout"],
            on_empty=doc["onEmpty"],
            audio_mode=doc["audio"],
            layout=layout,
            capacity=capacity,
            fingerprint=canonical_hash(doc),
            source=source,
            raw=_freeze(doc),
            frames=frames,
            token_settings=settings,
        )

    def given_token(self, pointer: str, value: str | None, settings: TokenSettings | None) -> Token:
        """``input.token``/``output.token``: required without ``tokens``, absent with it."""
        if settings is not None:
            if value is not None:
                self.error(
                    pointer,
                    "must be absent when a top-level 'tokens' object mints the tokens; "
                    "remove it, or remove 'tokens' to give tokens yourself",
                )
            return Token(pointer)
        if value is None:
            self.error(
                pointer,
                'is required: give the token (literal or "env:NAME"), or a top-level '
                "'tokens' object to mint tokens from the App Certificate",
            )
            return Token(pointer)
        return self.token(pointer, value)

    def token_settings(
        self, tokens: Mapping[str, Any] | None, source: str | None
    ) -> TokenSettings | None:
        if tokens is None:
            return None
        reference: str = tokens["appCertificate"]
        lifetime: int = tokens["lifetime"]
        renew_before: int = tokens["renewBefore"]
        if renew_before * 2 > lifetime:
            self.error(
                "/tokens/renewBefore",
                f"{renew_before} s is more than half the lifetime ({lifetime} s): tokens would be "
                "renewed again soon after each renewal; lower it or raise tokens.lifetime",
            )
        kind, _, value = reference.partition(":")
        if kind == "env":
            return TokenSettings(
                certificate_env=value,
                lifetime=lifetime,
                renew_before=renew_before,
                output_expiry=tokens["outputExpiry"],
            )
        path = Path(value).expanduser()
        if not path.is_absolute() and source is not None:
            path = Path(source).resolve().parent / path  # relative to the spec file
        return TokenSettings(
            certificate_file=str(path),
            lifetime=lifetime,
            renew_before=renew_before,
            output_expiry=tokens["outputExpiry"],
        )

    def token(self, pointer: str, value: str) -> Token:
        if not value.startswith(_ENV_PREFIX):
            return Token(pointer, literal=value)
        name = value[len(_ENV_PREFIX) :]
        if not _ENV_NAME.fullmatch(name):
            self.error(pointer, f"'env:{name}' does not name an environment variable")
        return Token(pointer, env=name)

    def video(self, video: Mapping[str, Any] | None) -> VideoOptions | None:
        if video is None:
            return None
        return VideoOptions(
            width=video["width"],
            height=video["height"],
            fps=video["fps"],
            codec=video["codec"],
            bitrate=video.get("bitrate"),
            low_bitrate_high_quality=video.get("lowBitrateHighQuality"),
        )

    def canvas(self, canvas: Mapping[str, Any]) -> Canvas:
        for key in ("width", "height"):
            if key not in canvas:
                self.error(f"/canvas/{key}", "is required when output.video is absent (audio-only)")
        return Canvas(
            width=canvas.get("width", MIN_TILE),
            height=canvas.get("height", MIN_TILE),
            color=canvas["color"],
            background_image=canvas.get("backgroundImage"),
            fill_mode=canvas.get("fillMode"),
        )

    def watermarks(self, marks: list[Mapping[str, Any]], canvas: Canvas) -> Iterator[Watermark]:
        for index, mark in enumerate(marks):
            where = f"/watermarks/{index}"
            self.inside(where, mark["x"], mark["y"], mark["width"], mark["height"], canvas)
            yield Watermark(
                image_url=mark["imageUrl"],
                x=mark["x"],
                y=mark["y"],
                width=mark["width"],
                height=mark["height"],
                z_order=mark["zOrder"],
                fill_mode=mark.get("fillMode"),
            )

    def inside(self, where: str, x: int, y: int, width: int, height: int, canvas: Canvas) -> None:
        if x + width > canvas.width:
            self.error(
                where,
                f"x + width = {x + width} is beyond the canvas width {canvas.width}; "
                "it must fit inside",
            )
        if y + height > canvas.height:
            self.error(
                where,
                f"y + height = {y + height} is beyond the canvas height {canvas.height}; "
                "it must fit inside",
            )

    def layout(self, layout: Mapping[str, Any], canvas: Canvas) -> LayoutOptions:
        template = layout["template"]
        for other, keys in TEMPLATE_KEYS.items():
            if other == template:
                continue
            for key in keys:
                if key in self.given_layout:
                    self.error(
                        f"/layout/{key}",
                        f"applies only to template {other!r} (this layout is {template!r})",
                    )
        if template == "custom" and "slots" not in layout:
            self.error("/layout/slots", "is required for template 'custom'")

        allow = None if layout["allow"] is None else frozenset(layout["allow"])
        deny = frozenset(layout["deny"])
        for index, uid in enumerate(layout["deny"]):
            if allow is not None and uid in allow:
                self.error(
                    f"/layout/deny/{index}",
                    f"{uid} is also in layout.allow; a host is either allowed or denied",
                )
        for key in ("pinned", "priority"):
            for index, uid in enumerate(layout[key]):
                self.admitted(f"/layout/{key}/{index}", uid, allow, deny)

        fraction = Fraction(str(layout.get("stripFraction", 0.25))).limit_denominator(10_000)
        options = LayoutOptions(
            template=template,
            gap=even(layout["gap"]),
            padding=even(layout["padding"]),
            aspect=parse_aspect(layout["aspect"]),
            max_tiles=layout["maxTiles"],
            overflow=layout["overflow"],
            stability=layout["stability"],
            pinned=tuple(layout["pinned"]),
            priority=tuple(layout["priority"]),
            allow=allow,
            deny=deny,
            last_row=layout.get("lastRow", DEFAULT_LAST_ROW),
            position=layout.get("position", "right"),
            strip_fraction=(fraction.numerator, fraction.denominator),
            strip_tiles=layout.get("stripTiles", 4),
            corner=layout.get("corner", "bottom-left"),
            tile_width=even(layout.get("tileWidth", 256)),
            tile_height=even(layout.get("tileHeight", 144)),
            margin=even(layout.get("margin", 16)),
            columns=layout.get("columns", 4),
            rows=layout.get("rows", 4),
            units=layout.get("units", "px"),
            empty_slot=layout.get("emptySlot", DEFAULT_EMPTY_SLOT),
        )
        slots = tuple(self.slots(layout.get("slots") or [], options, canvas))
        return dataclasses.replace(options, slots=slots)

    def admitted(
        self, where: str, uid: int, allow: frozenset[int] | None, deny: frozenset[int]
    ) -> None:
        if uid in deny:
            self.error(where, f"{uid} is in layout.deny, so it can never be shown")
        elif allow is not None and uid not in allow:
            self.error(where, f"{uid} is not in layout.allow, so it can never be shown")

    def slots(
        self, slots: list[Mapping[str, Any]], options: LayoutOptions, canvas: Canvas
    ) -> Iterator[Slot]:
        relative = options.units == "relative"
        bound: dict[int, int] = {}
        speaker_slot: int | None = None
        axes = (
            ("x", canvas.width),
            ("y", canvas.height),
            ("width", canvas.width),
            ("height", canvas.height),
        )
        for index, slot in enumerate(slots):
            where = f"/layout/slots/{index}"
            exact: dict[str, Fraction] = {}
            for key, size in axes:
                value = slot[key]
                if relative:
                    if value > 1:
                        self.error(f"{where}/{key}", f"{value} is above 1 (units is 'relative')")
                    exact[key] = Fraction(str(value)) * size
                else:
                    if isinstance(value, float) and not value.is_integer():
                        self.error(
                            f"{where}/{key}",
                            f"{value} is not a whole number of pixels (units is 'px'; "
                            "use 'relative' for fractions of the canvas)",
                        )
                    exact[key] = Fraction(int(value))
            for edge, start, length, size in (
                ("width", "x", "width", canvas.width),
                ("height", "y", "height", canvas.height),
            ):
                end = exact[start] + exact[length]
                if end > size:
                    self.error(
                        where,
                        f"{start} + {length} = {_number(end)} is beyond the canvas {edge} {size}; "
                        "it must fit inside",
                    )
            rect = slot_rect(
                exact["x"],
                exact["y"],
                exact["width"],
                exact["height"],
                (canvas.width, canvas.height),
            )
            px = {"x": rect.x, "y": rect.y, "width": rect.width, "height": rect.height}
            for key in ("width", "height"):
                if px[key] < MIN_TILE:
                    self.error(
                        f"{where}/{key}",
                        f"{px[key]} px is below the minimum {MIN_TILE} (after rounding its edges "
                        "to even pixels)",
                    )
            host = slot["host"]
            if isinstance(host, int):
                if host in bound:
                    self.error(f"{where}/host", f"{host} is already bound by slot {bound[host]}")
                bound.setdefault(host, index)
                self.admitted(f"{where}/host", host, options.allow, options.deny)
            elif host == "speaker":
                if speaker_slot is None:
                    speaker_slot = index
                else:
                    self.error(f"{where}/host", f"slot {speaker_slot} already shows the speaker")
            yield Slot(
                x=px["x"],
                y=px["y"],
                width=px["width"],
                height=px["height"],
                z_order=slot["zOrder"],
                host=host,
            )

    def geometry(
        self, layout: LayoutOptions, canvas: Canvas
    ) -> tuple[int, SpeakerFrames | FloatingFrames | None]:
        """Capacity and fixed frames; the canvas-too-small errors of each template."""
        area = inner_area(canvas.width, canvas.height, layout.padding)
        size = f"{canvas.width}x{canvas.height}"
        if layout.template != "custom" and (area.width < MIN_TILE or area.height < MIN_TILE):
            where = "/layout/padding" if layout.padding else "/canvas"
            self.error(
                where,
                f"the {size} canvas leaves {area.width}x{area.height} px for tiles inside the "
                f"padding {layout.padding}, below one {MIN_TILE}x{MIN_TILE} tile",
            )
            return 0, None
        if layout.template == "grid":
            capacity = grid_capacity(area.width, area.height, layout.gap, layout.aspect)
            if capacity == 0:
                self.error(
                    "/layout/aspect",
                    f"{layout.aspect.text!r} tiles cannot be {MIN_TILE} px in both sides inside "
                    f"{area.width}x{area.height} px",
                )
            return capacity, None
        if layout.template == "speaker":
            return self.speaker(layout, area, size)
        if layout.template == "floating":
            return self.floating(layout, canvas)
        return len(layout.slots), None

    def speaker(self, layout: LayoutOptions, area: Rect, size: str) -> tuple[int, SpeakerFrames]:
        frames = self.speaker_frames(layout, area, layout.strip_tiles)
        main, tile = frames.main, frames.strip[0]
        if min(frames.alone.width, frames.alone.height) < MIN_TILE:
            self.error(
                "/layout/aspect",
                f"{layout.aspect.text!r} tiles cannot be {MIN_TILE} px in both sides inside "
                f"{area.width}x{area.height} px",
            )
        elif min(main.width, main.height) < MIN_TILE:
            self.error(
                "/layout/stripFraction",
                f"leaves the main tile {main.width}x{main.height} px on the {size} canvas, "
                f"below the {MIN_TILE} px minimum; lower it",
            )
        elif min(tile.width, tile.height) < MIN_TILE:
            fits = next(
                (
                    count
                    for count in range(layout.strip_tiles - 1, 0, -1)
                    if min(self._strip_tile(layout, area, count)) >= MIN_TILE
                ),
                0,
            )
            hint = (
                f"at most {fits} fit, or raise stripFraction"
                if fits
                else "not even one fits; raise stripFraction or enlarge the canvas"
            )
            self.error(
                "/layout/stripTiles",
                f"{layout.strip_tiles} strip tiles of {tile.width}x{tile.height} px are below the "
                f"{MIN_TILE} px minimum on the {size} canvas: {hint}",
            )
        return 1 + layout.strip_tiles, frames

    @staticmethod
    def speaker_frames(layout: LayoutOptions, area: Rect, strip_tiles: int) -> SpeakerFrames:
        return speaker_frames(
            area, layout.gap, layout.aspect, layout.position, layout.strip_fraction, strip_tiles
        )

    def _strip_tile(self, layout: LayoutOptions, area: Rect, count: int) -> tuple[int, int]:
        tile = self.speaker_frames(layout, area, count).strip[0]
        return tile.width, tile.height

    def floating(self, layout: LayoutOptions, canvas: Canvas) -> tuple[int, FloatingFrames]:
        frames = floating_frames(
            canvas.width,
            canvas.height,
            layout.padding,
            layout.gap,
            layout.corner,
            (layout.tile_width, layout.tile_height),
            layout.margin,
            layout.columns,
            layout.rows,
        )
        if not frames.overlays:
            self.error(
                "/layout/tileWidth",
                f"a {layout.tile_width}x{layout.tile_height} overlay does not fit on the "
                f"{canvas.width}x{canvas.height} canvas inside the margin {layout.margin}",
            )
        return 1 + len(frames.overlays), frames
