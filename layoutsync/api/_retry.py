"""The retry policy as a state machine without I/O, shared by ``Client`` and ``AsyncClient``.

The vendor's guidance, as rules:

- 429, 5xx, timeouts and dropped connections may or may not have taken
  effect. Back off (5, 10, 15 s by default, jittered), then Query the task
  when there is one to learn where things stand, then send again. Re-sending
  is safe by construction: a retried Create carries the same builderToken (one
  token makes at most one task), a retried Update the same sequenceId and body
  (the service ignores a sequenceId not above the last one).
- 404 on a task that should exist is believed only once Queries after the
  back-offs keep answering 404 (``confirm_missing=False`` skips this).
- A Create answered 409 whose body names the task is settled by Querying that
  task with the Create's own token: if the token may read it, it is ours.
- 400, 401, 403 (and any other status) are never retried.
- One schedule of delays per client call: each back-off takes the next delay;
  when none is left, the last error is raised.

The rules live in ``TABLE`` below: (call, phase, outcome) -> action, as h11
keeps its transitions in tables. ``RetryMachine`` follows it: the client calls
``start()``, sends each ``Send`` it gets (after ``Send.delay`` seconds), feeds
back ``receive_response(...)`` or ``receive_error(...)``, and stops at ``Done``
or when the machine raises.
"""

from __future__ import annotations

import enum
import math
import random as _random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ..errors import ApiError, RequestTimeout, TransportError
from .models import Accepted, Call, Result, Task, WaitEvent, WaitThen
from .protocol import MalformedResponse, Request, build_query, conflicting_task_id, parse

