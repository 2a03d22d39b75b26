"""Check rtcTokens as the service would, with the vendor's own parser (``agoraiotools``).

Only when the emulator is given an App Certificate (``--app-certificate``).
A token passes when it is an AccessToken2 whose signature that certificate
makes, for the App ID of the call, with an RTC service for the right channel
and uid (0 for inputs: the transcoder joins input channels under a random uid;
the output's ``rtcUid`` for the output), with the privileges its role needs
(join; for the output also publish audio, and video when it has a
``videoOption``), and not expired by the emulator's clock.

The vendor page does not say what the service answers to a bad token (it may
well accept the task and leave the output black). The emulator's choice:
record the problem on the task (admin view, events) and, with
``strict_tokens``, answer 400 naming the field.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import warnings
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

with warnings.catch_warnings():
    # The package's __init__ imports its deprecated DynamicKey modules, which warn.
    warnings.simplefilter("ignore", DeprecationWarning)
    from agoraiotools.AccessToken2 import (  # type: ignore[import-untyped]
        AccessToken2,
        ServiceRtc,
    )

__all__ = ["TokenCheck", "check_body_tokens", "check_token", "is_certificate"]

JOIN = ServiceRtc.kPrivilegeJoinChannel
PUBLISH_AUDIO = ServiceRtc.kPrivilegePublishAudioStream
PUBLISH_VIDEO = ServiceRtc.kPrivilegePublishVideoStream

_PREFIX = "/services/cloudTranscoder/config/transcoder"


def is_certificate(value: str) -> bool:
    """32 hexadecimal digits, as the Agora console shows an App Certificate."""
    try:
        return len(value) == 32 and bytes.fromhex(value) is not None
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """The outcome for one token: ``problem`` is None when it is valid."""

    pointer: str
    role: str  #: "input" or "output"
    problem: str | None
    expires_at: float | None = None


def _payload(token: str) -> bytes | None:
    if not token.startswith("007"):
        return None
    try:
        return zlib.decompress(base64.b64decode(token[3:], validate=True))
    except (binascii.Error, zlib.error, ValueError):
        return None


def _parse(token: str) -> Any:
    parsed = AccessToken2()
    with contextlib.redirect_stdout(io.StringIO()):  # from_string prints its failures
        try:
            ok = parsed.from_string(token)
        except (ValueError, KeyError):
            return None
    return parsed if ok else None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def check_token(
    token: Any,
    *,
    certificate: str,
    app_id: str,
    channel: str,
    uid: int,
    needs: tuple[int, ...],
    now: float,
) -> tuple[str | None, float | None]:
    """(problem or None, expiry) of one rtcToken."""
    if not isinstance(token, str) or not token:
        return "is missing; a project with an App Certificate needs a token", None
    payload = _payload(token)
    parsed = _parse(token) if payload is not None else None
    if parsed is None:
        return 'is not an AccessToken2 ("007...") token', None
    token_app_id = _text(parsed._AccessToken__app_id)
    issued = int(parsed._AccessToken__issue_ts)
    expire = int(parsed._AccessToken__expire)
    salt = int(parsed._AccessToken__salt)
    services: Mapping[int, Any] = parsed._AccessToken__service
    rtc = services.get(ServiceRtc.kServiceType)
    if token_app_id != app_id:
        return f"was minted for App ID {token_app_id!r}, not this project's {app_id!r}", None
    # The signature: rebuild the token from its own fields with the certificate.
    again = AccessToken2(token_app_id, certificate, issue_ts=issued, expire=expire)
    again._AccessToken__salt = salt
    for service in services.values():
        again.add_service(service)
    rebuilt = again.build() if is_certificate(certificate) else ""
    if not rebuilt or _payload(rebuilt) != payload:
        return "is not signed with this project's App Certificate", None
    if rtc is None:
        return "has no RTC privileges", None
    token_channel = _text(rtc._ServiceRtc__channel_name)
    token_uid_text = _text(rtc._ServiceRtc__uid)
    token_uid = int(token_uid_text) if token_uid_text.isdigit() else 0
    privileges: Mapping[int, int] = rtc._Service__privileges
    if token_channel != channel:
        return f"was minted for channel {token_channel!r}, not {channel!r}", None
    if token_uid != uid:
        return f"was minted for uid {token_uid}, not {uid}", None
    missing = [p for p in needs if p not in privileges]
    if missing:
        names = {
            JOIN: "join channel",
            PUBLISH_AUDIO: "publish audio",
            PUBLISH_VIDEO: "publish video",
        }
        listed = ", ".join(names.get(p, str(p)) for p in missing)
        return f"lacks the privilege(s) {listed}", None
    # AccessToken2 times are seconds after issue_ts; 0 means "no limit" for a privilege.
    ends = [issued + expire] + [issued + privileges[p] for p in needs if privileges[p]]
    expires_at = float(min(ends))
    if now >= expires_at:
        return f"expired {now - expires_at:.0f} s ago (emulator clock)", expires_at
    return None, expires_at


def _tokens_of(
    transcoder: Mapping[str, Any],
) -> Iterator[tuple[str, str, Mapping[str, Any], tuple[int, ...]]]:
    for key in ("audioInputs", "videoInputs"):
        for index, item in enumerate(transcoder.get(key) or ()):
            yield f"{_PREFIX}/{key}/{index}/rtc/rtcToken", "input", item.get("rtc", {}), (JOIN,)
    for index, item in enumerate(transcoder.get("outputs") or ()):
        needs = (
            (JOIN, PUBLISH_AUDIO, PUBLISH_VIDEO) if "videoOption" in item else (JOIN, PUBLISH_AUDIO)
        )
        yield f"{_PREFIX}/outputs/{index}/rtc/rtcToken", "output", item.get("rtc", {}), needs


def held_tokens(transcoder: Mapping[str, Any]) -> frozenset[Any]:
    """The rtcTokens an applied ``transcoder`` carries."""
    return frozenset(rtc.get("rtcToken") for _, _, rtc, _ in _tokens_of(transcoder))


def check_body_tokens(
    transcoder: Mapping[str, Any],
    *,
    certificate: str,
    app_id: str,
    now: float,
    held: frozenset[Any] = frozenset(),
) -> list[TokenCheck]:
    """Every rtcToken of a (schema-valid) ``transcoder``; each distinct token checked once.
    A token in ``held`` (the task already uses it) is not judged expired again: its
    expiry is reported, and tracked on the clock by the caller."""
    checks: list[TokenCheck] = []
    seen: dict[tuple[Any, ...], tuple[str | None, float | None]] = {}
    for pointer, role, rtc, needs in _tokens_of(transcoder):
        channel = str(rtc.get("rtcChannel", ""))
        uid = 0 if role == "input" else int(rtc.get("rtcUid", 0))
        key = (rtc.get("rtcToken"), channel, uid, needs)
        if key not in seen:
            seen[key] = check_token(
                rtc.get("rtcToken"),
                certificate=certificate,
                app_id=app_id,
                channel=channel,
                uid=uid,
                needs=needs,
                now=now,
            )
        problem, expires_at = seen[key]
        if problem is not None and problem.startswith("expired") and rtc.get("rtcToken") in held:
            problem = None
        checks.append(TokenCheck(pointer, role, problem, expires_at))
    return checks
