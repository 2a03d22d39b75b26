"""The values the API core produces: which call, and what the service answered.

Every value is a frozen, slotted dataclass, as h11's events are. Secrets (the
builderToken, and any rtcToken a task object may echo in ``raw``) are kept out
of ``repr`` so a value can be logged or shown in a traceback safely.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "BUILDER_TOKEN_TTL",
    "ENDED_STATUSES",
    "Accepted",
    "BuilderToken",
    "Call",
    "ResponseEvent",
    "Result",
    "Task",
    "Updated",
    "WaitEvent",
]

#: Seconds a builderToken may be used for a Create after it was issued (vendor page: 5 minutes).
BUILDER_TOKEN_TTL = 300.0

#: Task statuses after which the transcoder is stopping or gone (it composes nothing any more).
ENDED_STATUSES = frozenset({"STOPPING", "STOPPED", "EXIT", "FAILURE_STOP"})


class Call(enum.StrEnum):
    """The five calls of the Cloud Transcoder API (the value is the name used in logs/errors)."""

    ACQUIRE = "acquire"
    CREATE = "create"
    QUERY = "query"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class BuilderToken:
    """What Acquire returns. ``token`` is a secret: it is never part of ``repr``.

    ``created_at`` is the service's ``createTs`` (Unix seconds, the service's
    clock); the token must be used for a Create within ``BUILDER_TOKEN_TTL``.
    """

    token: str = field(repr=False)
    created_at: float
    instance_id: str
    request_id: str | None = field(default=None, compare=False)

    @property
    def expires_at(self) -> float:
        """When the service stops accepting this token for a Create (service clock)."""
        return self.created_at + BUILDER_TOKEN_TTL


@dataclass(frozen=True, slots=True)
class Task:
    """A task object from Create, Query or Delete.

    ``sequence_id`` is the service's ``sequenceId`` (a reserved field sent as a
    string) as an int, or None when absent or not a number; do not infer that an
    Update took effect from it. ``raw`` is the whole parsed body (read-only),
    hidden from ``repr`` because a service may echo the config with its tokens.
    """

    task_id: str
    status: str
    sequence_id: int | None
    created_at: float | None
    service_status: str | None
    request_id: str | None = field(default=None, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ended(self) -> bool:
        """True when the task is stopping or stopped (``ENDED_STATUSES``)."""
        return self.status in ENDED_STATUSES


@dataclass(frozen=True, slots=True)
class Accepted:
    """202: the call was received but not finished; poll Query to learn the outcome."""

    call: Call
    request_id: str | None
    task_id: str | None = None


@dataclass(frozen=True, slots=True)
class Updated:
    """Update answered 2xx (its body is empty): the service took the new config."""

    request_id: str | None


#: Anything ``interpret`` can return.
Result = BuilderToken | Task | Accepted | Updated


@dataclass(frozen=True, slots=True)
class ResponseEvent:
    """One HTTP exchange, as passed to a client's ``on_response`` hook (for metrics/logs).

    ``status_code`` is None when no response arrived, and ``error`` then names
    the ``TransportError`` class. ``phase`` says why the request was sent:
    ``send`` (the caller's call), ``check`` (a Query after the call failed in
    transit), ``confirm`` (a Query confirming a 404) or ``adopt`` (a Query of
    the task a 409 named). ``attempt`` counts requests within one client call.
    It carries no secrets.
    """

    call: Call
    method: str
    path: str
    status_code: int | None
    request_id: str | None
    elapsed: float
    attempt: int
    phase: str
    error: str | None = None


#: What follows a wait: send the call again, Query whether it took effect, Query whether
#: the task is really gone, or Query until an accepted (202) call settles.
WaitThen = Literal["retry", "check", "confirm", "poll"]

_THEN: Mapping[str, str] = {
    "retry": "retrying",
    "check": "asking with a Query whether it took effect",
    "confirm": "confirming with a Query that the task is gone",
    "poll": "asking with a Query whether it finished",
}


@dataclass(frozen=True, slots=True)
class WaitEvent:
    """A wait about to begin, as passed to ``on_wait`` hooks (``Client``, ``Session``).

    ``reason`` is the answer that caused it (``"503"``, ``"404"``, ``"202"``,
    ``"no response"``, ``"timeout"``); ``then`` what follows the wait
    (``retry``, ``check``, ``confirm`` or ``poll``); ``number`` counts the waits
    of one call or poll, of ``limit`` at most. It carries no secrets, so an
    application may print ``str(event)`` as it is.
    """

    call: Call
    reason: str
    request_id: str | None
    seconds: float
    then: WaitThen
    number: int
    limit: int

    def __str__(self) -> str:
        rid = f" (request id {self.request_id})" if self.request_id else ""
        what = "202 (accepted, not finished)" if self.reason == "202" else self.reason
        return (
            f"{what} from {self.call.value.capitalize()}{rid}; {_THEN.get(self.then, self.then)} "
            f"in {_seconds(self.seconds)}, {self.number} of {self.limit}"
        )


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 1.5 else f"{value:.1f} s"
