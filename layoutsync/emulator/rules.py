"""The service's rules that are not in the request schema, implemented independently.

``update_violations`` is written from the vendor page, not shared with the
planner, so the emulator checks the reconciler instead of agreeing with it.
Inputs are compared keyed by uid, never by list position.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import FieldError
from ..validate import TRANSCODER_POINTER

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "UPDATABLE",
    "handled_hosts",
    "input_channel",
    "instance_id_error",
    "update_violations",
]

DEFAULT_IDLE_TIMEOUT = 300

#: Said in every "cannot change" message, so the caller learns what it may change.
UPDATABLE = (
    "an Update may change only the rtc members of audioInputs[] and videoInputs[], "
    "videoInputs[].region and outputs[].audioOption / outputs[].videoOption"
)

_INSTANCE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MISSING = object()


def instance_id_error(body: Any) -> FieldError | None:
    """Why an Acquire ``body`` has no valid instanceId (<= 64 of ``[A-Za-z0-9_-]``), or None.

    Other keys are accepted: some clients send the whole ``services`` object too.
    """
    if not isinstance(body, Mapping):
        return FieldError("/", "must be a JSON object with an instanceId")
    value = body.get("instanceId", _MISSING)
    if not isinstance(value, str):
        shown = "missing" if value is _MISSING else f"{type(value).__name__}, not a string"
        return FieldError("/instanceId", f"is {shown}; expected 1 to 64 of A-Z a-z 0-9 _ -")
    if _INSTANCE_ID.fullmatch(value) is None:
        shown = repr(value) if len(value) <= 80 else repr(value[:77]) + "..."
        return FieldError("/instanceId", f"{shown} is not 1 to 64 of A-Z a-z 0-9 _ -")
    return None


def _items(transcoder: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = transcoder.get(key)
    return value if isinstance(value, list) else []


def input_channel(transcoder: Mapping[str, Any]) -> str | None:
    """The one RTC channel every input is in (validation guarantees there is one), or None."""
    for key in ("videoInputs", "audioInputs"):
        for item in _items(transcoder, key):
            channel: str = item["rtc"]["rtcChannel"]
            return channel
    return None


def handled_hosts(transcoder: Mapping[str, Any]) -> tuple[frozenset[int], bool]:
    """The uids whose streams the transcoder handles, and whether it mixes the whole channel
    (an audio input with uid 0: then every host of the channel counts)."""
    uids: set[int] = set()
    whole_channel = False
    for key in ("videoInputs", "audioInputs"):
        for item in _items(transcoder, key):
            uid: int = item["rtc"]["rtcUid"]
            if uid == 0:
                whole_channel = True
            else:
                uids.add(uid)
    return frozenset(uids), whole_channel


def update_violations(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """Every change from ``old`` (the applied transcoder) to ``new`` that an Update may not make.

    Both must already be valid request transcoders. A key present in one and absent in
    the other is a change, even when the present value is the documented default.
    """
    at = TRANSCODER_POINTER
    errors: list[FieldError] = []

    old_video, new_video = "videoInputs" in old, "videoInputs" in new
    if old_video != new_video:
        was, now = _scenario(old_video), _scenario(new_video)
        errors.append(
            FieldError(
                f"{at}/videoInputs",
                f"the scenario chosen at Create ({was}) cannot change to {now} in an Update",
            )
        )

    for key in ("idleTimeout", "canvas", "waterMarks"):
        if old.get(key, _MISSING) != new.get(key, _MISSING):
            errors.append(FieldError(f"{at}/{key}", f"cannot change; {UPDATABLE}"))

    errors.extend(_output_violations(old, new, at))
    errors.extend(_channel_violations(old, new, at))
    errors.extend(_placeholder_violations(old, new, at))
    return errors


def _scenario(has_video: bool) -> str:
    return "audio+video, with videoInputs" if has_video else "audio-only, without videoInputs"


def _output_violations(old: Mapping[str, Any], new: Mapping[str, Any], at: str) -> list[FieldError]:
    old_outputs, new_outputs = _items(old, "outputs"), _items(new, "outputs")
    if len(old_outputs) != len(new_outputs):
        return [
            FieldError(
                f"{at}/outputs",
                f"has {len(new_outputs)} output(s) but the task has {len(old_outputs)}; "
                f"outputs cannot be added or removed; {UPDATABLE}",
            )
        ]
    errors = []
    for index, (was, now) in enumerate(zip(old_outputs, new_outputs, strict=True)):
        if was.get("rtc") != now.get("rtc"):
            errors.append(FieldError(f"{at}/outputs/{index}/rtc", f"cannot change; {UPDATABLE}"))
        if ("videoOption" in was) != ("videoOption" in now):
            verb = "appears" if "videoOption" in now else "disappears"
            errors.append(
                FieldError(
                    f"{at}/outputs/{index}/videoOption",
                    f"{verb}, which changes the scenario chosen at Create "
                    f"({_scenario('videoOption' in was)})",
                )
            )
    return errors


def _channel_violations(
    old: Mapping[str, Any], new: Mapping[str, Any], at: str
) -> list[FieldError]:
    channel = input_channel(old)
    if channel is None:
        return []
    for key in ("videoInputs", "audioInputs"):
        for index, item in enumerate(_items(new, key)):
            now = item["rtc"]["rtcChannel"]
            if now != channel:
                return [
                    FieldError(
                        f"{at}/{key}/{index}/rtc/rtcChannel",
                        f"{now!r} is not the task's input channel {channel!r}; "
                        "the input channel cannot change in an Update",
                    )
                ]
    return []


def _placeholder_violations(
    old: Mapping[str, Any], new: Mapping[str, Any], at: str
) -> list[FieldError]:
    kept = {item["rtc"]["rtcUid"]: item for item in _items(old, "videoInputs")}
    errors = []
    for index, item in enumerate(_items(new, "videoInputs")):
        was = kept.get(item["rtc"]["rtcUid"])
        if was is not None and was.get("placeholderImageUrl") != item.get("placeholderImageUrl"):
            errors.append(
                FieldError(
                    f"{at}/videoInputs/{index}/placeholderImageUrl",
                    f"cannot change for kept member uid {item['rtc']['rtcUid']} "
                    "(a new member brings its own); " + UPDATABLE,
                )
            )
    return errors