__all__ = [
    "DEFAULT_POLICY",
    "TABLE",
    "Action",
    "Done",
    "Outcome",
    "Phase",
    "RetryMachine",
    "RetryPolicy",
    "Send",
    "decide",
    "outcome_of",
]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to back off before each retry.

    ``delays`` are the waits, in seconds, before the 1st, 2nd, ... retry of one
    client call (their count is the retry budget; ``()`` disables retries).
    Each wait is scaled by a random factor in ``[1 - jitter, 1 + jitter]`` so
    that many clients do not retry in step; ``random`` (returning [0, 1)) is
    injectable for tests.
    """

    delays: tuple[float, ...] = (5.0, 10.0, 15.0)
    jitter: float = 0.2
    random: Callable[[], float] = field(default=_random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        delays = tuple(self.delays)
        for delay in delays:
            if isinstance(delay, bool) or not isinstance(delay, int | float):
                raise ValueError(f"RetryPolicy.delays: {delay!r} is not a number of seconds")
            if not math.isfinite(delay) or delay < 0:
                raise ValueError(f"RetryPolicy.delays: {delay!r} must be finite and >= 0")
        if isinstance(self.jitter, bool) or not 0 <= self.jitter <= 1:
            raise ValueError(f"RetryPolicy.jitter: {self.jitter!r} must be between 0 and 1")
        object.__setattr__(self, "delays", tuple(float(delay) for delay in delays))

    def delay(self, retry: int) -> float | None:
        """The jittered wait before retry number ``retry`` (0-based), or None when spent."""
        if retry >= len(self.delays):
            return None
        base = self.delays[retry]
        if not self.jitter:
            return base
        return max(0.0, base * (1.0 + self.jitter * (2.0 * self.random() - 1.0)))


DEFAULT_POLICY: Final = RetryPolicy()


class Phase(enum.Enum):
    """Why the request now in flight was sent."""

    SEND = "send"  #: the caller's own call
    CHECK = "check"  #: a Query after the call failed in transit: is the task there?
    CONFIRM = "confirm"  #: a Query after a 404: is the task really gone?
    ADOPT = "adopt"  #: a Query of the task a Create's 409 named, with the Create's token


class Outcome(enum.Enum):
    """What one answer (or its absence) means, whatever the call."""

    OK = "ok"  #: 2xx with the call's result (a task that is running, for task calls)
    ENDED = "ended"  #: 2xx with a task object that is stopping or stopped
    ACCEPTED = "accepted"  #: 202: received, not finished
    NOT_FOUND = "not_found"  #: 404
    CONFLICT = "conflict"  #: 409 that does not say which task
    CONFLICT_NAMES_TASK = "conflict_names_task"  #: 409 whose body carries the taskId
    TRANSIENT = "transient"  #: 429, 5xx, timeout, dropped connection: outcome unknown
    FATAL = "fatal"  #: 400, 401, 403, other statuses, a malformed 2xx body


class Action(enum.Enum):
    """What to do next. ``BACKOFF_*`` wait for the next delay first (or raise when spent)."""

    RETURN = "return"  #: the answer is the result of the client call
    RAISE = "raise"  #: the answer is the error of the client call
    RAISE_CONFLICT = "raise_conflict"  #: raise the 409 the adoption started from
    RESEND = "resend"  #: send the call again now (the Query just made shows it is safe)
    ADOPT = "adopt"  #: Query the task the 409 named, now
    BACKOFF_RESEND = "backoff_resend"
    BACKOFF_CHECK = "backoff_check"
    BACKOFF_CONFIRM = "backoff_confirm"
    BACKOFF_ADOPT = "backoff_adopt"


_O = Outcome
_A = Action


def _row(**actions: Action) -> dict[Outcome, Action]:
    """One row of the table: the outcomes listed, and RAISE for every other."""
    row = dict.fromkeys(Outcome, Action.RAISE)
    row.update({Outcome[name]: action for name, action in actions.items()})
    return row


# (call, phase) -> outcome -> action. Outcomes a row does not list raise.
#
# SEND is the caller's call. Acquire and Create have no task to Query, so their
# transient failures are simply re-sent (Create with the same builderToken,
# which makes at most one task: a retried Create answers 200 or 201 with that
# task, or 409; a 409 naming the task is adopted). Query is its own check: a
# 404 or a transient failure back off and Query again.
#
# CHECK follows a transient failure of Update or Delete: the task still being
# there means the call may be re-sent (the same sequenceId and body for Update).
# For Delete, an ended task or a 404 means our Delete took effect: return the
# task, or raise TaskNotFound at once (the task is gone, as wanted).
#
# CONFIRM follows a 404 on a task that should exist: keep backing off and
# Querying; a task after all means re-send; 404 until the delays are spent
# raises TaskNotFound.
#
# ADOPT follows a 409 on Create naming a task: the Create's token reading it
# makes it the result; any other answer than a transient one raises the 409.
TABLE: Final[Mapping[tuple[Call, Phase], Mapping[Outcome, Action]]] = {
    (Call.ACQUIRE, Phase.SEND): _row(
        OK=_A.RETURN, ACCEPTED=_A.BACKOFF_RESEND, TRANSIENT=_A.BACKOFF_RESEND
    ),
    (Call.CREATE, Phase.SEND): _row(
        OK=_A.RETURN,
        ENDED=_A.RETURN,
        ACCEPTED=_A.RETURN,
        CONFLICT_NAMES_TASK=_A.ADOPT,
        TRANSIENT=_A.BACKOFF_RESEND,
    ),
    (Call.CREATE, Phase.ADOPT): {
        _O.OK: _A.RETURN,
        _O.ENDED: _A.RETURN,
        _O.ACCEPTED: _A.BACKOFF_ADOPT,
        _O.TRANSIENT: _A.BACKOFF_ADOPT,
        _O.NOT_FOUND: _A.RAISE_CONFLICT,
        _O.CONFLICT: _A.RAISE_CONFLICT,
        _O.CONFLICT_NAMES_TASK: _A.RAISE_CONFLICT,
        _O.FATAL: _A.RAISE_CONFLICT,
    },
    (Call.QUERY, Phase.SEND): _row(
        OK=_A.RETURN,
        ENDED=_A.RETURN,
        ACCEPTED=_A.RETURN,
        NOT_FOUND=_A.BACKOFF_RESEND,
        TRANSIENT=_A.BACKOFF_RESEND,
    ),
    (Call.UPDATE, Phase.SEND): _row(
        OK=_A.RETURN,
        ACCEPTED=_A.RETURN,
        NOT_FOUND=_A.BACKOFF_CONFIRM,
        TRANSIENT=_A.BACKOFF_CHECK,
    ),
    (Call.UPDATE, Phase.CHECK): _row(
        OK=_A.RESEND,
        ENDED=_A.RESEND,
        ACCEPTED=_A.BACKOFF_CHECK,
        NOT_FOUND=_A.BACKOFF_CONFIRM,
        TRANSIENT=_A.BACKOFF_CHECK,
    ),
    (Call.UPDATE, Phase.CONFIRM): _row(
        OK=_A.RESEND,
        ENDED=_A.RESEND,
        ACCEPTED=_A.BACKOFF_CONFIRM,
        NOT_FOUND=_A.BACKOFF_CONFIRM,
        TRANSIENT=_A.BACKOFF_CONFIRM,
    ),
    (Call.DELETE, Phase.SEND): _row(
        OK=_A.RETURN,
        ENDED=_A.RETURN,
        ACCEPTED=_A.RETURN,
        NOT_FOUND=_A.BACKOFF_CONFIRM,
        TRANSIENT=_A.BACKOFF_CHECK,
    ),
    (Call.DELETE, Phase.CHECK): _row(
        OK=_A.RESEND,
        ENDED=_A.RETURN,
        ACCEPTED=_A.BACKOFF_CHECK,
        NOT_FOUND=_A.RAISE,
        TRANSIENT=_A.BACKOFF_CHECK,
    ),
    (Call.DELETE, Phase.CONFIRM): _row(
        OK=_A.RESEND,
        ENDED=_A.RETURN,
        ACCEPTED=_A.BACKOFF_CONFIRM,
        NOT_FOUND=_A.BACKOFF_CONFIRM,
        TRANSIENT=_A.BACKOFF_CONFIRM,
    ),
}

#: Actions that doubt a 404; with ``confirm_missing=False`` they raise it at once instead.
_DOUBTS_404 = frozenset({Action.BACKOFF_CONFIRM, Action.BACKOFF_RESEND})


def decide(call: Call, phase: Phase, outcome: Outcome, *, confirm_missing: bool = True) -> Action:
    """The table's action, with ``confirm_missing=False`` turning doubted 404s into RAISE."""
    action = TABLE[call, phase][outcome]
    if outcome is Outcome.NOT_FOUND and not confirm_missing and action in _DOUBTS_404:
        return Action.RAISE
    return action


