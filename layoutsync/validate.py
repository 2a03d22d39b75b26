"""Validate a Create/Update body: the JSON Schema, then the rules a schema cannot express.

Every error names the JSON pointer, the value and what is allowed, and all of
them are reported. Results are cached by the body's canonical hash, so
validating an identical config again costs one hash and one dict lookup.

A new body is first checked whole by ``jsonschema_rs`` (the same schema,
compiled in Rust, about a hundred times faster than ``jsonschema``). It only
ever says "valid": a body it rejects, or every body where it is not
installed, goes to ``jsonschema``, which explains every error. That pass is
piecewise: every audio/video input item against its sub-schema, and the rest
of the body (each input list stood in for by one known-valid item) against
the whole schema. Each piece is checked by ``jsonschema_rs`` first, and only
the pieces it rejects pay for ``jsonschema``, cached by their own hash. The
errors are the same as one ``jsonschema`` pass over the whole body, and
``jsonschema_rs`` accepts exactly what ``jsonschema`` accepts: property tests
hold both, and the schema's patterns avoid the corners where Python's and
Rust's regular expressions differ.
"""

from __future__ import annotations

import difflib
import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeGuard

import jsonschema
from jsonschema.exceptions import ValidationError as _SchemaError

try:
    import jsonschema_rs
except ImportError:  # pragma: no cover - a dependency; without it every piece takes the slow path
    jsonschema_rs = None  # type: ignore[assignment]

from ._resources import load_schema
from .canonical import canonical_hash
from .errors import FieldError, ValidationError
from .redact import MASK, is_secret_key

__all__ = [
    "MAX_UID",
    "TRANSCODER_POINTER",
    "check_request",
    "clear_cache",
    "is_host_uid",
    "make_validator",
    "schema_errors",
    "semantic_errors",
    "validate_request",
    "wrap_transcoder",
]

#: Agora uids are unsigned 32-bit; a host is never uid 0 (the schema's ``hostUid``).
MAX_UID = 4294967295


def is_host_uid(value: object) -> TypeGuard[int]:
    """An int (not a bool) in 1..MAX_UID: what every entry point accepts as a host."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_UID


#: Where the ``transcoder`` object sits inside a request body.
TRANSCODER_POINTER = "/services/cloudTranscoder/config/transcoder"


class _Lru:
    """A bounded, thread-safe map from a hash to a validation result."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[str, tuple[FieldError, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[FieldError, ...] | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
            return hit

    def put(self, key: str, value: tuple[FieldError, ...]) -> None:
        with self._lock:
            self._data[key] = value
            if len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_bodies = _Lru(4096)  #: whole bodies -> every error (schema and semantic)
_pieces = _Lru(16384)  #: pieces the fast check did not pass -> their schema errors


def wrap_transcoder(transcoder: Mapping[str, Any]) -> dict[str, Any]:
    """A full request body around a bare ``transcoder`` object."""
    return {
        "services": {
            "cloudTranscoder": {
                "serviceType": "cloudTranscoderV2",
                "config": {"transcoder": transcoder},
            }
        }
    }


def validate_request(body: Mapping[str, Any], *, source: str | None = None) -> None:
    """Raise ``ValidationError`` listing every problem of ``body``; return when it is valid."""
    errors = check_request(body)
    if errors:
        raise ValidationError(errors, source=source)


def check_request(body: Mapping[str, Any]) -> tuple[FieldError, ...]:
    """Every problem of ``body`` (empty when valid); cached by canonical hash."""
    key = canonical_hash(body)
    hit = _bodies.get(key)
    if hit is not None:
        return hit
    errors = (*_schema_errors_of_request(body), *semantic_errors(body))
    _bodies.put(key, errors)
    return errors


def clear_cache() -> None:
    """Forget cached results (benchmarks use it to measure an uncached pass)."""
    _bodies.clear()
    _pieces.clear()


# --- schema -------------------------------------------------------------------------------------


