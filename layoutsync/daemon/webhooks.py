"""Agora NCS webhooks for RTC channel events, sans-IO.

Three pure pieces the HTTP route strings together, in this order:

1. ``verify_signature(secret, body, headers)``: HMAC of the **raw** body,
   checked before anything parses it. ``Agora-Signature-V2`` (HMAC-SHA256) wins
   when present; ``Agora-Signature`` (HMAC-SHA1) is accepted when it is the only
   one. Hex in either case; compared in constant time.
2. ``parse_notification(body)``: the JSON envelope as a frozen
   ``Notification``; host join/leave events (103/104, 107/108, 111/112) carry a
   ``HostEvent``. Everything else is acknowledged and ignored by the caller.
3. ``ClientSeqTracker``: NCS neither orders nor de-duplicates deliveries. Per
   (channel, uid) an event is applied only when its ``clientSeq`` is above the
   last one applied; a user's record is kept ``retention`` seconds (60 by
   default, as Agora advises) after a leave, and the table is bounded.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

import orjson

from ..store import ClientSeqRow
from ..validate import MAX_UID

__all__ = [
    "HOST_EVENT_TYPES",
    "SIGNATURE_HEADER",
    "SIGNATURE_V2_HEADER",
    "ClientSeqTracker",
    "HostEvent",
    "Notification",
    "SignatureCheck",
    "WebhookError",
    "parse_notification",
    "sign",
    "verify_signature",
]

SIGNATURE_V2_HEADER: Final = "Agora-Signature-V2"
SIGNATURE_HEADER: Final = "Agora-Signature"

RTC_PRODUCT_ID: Final = 1
MAX_CLIENT_SEQ: Final = 2**64 - 1

#: eventType -> True (the user is now a host) / False (the user is no longer one).
HOST_EVENT_TYPES: Final[Mapping[int, bool]] = {
    103: True,  # broadcaster joined (live-broadcasting profile)
    104: False,  # broadcaster left
    107: True,  # user joined (communication profile: everyone publishes)
    108: False,  # user left (communication profile)
    111: True,  # role changed to broadcaster
    112: False,  # role changed to audience
}

_ALGORITHMS: Final[Mapping[str, Any]] = {
    SIGNATURE_V2_HEADER: hashlib.sha256,
    SIGNATURE_HEADER: hashlib.sha1,
}


class WebhookError(ValueError):
    """A notification body that is not what NCS documents (the route answers 400)."""


class SignatureCheck(Enum):
    """Outcome of ``verify_signature``; only ``VALID`` lets a body be parsed."""

    VALID = "valid"
    MISSING = "missing"
    MISMATCH = "mismatch"

    def __bool__(self) -> bool:
        return self is SignatureCheck.VALID


def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the NCS webhook secret is empty")
    return key


def sign(secret: str | bytes, body: bytes, *, header: str = SIGNATURE_V2_HEADER) -> str:
    """The lowercase hex signature NCS sends in ``header`` for ``body`` (for tests and tools)."""
    try:
        digest = _ALGORITHMS[header]
    except KeyError:
        raise ValueError(f"unknown signature header {header!r}") from None
    return hmac.new(_key(secret), body, digest).hexdigest()


def verify_signature(
    secret: str | bytes, body: bytes, headers: Mapping[str, str]
) -> SignatureCheck:
    """Check the raw ``body`` against the strongest signature header present.

    ``headers`` must look names up case-insensitively (Starlette's and httpx's
    ``Headers`` do). When the V2 header is present it alone decides: a valid
    SHA-1 cannot rescue a wrong SHA-256, so an attacker gains nothing by
    stripping or forging one of the two.
    """
    key = _key(secret)
    for header, digest in _ALGORITHMS.items():
        given = headers.get(header)
        if given is None:
            continue
        expected = hmac.new(key, body, digest).hexdigest().encode("ascii")
        # Encode before comparing: compare_digest refuses non-ASCII str, and a
        # header is attacker-controlled text.
        candidate = given.strip().lower().encode("utf-8", "replace")
        if hmac.compare_digest(expected, candidate):
            return SignatureCheck.VALID
        return SignatureCheck.MISMATCH
    return SignatureCheck.MISSING


@dataclass(frozen=True, slots=True)
class HostEvent:
    """A user became (``joined``) or stopped being a host of ``channel``."""

    event_type: int
    channel: str
    uid: int
    client_seq: int
    joined: bool
    ts: int | None = None
    reason: int | None = None

    @property
    def kind(self) -> str:
        return "join" if self.joined else "leave"


@dataclass(frozen=True, slots=True)
class Notification:
    """One NCS delivery. ``host_event`` is set for the RTC events that change hosts."""

    notice_id: str
    product_id: int
    event_type: int
    notify_ms: int | None
    channel: str | None
    host_event: HostEvent | None


def _int(value: Any, field: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WebhookError(f"{field}: {value!r} is not an integer")
    if not low <= value <= high:
        raise WebhookError(f"{field}: {value} is outside {low}..{high}")
    return value


def _optional_int(payload: Mapping[str, Any], key: str) -> int | None:
    value = payload.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def parse_notification(body: bytes) -> Notification:
    """Parse a verified body. Raises ``WebhookError`` naming the field that is wrong.

    Only the fields layoutsync acts on are checked strictly (productId,
    eventType, and for host events channelName, uid, clientSeq); informative
    ones (ts, reason) are kept when they are integers and dropped otherwise.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WebhookError(f"body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise WebhookError("body: expected a JSON object")
    product_id = _int(document.get("productId"), "productId", low=0, high=2**31 - 1)
    event_type = _int(document.get("eventType"), "eventType", low=0, high=2**31 - 1)
    notice_id = document.get("noticeId", "")
    if not isinstance(notice_id, str):
        notice_id = str(notice_id)
    notify_ms = _optional_int(document, "notifyMs")
    payload = document.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise WebhookError("payload: expected a JSON object")
    channel = payload.get("channelName")
    if channel is not None and not isinstance(channel, str):
        raise WebhookError(f"payload.channelName: {channel!r} is not a string")

    host_event: HostEvent | None = None
    if product_id == RTC_PRODUCT_ID and event_type in HOST_EVENT_TYPES:
        if not channel:
            raise WebhookError(f"payload.channelName: required for eventType {event_type}")
        uid = _int(payload.get("uid"), "payload.uid", low=1, high=MAX_UID)
        client_seq = _int(payload.get("clientSeq"), "payload.clientSeq", low=0, high=MAX_CLIENT_SEQ)
        host_event = HostEvent(
            event_type=event_type,
            channel=channel,
            uid=uid,
            client_seq=client_seq,
            joined=HOST_EVENT_TYPES[event_type],
            ts=_optional_int(payload, "ts"),
            reason=_optional_int(payload, "reason"),
        )
    return Notification(
        notice_id=notice_id,
        product_id=product_id,
        event_type=event_type,
        notify_ms=notify_ms,
        channel=channel,
        host_event=host_event,
    )


@dataclass(slots=True)
class _Record:
    client_seq: int
    left_at: float | None  # monotonic seconds of the last applied leave, None while a host

    def left_ago(self, now: float) -> float | None:
        return None if self.left_at is None else now - self.left_at


class ClientSeqTracker:
    """Last applied clientSeq per (channel, uid): the documented guard against reordering.

    ``accept(event, now)`` answers whether ``event`` is news and, when it is,
    records it. Records of users who left are dropped ``retention`` seconds
    after the leave; at most ``max_records`` are kept (those who left go
    first, then the least recently updated), so memory stays bounded under any
    event stream. Forgetting a record only weakens the guard for an event
    delayed longer than that, which is the trade-off Agora documents.
    """

    __slots__ = ("_left", "_records", "max_records", "retention")

    def __init__(self, *, retention: float = 60.0, max_records: int = 200_000) -> None:
        if retention < 0:
            raise ValueError("retention must be >= 0")
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        self.retention = retention
        self.max_records = max_records
        self._records: OrderedDict[tuple[str, int], _Record] = OrderedDict()
        self._left: OrderedDict[tuple[str, int], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def last_seq(self, channel: str, uid: int) -> int | None:
        record = self._records.get((channel, uid))
        return None if record is None else record.client_seq

    def accept(self, event: HostEvent, now: float) -> bool:
        """True when ``event.client_seq`` is above the last applied one (then it is recorded)."""
        self.prune(now)
        key = (event.channel, event.uid)
        record = self._records.get(key)
        if record is not None and event.client_seq <= record.client_seq:
            return False
        if record is None:
            record = self._records[key] = _Record(event.client_seq, None)
        else:
            record.client_seq = event.client_seq
            self._records.move_to_end(key)
        if event.joined:
            record.left_at = None
            self._left.pop(key, None)
        else:
            record.left_at = now
            self._left[key] = now
            self._left.move_to_end(key)
        self._bound()
        return True

    def export(self, now: float) -> list[ClientSeqRow]:
        """Every record as (channel, uid, clientSeq, seconds since the leave or None),
        least recently updated first: what ``restore`` takes after a restart."""
        self.prune(now)
        return [
            (channel, uid, record.client_seq, record.left_ago(now))
            for (channel, uid), record in self._records.items()
        ]

    def restore(self, rows: Iterable[ClientSeqRow], now: float) -> int:
        """Take records back from ``export`` (of this or an earlier process); returns how many.

        A record of a user who left longer than ``retention`` ago is dropped;
        an existing record keeps the higher clientSeq.
        """
        restored = 0
        for channel, uid, client_seq, left_ago in rows:
            if left_ago is not None and left_ago >= self.retention:
                continue
            key = (channel, uid)
            current = self._records.get(key)
            if current is not None and current.client_seq >= client_seq:
                continue
            left_at = None if left_ago is None else now - left_ago
            self._records[key] = _Record(client_seq, left_at)
            self._records.move_to_end(key)
            self._left.pop(key, None)
            if left_at is not None:
                self._left[key] = left_at
            restored += 1
        # ``prune`` reads leaves oldest first
        self._left = OrderedDict(sorted(self._left.items(), key=lambda item: item[1]))
        self._bound()
        return restored

    def prune(self, now: float) -> None:
        """Drop the records of users who left more than ``retention`` seconds ago."""
        horizon = now - self.retention
        while self._left:
            key, left_at = next(iter(self._left.items()))
            if left_at > horizon:
                break
            del self._left[key]
            self._records.pop(key, None)

    def _bound(self) -> None:
        while len(self._records) > self.max_records:
            if self._left:
                key, _ = self._left.popitem(last=False)
                self._records.pop(key, None)
            else:
                self._records.popitem(last=False)