def outcome_of(value: Result | Exception) -> Outcome:
    """Classify an answer (a result, an ``ApiError`` or a ``TransportError``)."""
    if isinstance(value, Task):
        return Outcome.ENDED if value.ended else Outcome.OK
    if isinstance(value, Accepted):
        return Outcome.ACCEPTED
    if isinstance(value, ApiError):
        status = value.status_code
        if status == 404:
            return Outcome.NOT_FOUND
        if status == 409:
            return Outcome.CONFLICT_NAMES_TASK if conflicting_task_id(value) else Outcome.CONFLICT
        if status == 429 or status >= 500:
            return Outcome.TRANSIENT
        return Outcome.FATAL
    if isinstance(value, MalformedResponse):
        return Outcome.FATAL
    if isinstance(value, TransportError):
        return Outcome.TRANSIENT
    if isinstance(value, Exception):
        return Outcome.FATAL
    return Outcome.OK


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``request`` after waiting ``delay`` seconds (``wait`` says why, when > 0)."""

    request: Request
    delay: float
    phase: Phase
    attempt: int
    wait: WaitEvent | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """The client call's result."""

    result: Result


class RetryMachine:
    """One client call's way through ``TABLE``; it never sleeps or sends by itself."""

    __slots__ = (
        "_adopt",
        "_backoffs",
        "_check",
        "_conflict",
        "_last_error",
        "_waiting",
        "attempt",
        "confirm_missing",
        "phase",
        "policy",
        "request",
        "sent",
    )

    def __init__(
        self,
        request: Request,
        policy: RetryPolicy = DEFAULT_POLICY,
        *,
        confirm_missing: bool = True,
    ) -> None:
        self.request = request
        self.policy = policy
        self.confirm_missing = confirm_missing
        self.phase = Phase.SEND
        self.sent = request  #: the request whose answer is awaited
        self.attempt = 0
        self._backoffs = 0
        self._last_error: Exception | None = None
        self._conflict: ApiError | None = None
        self._check: Request | None = None
        self._adopt: Request | None = None
        self._waiting = False

    def start(self) -> Send:
        """The first request: the call itself, at once."""
        if self.attempt:
            raise RuntimeError("RetryMachine.start() was already called")
        return self._send(self.request, Phase.SEND, 0.0)

    def receive_response(
        self,
        status_code: int,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        content: bytes,
    ) -> Send | Done:
        """Feed the answer to the last ``Send``; returns the next step or raises the error."""
        self._expect_answer()
        value = parse(self.sent.call, status_code, headers, content, request=self.sent)
        return self._next(outcome_of(value), value)

    def receive_error(self, error: TransportError) -> Send | Done:
        """Feed a failure to get any answer (timeout, refused or dropped connection)."""
        self._expect_answer()
        return self._next(outcome_of(error), error)

    # -- internals ---------------------------------------------------------------

    def _expect_answer(self) -> None:
        """Like h11's ERROR state, finishing is final: one answer per ``Send``, none after."""
        if not self._waiting:
            raise RuntimeError(
                "RetryMachine is not waiting for an answer (finished or not started)"
            )
        self._waiting = False

    def _next(self, outcome: Outcome, value: Result | Exception) -> Send | Done:
        if isinstance(value, Exception):
            self._last_error = value
        action = decide(
            self.request.call, self.phase, outcome, confirm_missing=self.confirm_missing
        )
        if action is Action.RETURN:
            assert not isinstance(value, Exception)
            return Done(value)
        if action is Action.RAISE:
            assert isinstance(value, Exception)
            raise value
        if action is Action.RAISE_CONFLICT:
            assert self._conflict is not None
            raise self._conflict from (value if isinstance(value, Exception) else None)
        if action is Action.RESEND:
            return self._send(self.request, Phase.SEND, 0.0)
        if action is Action.ADOPT:
            assert isinstance(value, ApiError)
            self._conflict = value
            self._adopt = build_query(
                self.request.app_id,
                conflicting_task_id(value) or "",
                self.request.builder_token or "",
            )
            return self._send(self._adopt, Phase.ADOPT, 0.0)
        if isinstance(value, Accepted) and self._last_error is None:
            self._last_error = MalformedResponse(
                "the service answered 202 (not finished) and never the result", call=value.call
            )
        delay = self._backoff()
        wait = WaitEvent(
            call=self.sent.call,
            reason=_reason(value),
            request_id=getattr(value, "request_id", None),
            seconds=delay,
            then=_THEN[action],
            number=self._backoffs,
            limit=len(self.policy.delays),
        )
        if action is Action.BACKOFF_RESEND:
            return self._send(self.request, Phase.SEND, delay, wait)
        if action is Action.BACKOFF_ADOPT:
            assert self._adopt is not None
            return self._send(self._adopt, Phase.ADOPT, delay, wait)
        phase = Phase.CHECK if action is Action.BACKOFF_CHECK else Phase.CONFIRM
        return self._send(self._query(), phase, delay, wait)

    def _backoff(self) -> float:
        delay = self.policy.delay(self._backoffs)
        if delay is None:
            assert self._last_error is not None
            raise self._last_error
        self._backoffs += 1
        return delay

    def _query(self) -> Request:
        if self._check is None:
            request = self.request
            assert request.task_id is not None and request.builder_token is not None
            self._check = build_query(request.app_id, request.task_id, request.builder_token)
        return self._check

    def _send(
        self, request: Request, phase: Phase, delay: float, wait: WaitEvent | None = None
    ) -> Send:
        self.attempt += 1
        self.sent = request
        self.phase = phase
        self._waiting = True
        return Send(request, delay, phase, self.attempt, wait)


#: What follows each back-off, as ``WaitEvent.then`` tells it.
_THEN: Final[Mapping[Action, WaitThen]] = {
    Action.BACKOFF_RESEND: "retry",
    Action.BACKOFF_CHECK: "check",
    Action.BACKOFF_CONFIRM: "confirm",
    Action.BACKOFF_ADOPT: "check",
}


def _reason(value: Result | Exception) -> str:
    """The answer that caused a wait, in the words an operator reads in the vendor's docs."""
    if isinstance(value, ApiError) and value.status_code is not None:
        return str(value.status_code)
    if isinstance(value, Accepted):
        return "202"
    if isinstance(value, RequestTimeout):
        return "timeout"
    if isinstance(value, TransportError):
        cause = value.__cause__
        return f"no response ({type(cause).__name__})" if cause is not None else "no response"
    return type(value).__name__