def make_validator(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    """A checked ``jsonschema`` validator for ``schema`` whose ``pattern`` means what
    JSON Schema says (ECMA-262), where Python's ``re`` would differ."""
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(dict(schema))
    ecma = jsonschema.validators.extend(cls, {"pattern": _ecma_pattern})
    return ecma(schema)


def _ecma_pattern(
    validator: jsonschema.protocols.Validator, pattern: str, instance: Any, schema: Any
) -> Iterator[_SchemaError]:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield _SchemaError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    # ECMA-262's closing ``$`` matches at the very end only; Python's ``$`` also matches
    # before a final newline, which would let "room\n" pass as a channel name.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    return make_validator(load_schema(name))


#: Input lists validated item by item, with the sub-schema of their items.
_ITEM_SCHEMAS = {"audioInputs": "audioInput", "videoInputs": "videoInput"}

#: A valid item of each input list: stands in for the real items in a body's skeleton,
#: so the list-level rules (type, minItems) are still checked by the whole schema.
_STAND_INS: dict[str, dict[str, Any]] = {
    "audioInputs": {"rtc": {"rtcChannel": "c", "rtcUid": 1, "rtcToken": ""}},
    "videoInputs": {
        "rtc": {"rtcChannel": "c", "rtcUid": 1, "rtcToken": ""},
        "region": {"x": 0, "y": 0, "width": 120, "height": 120, "zOrder": 0},
        "placeholderImageUrl": "https://example.com/p.png",
    },
}


def _schema_errors_of_request(body: Mapping[str, Any]) -> list[FieldError]:
    """Schema errors of ``body``: none if the fast check passes it whole, else piece by piece."""
    if _fast_valid(None, body):
        return []
    validator = _validator("transcoder-request")
    transcoder = _transcoder_of(body)
    if transcoder is None:
        return schema_errors(validator, body)
    skeleton_transcoder = dict(transcoder)
    errors: list[FieldError] = []
    for key, item_schema in _ITEM_SCHEMAS.items():
        items = transcoder.get(key)
        if not (isinstance(items, list) and items):
            continue
        skeleton_transcoder[key] = [_STAND_INS[key]]
        for index, item in enumerate(items):
            prefix = f"{TRANSCODER_POINTER}/{key}/{index}"
            for pointer, piece_schema, piece in _item_pieces(item_schema, item):
                for error in _piece_errors(piece_schema, piece):
                    errors.append(FieldError(prefix + pointer + error.pointer, error.message))
    skeleton = _with_transcoder(body, skeleton_transcoder)
    errors.extend(_piece_errors(None, skeleton))
    errors.sort(key=lambda e: _pointer_sort_key(e.pointer))
    return _dedupe(errors)


#: A video input's region is validated on its own: a grid's regions for N hosts are the
#: same in every session, and a host's rtc member stays the same while regions move.
_STAND_IN_REGION = _STAND_INS["videoInputs"]["region"]


def _item_pieces(item_schema: str, item: Any) -> list[tuple[str, str, Any]]:
    """(pointer within the item, sub-schema, instance) for each separately cached piece."""
    if item_schema == "videoInput" and isinstance(item, dict) and "region" in item:
        rest = {**item, "region": _STAND_IN_REGION}
        return [("", item_schema, rest), ("/region", "region", item["region"])]
    return [("", item_schema, item)]


def _piece_errors(item_schema: str | None, instance: Any) -> tuple[FieldError, ...]:
    """Schema errors of one piece: an input item (pointers relative to it) or a skeleton.

    The Rust check says "valid" in about a microsecond, sooner than the piece
    could be hashed for a cache. A piece it rejects (every piece, without
    ``jsonschema_rs``) is explained by ``jsonschema``, cached by its hash.
    """
    if _fast_valid(item_schema, instance):
        return ()
    key = f"{item_schema}:{canonical_hash(instance)}"
    found = _pieces.get(key)
    if found is None:
        found = tuple(schema_errors(_piece_validator(item_schema), instance))
        _pieces.put(key, found)
    return found


def _fast_valid(item_schema: str | None, instance: Any) -> bool:
    """True when ``jsonschema_rs`` accepts the piece; False when it rejects it or cannot say."""
    check = _fast_validator(item_schema)
    if check is None:
        return False
    try:
        return bool(check(instance))
    except Exception:  # not representable as JSON in Rust (a huge int, a lone surrogate...)
        return False


@functools.cache
def _fast_validator(item_schema: str | None) -> Any:
    """``is_valid`` of ``_piece_schema(item_schema)`` (made once)."""
    if jsonschema_rs is None:
        return None
    return jsonschema_rs.validator_for(
        dict(_piece_schema(item_schema)), validate_formats=False
    ).is_valid


@functools.cache
def _piece_validator(item_schema: str | None) -> jsonschema.protocols.Validator:
    """The ``jsonschema`` validator of ``_piece_schema(item_schema)`` (made once)."""
    if item_schema is None:
        return _validator("transcoder-request")
    return make_validator(_piece_schema(item_schema))


def _piece_schema(item_schema: str | None) -> Mapping[str, Any]:
    """The request schema, or the same document entered at ``$defs/<item_schema>`` (so its
    ``$ref``s still resolve): one definition of a piece for both validators."""
    schema = load_schema("transcoder-request")
    if item_schema is None:
        return schema
    return {
        "$schema": schema["$schema"],
        "$defs": schema["$defs"],
        "$ref": f"#/$defs/{item_schema}",
    }


def _transcoder_of(body: Any) -> dict[str, Any] | None:
    try:
        transcoder = body["services"]["cloudTranscoder"]["config"]["transcoder"]
    except (KeyError, TypeError, IndexError):
        return None
    return transcoder if isinstance(transcoder, dict) else None


def _with_transcoder(body: Mapping[str, Any], transcoder: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``body`` with another ``transcoder`` object (other keys kept)."""
    services = dict(body["services"])
    service = dict(services["cloudTranscoder"])
    service["config"] = {**service["config"], "transcoder": transcoder}
    services["cloudTranscoder"] = service
    return {**body, "services": services}


def schema_errors(
    validator: jsonschema.protocols.Validator, instance: Any, *, prefix: str = ""
) -> list[FieldError]:
    """Readable ``FieldError``s for every schema violation, in document order."""
    found: list[FieldError] = []
    for error in validator.iter_errors(instance):
        found.extend(_describe(error, prefix))
    found.sort(key=lambda e: _pointer_sort_key(e.pointer))
    return _dedupe(found)


def _pointer_sort_key(pointer: str) -> tuple[tuple[int, int | str], ...]:
    parts = pointer.split("/")[1:]
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def _dedupe(errors: Iterable[FieldError]) -> list[FieldError]:
    seen: set[FieldError] = set()
    unique = []
    for error in errors:
        if error not in seen:
            seen.add(error)
            unique.append(error)
    return unique


def _pointer(path: Iterable[Any], prefix: str = "") -> str:
    escaped = (str(p).replace("~", "~0").replace("/", "~1") for p in path)
    return prefix + "".join(f"/{p}" for p in escaped)


def _show(value: Any, path: Sequence[Any]) -> str:
    if path and is_secret_key(path[-1]):
        return MASK
    text = repr(value) if isinstance(value, str) else _json_like(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _json_like(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return str(value)


_TYPE_NAMES = {
    "integer": "an integer",
    "string": "a string",
    "object": "an object",
    "array": "an array",
    "boolean": "true or false",
    "number": "a number",
}


def _describe(error: _SchemaError, prefix: str) -> Iterator[FieldError]:
    path = list(error.absolute_path)
    where = _pointer(path, prefix)
    value: Any = error.instance
    shown = _show(value, path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    expected: Any = error.validator_value
    if kind == "minimum":
        yield FieldError(where, f"{shown} is below the minimum {expected}")
    elif kind == "maximum":
        yield FieldError(where, f"{shown} is above the maximum {expected}")
    elif kind == "multipleOf" and expected == 2 and isinstance(value, int):
        nearest = f"use {value - 1} or {value + 1}"
        yield FieldError(where, f"{shown} is odd; pixels are sent as even integers ({nearest})")
    elif kind == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        yield FieldError(where, f"{shown} is not {wanted}")
    elif kind == "required":
        present = value if isinstance(value, dict) else {}
        for name in expected:
            if name not in present:
                yield FieldError(_pointer([*path, name], prefix), "is required but missing")
    elif kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        present = value if isinstance(value, dict) else {}
        for name in present:
            if name in allowed:
                continue
            hint = difflib.get_close_matches(name, allowed, n=1)
            did_you_mean = f"did you mean {hint[0]!r}? " if hint else ""
            yield FieldError(
                _pointer([*path, name], prefix),
                f"is not an allowed field ({did_you_mean}allowed: {', '.join(allowed)})",
            )
    elif kind == "enum":
        yield FieldError(where, f"{shown} is not one of {', '.join(map(str, expected))}")
    elif kind == "const":
        yield FieldError(where, f"{shown} must be {expected!r}")
    elif kind == "pattern":
        message = schema.get("x-message") or f"does not match {expected}"
        yield FieldError(where, f"{shown} {message}")
    elif kind == "minItems":
        yield FieldError(where, f"needs at least {expected} item(s), got {len(value)}")
    elif kind == "maxItems":
        yield FieldError(where, f"allows at most {expected} item(s), got {len(value)}")
    elif kind == "minLength":
        yield FieldError(where, f"{shown} is shorter than {expected} character(s)")
    elif kind == "maxLength":
        yield FieldError(where, f"is longer than the maximum of {expected} characters")
    elif kind == "uniqueItems":
        yield FieldError(where, "has duplicate items; every item must be unique")
    elif kind in {"anyOf", "oneOf"} and schema.get("x-message"):
        yield FieldError(where, f"{shown} {schema['x-message']}")
    elif kind in {"anyOf", "oneOf"} and error.context:
        best = jsonschema.exceptions.best_match(error.context)
        yield from _describe(best, prefix)
    else:
        secret = bool(path) and is_secret_key(path[-1])
        yield FieldError(where, "is invalid" if secret else error.message)


# --- rules a schema cannot express --------------------------------------------------------------


def _items(value: Any) -> list[tuple[int, Mapping[str, Any]]]:
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, Mapping)]


def _rtc(item: Mapping[str, Any]) -> Mapping[str, Any]:
    rtc = item.get("rtc")
    return rtc if isinstance(rtc, Mapping) else {}


def semantic_errors(
    body: Mapping[str, Any], *, prefix: str = TRANSCODER_POINTER
) -> list[FieldError]:
    """Cross-field rules: one input channel, unique uids, output uid, regions inside the canvas,
    and the audio-only scenario (no videoInputs, no videoOption)."""
    try:
        transcoder = body["services"]["cloudTranscoder"]["config"]["transcoder"]
    except (KeyError, TypeError):
        return []
    if not isinstance(transcoder, Mapping):
        return []
    errors: list[FieldError] = []
    audio = _items(transcoder.get("audioInputs"))
    video = _items(transcoder.get("videoInputs"))

    errors.extend(_channel_errors(audio, video, prefix))
    for kind, inputs in (("audioInputs", audio), ("videoInputs", video)):
        errors.extend(_unique_uid_errors(kind, inputs, prefix))
    errors.extend(_whole_channel_errors(audio, prefix))
    errors.extend(_output_uid_errors(transcoder, audio, video, prefix))
    errors.extend(_inside_canvas_errors(transcoder, video, prefix))
    errors.extend(_scenario_errors(transcoder, audio, video, prefix))
    return errors


def _channel_errors(audio: list, video: list, prefix: str) -> Iterator[FieldError]:
    first: tuple[str, str] | None = None
    for kind, inputs in (("videoInputs", video), ("audioInputs", audio)):
        for index, item in inputs:
            channel = _rtc(item).get("rtcChannel")
            if not isinstance(channel, str):
                continue
            where = f"{prefix}/{kind}/{index}/rtc/rtcChannel"
            if first is None:
                first = (channel, where)
            elif channel != first[0]:
                yield FieldError(
                    where,
                    f"{channel!r} differs from {first[0]!r} at {first[1]}; "
                    "every audio and video input must be in the same channel",
                )


def _unique_uid_errors(kind: str, inputs: list, prefix: str) -> Iterator[FieldError]:
    seen: dict[int, int] = {}
    for index, item in inputs:
        uid = _rtc(item).get("rtcUid")
        if not isinstance(uid, int):
            continue
        if uid in seen:
            yield FieldError(
                f"{prefix}/{kind}/{index}/rtc/rtcUid",
                f"{uid} is already used by {prefix}/{kind}/{seen[uid]}; "
                f"uids in {kind} must be unique",
            )
        else:
            seen[uid] = index


def _whole_channel_errors(audio: list, prefix: str) -> Iterator[FieldError]:
    if len(audio) > 1:
        for index, item in audio:
            if _rtc(item).get("rtcUid") == 0:
                yield FieldError(
                    f"{prefix}/audioInputs/{index}/rtc/rtcUid",
                    "0 mixes the whole channel and must be the only audio input",
                )


def _output_uid_errors(
    transcoder: Mapping[str, Any], audio: list, video: list, prefix: str
) -> Iterator[FieldError]:
    input_uids: dict[tuple[str, int], str] = {}
    for kind, inputs in (("videoInputs", video), ("audioInputs", audio)):
        for index, item in inputs:
            rtc = _rtc(item)
            key = (rtc.get("rtcChannel"), rtc.get("rtcUid"))
            input_uids.setdefault(key, f"{prefix}/{kind}/{index}")  # type: ignore[arg-type]
    for index, output in _items(transcoder.get("outputs")):
        rtc = _rtc(output)
        key = (rtc.get("rtcChannel"), rtc.get("rtcUid"))
        if key in input_uids:
            yield FieldError(
                f"{prefix}/outputs/{index}/rtc/rtcUid",
                f"{key[1]} is also the input at {input_uids[key]} in channel {key[0]!r}; "
                "the output uid must differ from every input uid of the same channel",
            )


def _inside_canvas_errors(
    transcoder: Mapping[str, Any], video: list, prefix: str
) -> Iterator[FieldError]:
    canvas = transcoder.get("canvas")
    if not isinstance(canvas, Mapping):
        return
    width, height = canvas.get("width"), canvas.get("height")
    if not (isinstance(width, int) and isinstance(height, int)):
        return
    placed = [("videoInputs", index, item) for index, item in video]
    placed += [("waterMarks", i, item) for i, item in _items(transcoder.get("waterMarks"))]
    for kind, index, item in placed:
        region = item.get("region")
        if not isinstance(region, Mapping):
            continue
        where = f"{prefix}/{kind}/{index}/region"
        x, y = region.get("x"), region.get("y")
        w, h = region.get("width"), region.get("height")
        if isinstance(x, int) and isinstance(w, int) and x + w > width:
            yield FieldError(
                where, f"x + width = {x + w} is beyond the canvas width {width}; it must fit inside"
            )
        if isinstance(y, int) and isinstance(h, int) and y + h > height:
            yield FieldError(
                where,
                f"y + height = {y + h} is beyond the canvas height {height}; it must fit inside",
            )


def _scenario_errors(
    transcoder: Mapping[str, Any], audio: list, video: list, prefix: str
) -> Iterator[FieldError]:
    outputs = _items(transcoder.get("outputs"))
    has_video = "videoInputs" in transcoder
    if not has_video and "audioInputs" not in transcoder:
        yield FieldError(prefix, "needs videoInputs or audioInputs (an audio-only config)")
    for index, output in outputs:
        where = f"{prefix}/outputs/{index}/videoOption"
        if has_video and "videoOption" not in output:
            yield FieldError(where, "is required when videoInputs are given")
        elif not has_video and "videoOption" in output:
            yield FieldError(
                where, "must be absent in an audio-only config (one without videoInputs)"
            )
