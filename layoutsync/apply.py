"""Sessions: keep one live transcoder equal to a spec and the hosts present, across crashes.

``Session`` (blocking, over ``Client``) and ``AsyncSession`` (over
``AsyncClient``) are twins over one sans-IO core, as the clients are: the
reconcile logic is a generator that *yields* effects (``Send`` a client call,
``Save`` a state row, ``Sleep``) and receives their results; each session
only performs them. ``host_joined``/``host_left``/``set_hosts``/``set_speaker``
change the desired state; ``reconcile()`` sends. Any number of changes
between two reconciles cost at most one Update.

Durable desired state
    A change that returned is on disk: each of those calls that changes the
    hosts or speaker writes them (``StateStore.save_desired``, one small
    transaction) before it returns, and one that raises ``StateError`` changed
    nothing. A new ``Session`` on the same store takes them back, so a process
    killed right after a ``host_joined`` converges on the next reconcile. A
    call that changes nothing writes nothing. ``durable_inputs=False`` keeps
    changes in memory until the next reconcile (or ``save_desired()``); the
    daemon does so and writes many sessions in one group commit instead.

Tokens at rest
    A store fingerprints every rtcToken of the bodies it keeps
    (``layoutsync.store``). A session puts the tokens its spec resolves back
    in place when it loads; a fingerprint left over is a token that changed
    (the next plan updates it), and a Create resumed after a crash is
    compiled again from its inputs when its body lacks a token.

Noop fast path
    When the compiler's inputs (hosts, speaker, spec fingerprint) equal those
    of the last successful reconcile of this process and nothing is pending,
    ``reconcile()`` returns a cached noop result: nothing is compiled,
    validated, diffed, stored or sent. A new process always compiles once, so
    a changed ``env:`` token or a new layoutsync version is noticed.

Memory (a daemon holds thousands of sessions)
    One request body per session: once applied, the applied body *is* the
    compiled one (and a compile equal to the applied config by hash takes
    its place), results carry their plan without the body, ``status()``
    keeps the last plan as its one-line summary, and the logger and the
    async lock exist only while in use.

Write-ahead state (``layoutsync.store``)
    Before every mutating call an ``Intent`` is saved, and the call's outcome
    settles it. A process killed at any point resumes like this:

    ==========  ==============================================================
    intent      on the next reconcile (or destroy)
    ==========  ==============================================================
    acquire     dropped: the token was never stored, so it is never used.
    create      token younger than ``TOKEN_MAX_AGE`` (270 s, 30 s inside the
                vendor's 5 minutes): re-send Create with that token and the
                same body. One token makes at most one task, so the service
                answers with the task the lost Create made, or makes it now.
                Older: the Create's fate is unknown and its token may not be
                used for a Create, so it becomes the *orphan*; a new token is
                acquired just before the new Create. If a task made by the
                orphan exists, that Create gets 409: layoutsync then sends one
                Create with the orphan's own token, which can only return the
                task that token made (never a second one) and adopts it, with
                that token for the rest of its life. Any other 409 is
                ``UnknownTaskConflict``: a task layoutsync does not own holds
                the instanceId, and it says how to recover. One orphan is
                kept (a newer one replaces it): the worst case is that error,
                never a second task.
    update      its sequenceId counts as sent (it was saved before sending),
                and the live body is "the old one or this one": the next plan
                re-sends the desired config with the *next* sequenceId. A
                sequenceId is never sent twice to a task, so the service never
                sees a stale one, and it applies the highest it has seen.
    delete      re-sent; 404 means it took effect.
    ==========  ==============================================================

sequenceIds
    Create does not count: a new task's first Update carries 0, then 1, 2...
    (the vendor's recommendation). The next one is always above the last one
    *sent* (stored before sending), so they strictly increase across restarts.

Answers (``_VERDICTS``): a confirmed 404 (``TaskNotFound``) means the task is
gone (idleTimeout or deleted elsewhere): its state is cleared and, when hosts
are visible, it is created again in the same reconcile. 409 on Create is the
orphan case above. 202 (``Accepted``) is polled with Query (``POLL_DELAYS``,
injected ``sleep``) until settled; an Update whose effect stays unconfirmed
keeps its intent, so the next reconcile re-sends it with a higher sequenceId.
429/5xx/timeouts that outlive the client's own retries leave the intent in
place (the outcome is unknown) and ask for a requeue; 400/401/403 are
definitive and clear it.

Minted tokens (spec ``tokens``, ``layoutsync.tokens``): a task's rtcTokens are
minted at its Create and made again from their recipes (``SessionState.tokens``)
on every compile, so restarts and reloads send the same ones. Input tokens due
for renewal are minted afresh and sent by the plan's Update; a successful
reconcile's ``requeue_after`` says when the next renewal is due, and the noop
fast path stops holding at that moment.

Idle tasks: with ``onEmpty=idle`` a task without visible hosts is left to the
service's idleTimeout. When hosts come back it is Queried first, and created
again if it is gone.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

import anyio

from .api.client import AsyncClient, Client, WaitHook
from .api.models import Accepted, BuilderToken, Call, Task, WaitEvent
from .api.protocol import conflicting_task_id
from .canonical import canonical_hash
from .compile import Compiled, SlotAssignment, compile_layout
from .errors import (
    ApiError,
    InstanceConflict,
    LayoutsyncError,
    RateLimited,
    ServerError,
    SpecError,
    StateError,
    TaskNotFound,
    TransportError,
)
from .logs import get_logger
from .plan import Action, Live, Plan, make_plan
from .spec import LayoutSpec
from .store import (
    DesiredInputs,
    Inputs,
    Intent,
    SessionState,
    StateStore,
    has_fingerprints,
    restore_tokens,
)
from .tokens import TaskTokenProvider, TaskTokens, TokenChoice, TokenMinter, with_tokens
from .validate import MAX_UID, is_host_uid

__all__ = [
    "POLL_DELAYS",
    "TOKEN_MAX_AGE",
    "AsyncSession",
    "ReconcileResult",
    "Session",
    "SessionStatus",
    "UnknownTaskConflict",
]

#: A builderToken older than this (seconds) is never used for a Create (vendor: 5 minutes).
TOKEN_MAX_AGE: Final = 270.0

#: Waits between the Queries that follow a 202, until the call is seen settled.
POLL_DELAYS: Final = (1.0, 2.0, 4.0, 8.0)

#: How long to wait before reconciling again when an outcome is still unknown.
REQUEUE_AFTER: Final = 5.0

_MAX_ROUNDS = 3

T = TypeVar("T")


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What one reconcile did.

    ``action`` is the action carried out (an Update that found the task gone
    and created it again reports ``create``); ``plan`` the plan it carried
    out, without its body (``Session.compiled.body`` holds that, once);
    ``calls`` the API calls actually sent, in order. ``error`` is the
    ``LayoutsyncError`` that stopped it (None on success). ``requeue_after``
    (seconds) asks the caller to reconcile again later: an outcome is still
    unknown (a 202 not yet settled, or a 429/5xx/timeout that outlived the
    client's retries), or, on success with minted tokens, when the task's
    tokens are next due (an input renewal, the output token's warning or
    scheduled replacement).
    """

    action: Action
    plan: Plan | None
    task_id: str | None
    sequence_id: int | None
    calls: tuple[str, ...] = ()
    error: LayoutsyncError | None = None
    requeue_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> ReconcileResult:
        """Raise ``error`` if there is one, else return self (as httpx's ``raise_for_status``)."""
        if self.error is not None:
            raise self.error
        return self


@dataclass(frozen=True, slots=True)
class SessionStatus:
    """A snapshot for status pages: desired state, what is live, and what is owed."""

    name: str
    instance_id: str
    hosts: tuple[int, ...]
    speaker: int | None
    visible: tuple[int, ...]
    overflowed: tuple[int, ...]
    task_id: str | None
    sequence_id: int | None
    last_plan: str | None
    last_action: Action | None
    last_error: str | None
    pending: bool
    #: minted tokens: when the live task's tokens expire (Unix seconds), by role
    token_expiry: Mapping[str, int] | None = None


class UnknownTaskConflict(InstanceConflict):
    """409: a live task holds the instanceId and this state does not own it.

    layoutsync never makes a second task; ``str(exc)`` says how to recover.
    """

    def __init__(
        self,
        cause: ApiError,
        *,
        instance_id: str,
        idle_timeout: int,
        owner: str | None,
        name: str | None = None,
    ):
        super().__init__(
            call=cause.call,
            status_code=409,
            request_id=cause.request_id,
            message=cause.message,
            body=cause.body,
        )
        self.instance_id = instance_id
        self.task_id = conflicting_task_id(cause)
        task = f"task {self.task_id}" if self.task_id else "a live transcoder task"
        if owner:
            fix = (
                f"session {owner!r} of this state file manages it. To drive it from this "
                f"session, run `layoutsync state mv {owner} {name or 'NAME'}`; to end it, "
                f"`layoutsync destroy` with {owner!r}'s spec"
            )
        else:
            fix = (
                "another process or state file manages it, or a Create whose answer was lost "
                "made it. If you hold its builderToken, run `layoutsync adopt SPEC --task-id "
                f"{self.task_id or 'TASK_ID'}` (the builderToken from $LAYOUTSYNC_BUILDER_TOKEN "
                "or stdin, never a flag) to take it over"
            )
        self.args = (
            f"instanceId {instance_id!r} already has {task} that this session does not own "
            f"({fix}). layoutsync will not create a second one. Otherwise the task ends by "
            f"itself {idle_timeout} s (its idleTimeout) after its hosts leave the channel, or "
            "give this spec another instanceId; then run the reconcile again.",
        )


class _Pending(Exception):
    """A call was accepted (202) but is not seen settled yet: stop, keep the intent, requeue."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What ``status()`` shows of the last reconcile: text, not the plan and its changes."""

    action: Action
    plan_summary: str | None
    error: str | None


class _IdleFreeLock:
    """An ``anyio.Lock`` that exists only while it is held or awaited.

    A daemon keeps thousands of sessions that are idle nearly all the time; an
    ``anyio.Lock`` and its waiter deque cost ~0.8 KiB each. The lock is made on
    first ``acquire`` and dropped on ``release`` when nobody waits for it, so
    it is never dropped while a task holds it or queues for it.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock: anyio.Lock | None = None

    def locked(self) -> bool:
        return self._lock is not None and self._lock.locked()

    async def __aenter__(self) -> None:
        if self._lock is None:
            self._lock = anyio.Lock()
        await self._lock.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        lock = self._lock
        assert lock is not None
        lock.release()
        if not lock.locked() and not lock.statistics().tasks_waiting:
            self._lock = None


# --- effects (what the core asks its driver to do) ----------------------------------------------

CallName = Literal["acquire", "create", "query", "update", "delete"]


@dataclass(frozen=True, slots=True)
class Send:
    """Call ``client.<call>(*args, **kwargs)`` and send back its result (or throw its error)."""

    call: CallName
    args: tuple[Any, ...] = field(default=(), repr=False)
    kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Save:
    """Persist ``state`` (atomically) before going on."""

    state: SessionState


@dataclass(frozen=True, slots=True)
class Erase:
    """Delete the session's row."""

    name: str


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds``; ``wait`` says why, for the session's ``on_wait`` hook."""

    seconds: float
    wait: WaitEvent | None = None


def _poll_sleep(after: Accepted, delay: float, number: int, then: str = "poll") -> Sleep:
    """The wait before the next look at a call the service accepted (202) and has not finished."""
    event = WaitEvent(
        call=after.call,
        reason="202",
        request_id=after.request_id,
        seconds=delay,
        then="retry" if then == "retry" else "poll",
        number=number,
        limit=len(POLL_DELAYS),
    )
    return Sleep(delay, event)


Effect = Send | Save | Erase | Sleep
Steps = Generator[Effect, Any, T]

Verdict = Literal["gone", "conflict", "rejected", "unknown"]

#: What an error answering a mutating call means for its intent (first match wins):
#: gone -> the task no longer exists; conflict -> 409; rejected -> definitive, nothing
#: changed (400/401/403, or refused before sending); unknown -> it may have taken effect.
_VERDICTS: tuple[tuple[type[LayoutsyncError], Verdict], ...] = (
    (TaskNotFound, "gone"),
    (InstanceConflict, "conflict"),
    (RateLimited, "unknown"),
    (ServerError, "unknown"),
    (TransportError, "unknown"),
    # refused before it left (a lease this replica cannot confirm, a shared rate limit
    # that cannot be reached): says nothing of an earlier send of the same intent
    (StateError, "unknown"),
    (LayoutsyncError, "rejected"),
)


def _verdict(error: LayoutsyncError) -> Verdict:
    for kind, verdict in _VERDICTS:
        if isinstance(error, kind):
            return verdict
    return "rejected"  # pragma: no cover - LayoutsyncError closes the table


def _slots_json(slots: SlotAssignment | None) -> dict[str, Any] | None:
    """The slot hint as stored: JSON-ready, sharing the compiler's (immutable) pair tuples."""
    if slots is None:
        return None
    if not slots.recency:
        return {"template": slots.template, "pairs": slots.pairs}
    return {"template": slots.template, "pairs": slots.pairs, "recency": slots.recency}


def _slots_of(data: Any) -> SlotAssignment | None:
    if not isinstance(data, Mapping):
        return None
    try:
        pairs = tuple((int(uid), int(slot)) for uid, slot in data.get("pairs", ()))
        recency = tuple(int(uid) for uid in data.get("recency", ()))
        return SlotAssignment(str(data.get("template", "")), pairs, recency)
    except (TypeError, ValueError):
        return None  # a damaged hint only costs stability, never correctness


def _uid(value: object, what: str) -> int:
    if not is_host_uid(value):
        raise SpecError(what, f"{value!r} is not a host uid (an integer 1..{MAX_UID})")
    return value


# --- the shared core ----------------------------------------------------------------------------


class _SessionCore:
    """Desired state, the state row and the reconcile logic, without I/O."""

    def __init__(
        self,
        spec: LayoutSpec,
        *,
        client: Any,
        store: StateStore,
        name: str | None,
        clock: Callable[[], float],
        durable_inputs: bool = True,
        tokens: TokenMinter | None = None,
    ) -> None:
        self._spec = spec
        self._client = client
        self._store = store
        self.name = name or spec.instance_id
        self._clock = clock
        self._durable_inputs = durable_inputs
        self._desired_lock = threading.Lock()
        #: minted rtcTokens (``tokens`` in the spec): the provider, and this compile's choice
        self._minter = tokens
        self._token_provider: TaskTokenProvider | None = None
        self._token_choice: TokenChoice | None = None
        self._token_due_at: float | None = None  #: when the cached noop stops holding
        loaded = store.load(self.name)
        self._state = (
            self._with_tokens(loaded)
            if loaded
            else SessionState(name=self.name, instance_id=spec.instance_id)
        )
        desired = store.load_desired(self.name)
        if desired is None:  # a state file of an older layoutsync: the row's desired state
            desired = DesiredInputs(self._state.hosts, self._state.speaker)
        self._hosts: tuple[int, ...] = desired.hosts
        self._speaker: int | None = desired.speaker
        self._compiled: Compiled | None = None
        self._fast: tuple[Inputs, ReconcileResult] | None = None
        self._last: _Outcome | None = None
        #: request ids of the reconcile under way (None between reconciles)
        self._request_ids: list[str] | None = None
        self._snapshot = Inputs(self._hosts, self._speaker, spec.fingerprint)

    @property
    def _log(self) -> Any:
        """This session's logger, made per use: a daemon holds thousands of idle sessions."""
        return get_logger(session=self.name, instanceId=self._spec.instance_id)

    def __repr__(self) -> str:
        instance, task = self._spec.instance_id, self._state.task_id
        return f"{type(self).__name__}({self.name!r}, instance_id={instance!r}, task_id={task!r})"

    # --- desired state (no I/O, no lock needed beyond the tuple swap) ----------------------------

    @property
    def spec(self) -> LayoutSpec:
        return self._spec

    @property
    def hosts(self) -> tuple[int, ...]:
        """Desired hosts in join order."""
        return self._hosts

    @property
    def speaker(self) -> int | None:
        return self._speaker

    @property
    def compiled(self) -> Compiled | None:
        """The last compile (by ``plan`` or ``reconcile``): its body, placements, overflow."""
        return self._compiled

    @property
    def applied(self) -> tuple[Mapping[str, Any] | None, Inputs | None]:
        """The last body the service accepted and the inputs it came from (for pictures)."""
        state = self._state
        return state.applied_body, state.applied_inputs

    @property
    def slot_assignment(self) -> SlotAssignment | None:
        """The slots of the last applied layout: what the next compile keeps stable."""
        return _slots_of(self._state.slots)

    @property
    def desired(self) -> DesiredInputs:
        """The desired inputs as ``StateStore.save_desired`` keeps them."""
        return DesiredInputs(self._hosts, self._speaker, self._clock())

    def save_desired(self) -> None:
        """Write the desired inputs now (with ``durable_inputs=False``; otherwise each
        change has already written them)."""
        with self._desired_lock:
            self._store.save_desired(self.name, self.desired)

    def _set_desired(self, hosts: tuple[int, ...], speaker: int | None) -> None:
        """Write-then-swap (under ``_desired_lock``): a change that raised changed nothing."""
        if self._durable_inputs:
            self._store.save_desired(self.name, DesiredInputs(hosts, speaker, self._clock()))
        self._hosts, self._speaker = hosts, speaker

    def host_joined(self, uid: int) -> None:
        """A host is in the channel (idempotent); it joins at the end of the join order."""
        uid = _uid(uid, "host")
        with self._desired_lock:
            if uid not in self._hosts:
                self._set_desired((*self._hosts, uid), self._speaker)

    def host_left(self, uid: int) -> None:
        """A host left (idempotent). A speaker who leaves stays requested but is not shown."""
        uid = _uid(uid, "host")
        with self._desired_lock:
            if uid in self._hosts:
                self._set_desired(tuple(h for h in self._hosts if h != uid), self._speaker)

    def set_hosts(self, hosts: Iterable[int]) -> None:
        """The full set of hosts present. Hosts already known keep their join order;
        newcomers follow in the order given. The same set again changes nothing."""
        wanted = tuple(dict.fromkeys(_uid(uid, "hosts") for uid in hosts))
        with self._desired_lock:
            current = self._hosts
            if len(wanted) == len(current) and set(wanted) == set(current):
                return
            keep = set(wanted)
            known = set(current)
            hosts = tuple(h for h in current if h in keep) + tuple(
                h for h in wanted if h not in known
            )
            self._set_desired(hosts, self._speaker)

    def set_speaker(self, uid: int | None) -> None:
        """The active speaker (None: no speaker); only templates that feature one use it."""
        speaker = None if uid is None else _uid(uid, "speaker")
        with self._desired_lock:
            if speaker != self._speaker:
                self._set_desired(self._hosts, speaker)

    def replace_spec(self, spec: LayoutSpec) -> None:
        """Use a new spec from the next reconcile on (config reload). A change that cannot be
        an Update (canvas, watermarks, channels, instanceId...) replaces the task."""
        with self._desired_lock:
            self._spec = spec
            self._fast = None

    def status(self) -> SessionStatus:
        state, compiled, last = self._state, self._compiled, self._last
        return SessionStatus(
            name=self.name,
            instance_id=self._spec.instance_id,
            hosts=self._hosts,
            speaker=self._speaker,
            visible=compiled.visible if compiled else (),
            overflowed=compiled.overflowed if compiled else (),
            task_id=state.task_id,
            sequence_id=state.sequence_id,
            last_plan=last.plan_summary if last else None,
            last_action=last.action if last else None,
            last_error=last.error if last else None,
            pending=self._pending(),
            token_expiry=self._token_expiry(),
        )

    def _inputs(self) -> Inputs:
        return Inputs(self._hosts, self._speaker, self._spec.fingerprint)

    def _known_tokens(self, state: SessionState | None = None) -> dict[str, str]:
        """fingerprint -> token, for the tokens the spec resolves now, or, when minted, those
        the recipes in ``state`` make again (none if it cannot)."""
        try:
            if self._tokens() is None:
                tokens: Iterable[str] = self._spec.tokens()
            else:
                records = () if state is None else (state.tokens, state.intent, state.orphan)
                tokens = [
                    token
                    for record in records
                    for token in self._recipe_pair(
                        record.tokens if isinstance(record, Intent) else record
                    )
                    or ()
                ]
        except LayoutsyncError:
            return {}
        fingerprint = self._store.fingerprint
        return {fingerprint(token): token for token in tokens}

    def _with_tokens(self, state: SessionState) -> SessionState:
        """``state`` as loaded, with the fingerprinted rtcTokens put back where known."""
        bodies = (state.applied_body, state.intent, state.orphan)
        if not any(
            has_fingerprints(body.body if isinstance(body, Intent) else body) for body in bodies
        ):
            return state
        known = self._known_tokens(state)

        def intent(value: Intent | None) -> Intent | None:
            if value is None or value.body is None:
                return value
            return dataclasses.replace(value, body=restore_tokens(value.body, known))

        return dataclasses.replace(
            state,
            applied_body=restore_tokens(state.applied_body, known),
            intent=intent(state.intent),
            orphan=intent(state.orphan),
        )

    def _fast_result(self) -> ReconcileResult | None:
        fast = self._fast
        if fast is not None and fast[0] == (self._hosts, self._speaker, self._spec.fingerprint):
            if fast[1].requeue_after is not None:
                return self._still_fast(fast[1])  # a token renewal may be due
            return fast[1]
        return None

    def _pending(self) -> bool:
        return self._fast_result() is None or self._state.intent is not None

    # --- planning ------------------------------------------------------------------------------

    def _compile(self, inputs: Inputs) -> Compiled:
        state = self._state
        choice = self._token_choice = self._choose_tokens()
        compiled = compile_layout(
            self._spec,
            inputs.hosts,
            inputs.speaker,
            _slots_of(state.slots),
            tokens=choice.pair if choice is not None else None,
        )
        self._compiled = compiled
        if (
            compiled.body is not None
            and compiled.body_hash == state.applied_hash
            and compiled.body is not state.applied_body
        ):
            # The same config (equal canonical hashes) as the applied one, e.g. loaded from the
            # store or compiled again after a join and a leave: keep one body, not two.
            self._state = dataclasses.replace(state, applied_body=compiled.body)
        return compiled

    def _live(self) -> Live:
        state = self._state
        intent = state.intent
        uncertain = intent is not None and intent.call == "update"
        return Live(
            task_id=state.task_id,
            body=intent.body if uncertain and intent else state.applied_body,
            body_hash=intent.body_hash if uncertain and intent else state.applied_hash,
            sequence_id=state.sequence_id,
            uncertain=uncertain,
            instance_id=state.instance_id if state.task_id else None,
        )

    def _plan_for(self, compiled: Compiled) -> Plan:
        spec = self._spec
        plan = make_plan(
            compiled.body,
            compiled.body_hash,
            self._live(),
            instance_id=spec.instance_id,
            on_empty="delete" if spec.on_empty == "delete" else "idle",
        )
        return self._token_notes(plan)

    def _plan_now(self) -> Plan:
        """``plan()``: the plan a reconcile would start from; no request, no write."""
        fast = self._fast_result()
        if fast is not None and fast.plan is not None:
            return fast.plan
        compiled = self._compile(self._inputs())
        plan = self._plan_for(compiled)
        state = self._state
        notes = []
        if state.intent is not None and state.intent.call != "update":
            notes.append(
                f"a {state.intent.call} whose outcome was not recorded (crash or lost answer) "
                "is resumed first"
            )
        if state.task_id and state.idle_since is not None and compiled.body is not None:
            notes.append("hosts are back after an idle spell: the task is Queried first")
        if notes:
            plan = dataclasses.replace(plan, reasons=(*notes, *plan.reasons))
        return plan

    # --- state rows ----------------------------------------------------------------------------

    def _save(self, **changes: Any) -> Steps[None]:
        snapshot = self._snapshot
        state = dataclasses.replace(
            self._state,
            hosts=snapshot.hosts,
            speaker=snapshot.speaker,
            updated_at=self._clock(),
            **changes,
        )
        yield Save(state)
        self._state = state

    def _forget_task(self) -> Steps[None]:
        yield from self._save(
            task_id=None,
            builder_token=None,
            token_acquired_at=None,
            sequence_id=None,
            applied_body=None,
            applied_hash=None,
            applied_inputs=None,
            intent=None,
            idle_since=None,
            tokens=None,
        )

    # --- reconcile -----------------------------------------------------------------------------

    def _reconcile(self) -> Steps[ReconcileResult]:
        inputs = self._snapshot = self._inputs()
        self._fast = None
        request_ids: list[str] = []
        self._request_ids = request_ids
        try:
            return (yield from self._reconcile_once(inputs, request_ids))
        finally:
            self._request_ids = None

    def _reconcile_once(self, inputs: Inputs, request_ids: list[str]) -> Steps[ReconcileResult]:
        calls: list[str] = []
        plan: Plan | None = None
        log = self._log.bind(taskId=self._state.task_id, sequenceId=self._state.sequence_id)
        try:
            yield from self._resume(calls)
            compiled = self._compile(inputs)
            state = self._state
            notes: list[str] = []
            if state.task_id and state.idle_since is not None and compiled.body is not None:
                # Hosts are back after an idle spell: the task may have idled out since.
                task = yield from self._query_task(calls, expect_gone=self._idled_out())
                if task is None and self._state.task_id is None:
                    notes.append(f"task {state.task_id} ended while no host was visible")
            for _ in range(_MAX_ROUNDS):
                plan = self._plan_for(compiled)
                if notes:
                    plan = dataclasses.replace(plan, reasons=(*notes, *plan.reasons))
                note = yield from self._execute(plan, calls)
                if note is None:
                    break
                notes.append(note)
            yield from self._settle_desired(compiled)
        except _Pending as pending:
            result = self._result(plan, calls, requeue_after=REQUEUE_AFTER)
            log.info("reconcile.pending", reason=str(pending), calls=calls)
            return result
        except LayoutsyncError as error:
            requeue = REQUEUE_AFTER if _verdict(error) == "unknown" else None
            result = self._result(plan, calls, error=error, requeue_after=requeue)
            log.warning(
                "reconcile.failed",
                action=result.action,
                calls=calls,
                error=type(error).__name__,
                detail=str(error),
                request_id=getattr(error, "request_id", None),
                request_ids=request_ids,
            )
            return result
        result = self._token_wait(self._result(plan, calls))
        if self._state.intent is None:
            self._fast = (inputs, self._token_wait(self._noop_result()))
        (log.info if calls else log.debug)(
            "reconcile.done",
            action=result.action,
            calls=calls,
            taskId=result.task_id,
            sequenceId=result.sequence_id,
            summary=self._last.plan_summary if self._last else None,
            request_ids=request_ids,
        )
        return result

    def _result(
        self,
        plan: Plan | None,
        calls: list[str],
        *,
        error: LayoutsyncError | None = None,
        requeue_after: float | None = None,
    ) -> ReconcileResult:
        if plan is not None and plan.body is not None:
            # Sent, or failed to be: either way the body lives on in ``compiled`` and the state.
            plan = dataclasses.replace(plan, body=None)
        result = ReconcileResult(
            action=plan.action if plan else "noop",
            plan=plan,
            task_id=self._state.task_id,
            sequence_id=self._state.sequence_id,
            calls=tuple(calls),
            error=error,
            requeue_after=requeue_after,
        )
        self._last = _Outcome(
            result.action,
            plan.summary() if plan else None,
            str(error) if error is not None else None,
        )
        return result

    def _noop_result(self) -> ReconcileResult:
        state = self._state
        plan = Plan(
            "noop",
            ("hosts, speaker and spec are those of the last reconcile",),
            instance_id=self._spec.instance_id,
            task_id=state.task_id,
        )
        return ReconcileResult("noop", plan, state.task_id, state.sequence_id)

    def _execute(self, plan: Plan, calls: list[str]) -> Steps[str | None]:
        """Carry out ``plan``; return why to plan again (the world turned out different)."""
        action = plan.action
        if action == "noop":
            return None
        if action == "update":
            return (yield from self._update(plan, calls))
        if action == "delete":
            yield from self._delete(calls)
            return None
        if action == "replace":
            yield from self._delete(calls)
        return (yield from self._create(plan, calls))

    def _settle_desired(self, compiled: Compiled) -> Steps[None]:
        """Record desired hosts and the idle clock when nothing else wrote them."""
        state = self._state
        idle_since = state.idle_since
        if state.task_id and compiled.body is None:
            idle_since = idle_since if idle_since is not None else self._clock()
        elif compiled.body is not None:
            idle_since = None
        snapshot = self._snapshot
        if (state.hosts, state.speaker, state.idle_since) != (
            snapshot.hosts,
            snapshot.speaker,
            idle_since,
        ):
            yield from self._save(idle_since=idle_since)

    def _idled_out(self) -> bool:
        since = self._state.idle_since
        return since is not None and self._clock() - since > self._spec.idle_timeout

    # --- minted tokens (``layoutsync.tokens``) ---------------------------------------------------

    def _tokens(self) -> TaskTokenProvider | None:
        """The token provider for the current spec (None: the spec gives its tokens)."""
        settings = self._spec.token_settings
        if settings is None:
            return None
        provider = self._token_provider
        if provider is None or provider.settings != settings:
            minter = self._minter
            if minter is None or minter.settings != settings:
                app_id = getattr(self._client, "app_id", None)
                minter = self._minter = TokenMinter(
                    settings, app_id=app_id if isinstance(app_id, str) else None
                )
            provider = self._token_provider = TaskTokenProvider(minter)
        return provider

    def _choose_tokens(self) -> TokenChoice | None:
        provider = self._tokens()
        if provider is None:
            return None
        state = self._state
        choice = provider.choose(
            self._spec, state.tokens, has_task=state.task_id is not None, now=self._clock()
        )
        if choice.warning is not None:
            self._log.warning("tokens.output_expiring", detail=choice.warning)
        return choice

    def _recipe_pair(self, record: Any) -> tuple[str, str] | None:
        """The (input, output) tokens that stored recipes make (None: not minted, or none)."""
        provider = self._tokens()
        recipes = TaskTokens.from_json(record) if provider is not None else None
        if provider is None or recipes is None:
            return None
        return provider.minter.pair(self._spec, recipes)

    def _token_expiry(self) -> dict[str, int] | None:
        recipes = TaskTokens.from_json(self._state.tokens) if self._state.task_id else None
        if self._tokens() is None or recipes is None:
            return None
        return {"input": recipes.input.expires_at, "output": recipes.output.expires_at}

    def _chosen_tokens(self) -> Any:
        choice = self._token_choice
        return None if choice is None else choice.tokens.to_json()

    def _creation_body(self, plan: Plan, now: float) -> tuple[Any, str | None, Any]:
        """The Create's body, hash and token recipes: tokens are minted when a task is made."""
        provider = self._tokens()
        if provider is None:
            return plan.body, plan.body_hash, None
        made = provider.for_create(self._spec, self._token_choice, now)
        if made is None:
            return plan.body, plan.body_hash, self._chosen_tokens()
        recipes, (input_token, output_token) = made
        assert plan.body is not None
        body = with_tokens(plan.body, input_token, output_token)
        return body, canonical_hash(body), recipes.to_json()

    def _token_notes(self, plan: Plan) -> Plan:
        """Renewal notes, and when each token of the live task expires, as plan reasons."""
        choice = self._token_choice
        if choice is None:
            return plan
        notes = list(choice.notes)
        live = TaskTokenProvider.live_expiry(self._state.tokens) if self._state.task_id else None
        if not notes and live is None:
            return plan
        reasons = plan.reasons
        if plan.action == "update" and all(c.path[-1:] == ("rtcToken",) for c in plan.changes):
            reasons = ()  # a renewal alone: its note says why, not "hosts or regions changed"
        return dataclasses.replace(
            plan, reasons=(*notes, *reasons, *((live,) if live is not None else ()))
        )

    def _token_due(self) -> float | None:
        provider = self._tokens()
        if provider is None or self._state.task_id is None:
            return None
        return provider.due(self._state.tokens, self._clock())

    def _token_wait(self, result: ReconcileResult) -> ReconcileResult:
        """``result`` asking for a reconcile when the task's tokens next need one."""
        if result.error is not None or result.requeue_after is not None:
            return result  # errors and unknown outcomes have their own requeue
        due = self._token_due_at = self._token_due()
        if due is None:
            return result
        return dataclasses.replace(result, requeue_after=max(0.0, due - self._clock()))

    def _still_fast(self, result: ReconcileResult) -> ReconcileResult | None:
        """The cached noop, unless a token renewal (or warning) has come due since."""
        due = self._token_due_at
        now = self._clock()
        if due is None or due <= now:
            return None
        return dataclasses.replace(result, requeue_after=due - now)

    # --- resuming after a crash ----------------------------------------------------------------

    def _token_fresh(self) -> bool:
        state = self._state
        acquired = state.token_acquired_at
        return (
            state.builder_token is not None
            and acquired is not None
            and self._clock() - acquired < TOKEN_MAX_AGE
        )

    def _resume(self, calls: list[str]) -> Steps[None]:
        state = self._state
        intent = state.intent
        if intent is None or intent.call == "update":
            return  # an unsettled Update is re-sent by the plan (Live.uncertain)
        self._log.info("reconcile.resume", call=intent.call, taskId=intent.task_id)
        if intent.call == "acquire":
            yield from self._save(intent=None)
        elif intent.call == "create":
            body = self._sendable(intent) if self._token_fresh() else None
            if body is not None:
                yield from self._send_create(calls, body)
            else:
                orphan = dataclasses.replace(
                    intent, token=state.builder_token, token_acquired_at=state.token_acquired_at
                )
                yield from self._save(
                    intent=None, orphan=orphan, builder_token=None, token_acquired_at=None
                )
        elif intent.call == "delete" and state.task_id:
            yield from self._delete(calls)
        else:
            yield from self._save(intent=None)

    def _sendable(self, intent: Intent) -> Mapping[str, Any] | None:
        """The body to re-send a lost Create with: its own, or, when a token of it is a
        fingerprint (the token changed since), one compiled again from its inputs with the
        tokens the spec resolves now. None: nothing to send (no visible host any more)."""
        if not has_fingerprints(intent.body):
            return intent.body
        inputs = intent.inputs
        if inputs is None:
            return None
        compiled = compile_layout(
            self._spec,
            inputs.hosts,
            inputs.speaker,
            _slots_of(intent.slots),
            tokens=self._recipe_pair(intent.tokens),  # minted: the intent's own recipes
        )
        return compiled.body

    # --- the calls -----------------------------------------------------------------------------

    def _create(self, plan: Plan, calls: list[str]) -> Steps[str | None]:
        spec = self._spec
        yield from self._save(intent=Intent("acquire", at=self._clock()))
        calls.append("acquire")
        try:
            token: BuilderToken = yield Send("acquire", (spec.instance_id,))
        except LayoutsyncError:
            yield from self._save(intent=None)
            raise
        now = self._clock()
        compiled = self._compiled
        body, body_hash, minted = self._creation_body(plan, now)
        yield from self._save(
            instance_id=spec.instance_id,
            builder_token=token.token,
            token_acquired_at=now,
            sequence_id=None,
            intent=Intent(
                "create",
                at=now,
                body=body,
                body_hash=body_hash,
                inputs=self._snapshot,
                slots=_slots_json(compiled.slots) if compiled else None,
                tokens=minted,
            ),
        )
        return (yield from self._send_create(calls))

    def _send_create(
        self, calls: list[str], body: Mapping[str, Any] | None = None
    ) -> Steps[str | None]:
        """Send (or re-send) the saved Create intent with the saved token, and settle it.

        ``body`` (a resumed Create compiled again, see ``_sendable``) is sent in place of
        the intent's; the intent's own body is still what is recorded as applied, so a
        fingerprinted token reads as changed and the next plan updates it, whichever of
        the two Creates made the task.
        """
        state = self._state
        intent = state.intent
        assert intent is not None and intent.body is not None
        body = intent.body if body is None else body
        calls.append("create")
        try:
            result = yield Send("create", (state.builder_token, body))
            for number, delay in enumerate(POLL_DELAYS, 1):
                if not isinstance(result, Accepted) or result.task_id is not None:
                    break
                # 202 without a taskId: nothing to Query, so ask again with the same
                # token, which can only make or return that one task.
                yield _poll_sleep(result, delay, number, then="retry")
                calls.append("create")
                result = yield Send("create", (state.builder_token, body))
        except LayoutsyncError as error:
            verdict = _verdict(error)
            if verdict == "conflict":
                assert isinstance(error, ApiError)
                return (yield from self._conflict(error, calls))
            if verdict != "unknown":
                yield from self._save(intent=None, builder_token=None, token_acquired_at=None)
            raise
        if isinstance(result, Accepted) and result.task_id is None:
            raise _Pending("Create was accepted (202) and no task is known yet")
        task_id = result.task_id
        assert task_id is not None
        yield from self._save(
            task_id=task_id,
            sequence_id=None,
            applied_body=intent.body,
            applied_hash=intent.body_hash,
            applied_inputs=intent.inputs,
            slots=intent.slots,
            intent=None,
            orphan=None,
            idle_since=None,
            tokens=intent.tokens,
        )
        self._log.debug("transcoder.created", taskId=task_id, request_id=result.request_id)
        if isinstance(result, Task) and result.ended:
            yield from self._forget_task()
            return f"task {task_id} had already ended when Create answered"
        if isinstance(result, Accepted):
            task = yield from self._query_task(calls, expect_gone=False, poll=True, after=result)
            if task is None and self._state.task_id is None:
                return f"task {task_id} ended right after Create answered 202"
            if task is None:
                raise _Pending(f"Create of task {task_id} was accepted (202), not yet started")
        return None

    def _conflict(self, error: ApiError, calls: list[str]) -> Steps[str | None]:
        """409 on Create: adopt the orphan's task if it is the one, else refuse clearly."""
        yield from self._save(intent=None, builder_token=None, token_acquired_at=None)
        adopted = yield from self._adopt_orphan(calls)
        if adopted is not None:
            return f"adopted task {adopted}: made by an earlier Create whose answer was lost"
        raise UnknownTaskConflict(
            error,
            instance_id=self._spec.instance_id,
            idle_timeout=self._spec.idle_timeout,
            owner=self._other_owner(),
            name=self.name,
        )

    def _adopt_orphan(self, calls: list[str]) -> Steps[str | None]:
        """Ask with the orphan's own token whether its lost Create made a task; adopt it.

        A Create with a token that already made a task returns that task (one token,
        one task), so this can never make a second one. Any definitive answer other
        than a live task means the orphan made none, and it is forgotten.
        """
        orphan = self._state.orphan
        if orphan is None or not orphan.token or orphan.body is None:
            return None
        calls.append("create")
        try:
            found = yield Send("create", (orphan.token, orphan.body))
        except LayoutsyncError as error:
            if _verdict(error) == "unknown":
                raise
            found = None
        if not isinstance(found, Task) or found.ended:
            yield from self._save(orphan=None)
            return None
        yield from self._save(
            task_id=found.task_id,
            builder_token=orphan.token,
            token_acquired_at=orphan.token_acquired_at,
            sequence_id=None,
            applied_body=orphan.body,
            applied_hash=orphan.body_hash,
            applied_inputs=orphan.inputs,
            slots=orphan.slots,
            intent=None,
            orphan=None,
            idle_since=None,
            tokens=orphan.tokens,
        )
        self._log.debug("transcoder.adopted", taskId=found.task_id)
        return found.task_id

    def _other_owner(self) -> str | None:
        try:
            for name in self._store.names():
                if name == self.name:
                    continue
                other = self._store.load(name)
                if other and other.instance_id == self._spec.instance_id and other.task_id:
                    return name
        except LayoutsyncError:
            return None
        return None

    def _update(self, plan: Plan, calls: list[str]) -> Steps[str | None]:
        state = self._state
        sequence = plan.next_sequence_id
        assert sequence is not None and state.task_id is not None
        assert state.sequence_id is None or sequence > state.sequence_id
        compiled = self._compiled
        intent = Intent(
            "update",
            at=self._clock(),
            task_id=state.task_id,
            sequence_id=sequence,
            body=plan.body,
            body_hash=plan.body_hash,
            inputs=self._snapshot,
            slots=_slots_json(compiled.slots) if compiled else None,
            tokens=self._chosen_tokens(),
        )
        yield from self._save(sequence_id=sequence, intent=intent)
        calls.append("update")
        try:
            result = yield Send("update", (state.task_id, state.builder_token, sequence, plan.body))
        except LayoutsyncError as error:
            verdict = _verdict(error)
            if verdict == "gone":
                task_id = state.task_id
                yield from self._forget_task()
                return f"task {task_id} is gone (404 confirmed: idleTimeout or deleted elsewhere)"
            if verdict != "unknown":
                yield from self._save(intent=None)
            raise
        if isinstance(result, Accepted):
            confirmed = yield from self._confirm_update(sequence, calls, result)
            if self._state.task_id is None:
                return f"task {state.task_id} is gone (after Update answered 202)"
            if not confirmed:
                raise _Pending(f"Update sequenceId {sequence} was accepted (202), not confirmed")
        yield from self._save(
            applied_body=plan.body,
            applied_hash=plan.body_hash,
            applied_inputs=intent.inputs,
            slots=intent.slots,
            intent=None,
            idle_since=None,
            tokens=intent.tokens,
        )
        self._log.debug(
            "transcoder.updated",
            taskId=state.task_id,
            sequenceId=sequence,
            request_id=result.request_id,
        )
        return None

    def _confirm_update(self, sequence: int, calls: list[str], accepted: Accepted) -> Steps[bool]:
        """After a 202: Query until the task reports this sequenceId applied (bounded).

        Only a positive answer is trusted (the vendor calls ``sequenceId`` reserved);
        anything else leaves the Update unconfirmed, to be re-sent with a higher one.
        """
        for number, delay in enumerate(POLL_DELAYS, 1):
            yield _poll_sleep(accepted, delay, number)
            task = yield from self._query_task(calls, expect_gone=False)
            if task is None:
                return False
            if task.sequence_id is not None and task.sequence_id >= sequence:
                return True
        return False

    def _delete(self, calls: list[str]) -> Steps[bool]:
        """Delete the task; False when the service says it was already gone (404)."""
        state = self._state
        task_id = state.task_id
        assert task_id is not None
        yield from self._save(intent=Intent("delete", at=self._clock(), task_id=task_id))
        calls.append("delete")
        try:
            # A 404 needs no confirming here: either way the task is gone, as wanted.
            result = yield Send(
                "delete", (task_id, state.builder_token), {"confirm_missing": False}
            )
        except LayoutsyncError as error:
            verdict = _verdict(error)
            if verdict != "gone":
                if verdict != "unknown":
                    yield from self._save(intent=None)
                raise
            result = None
        if isinstance(result, Accepted):
            yield from self._query_task(calls, expect_gone=True, poll=True, after=result)
            if self._state.task_id is not None:
                raise _Pending(f"Delete of task {task_id} was accepted (202), task still live")
            return True
        yield from self._forget_task()
        self._log.debug("transcoder.deleted", taskId=task_id, gone=result is None)
        return result is not None

    def _query_task(
        self,
        calls: list[str],
        *,
        expect_gone: bool,
        poll: bool = False,
        after: Accepted | None = None,
    ) -> Steps[Task | None]:
        """Query the task; forget it when it is gone (confirmed 404) or ended.

        ``expect_gone`` believes a 404 at once (after our own Delete, or an idle spell
        longer than idleTimeout); ``poll`` repeats while the answer is 202 or, after a
        Delete, while the task is still live.
        """
        state = self._state
        if state.task_id is None:
            return None
        delays = (0.0, *POLL_DELAYS) if poll else (0.0,)
        answer: Task | Accepted | None = None
        for number, delay in enumerate(delays):
            if delay:
                accepted = after or Accepted(Call.QUERY, None, state.task_id)
                yield _poll_sleep(accepted, delay, number)
            calls.append("query")
            try:
                answer = yield Send(
                    "query",
                    (state.task_id, state.builder_token),
                    {"confirm_missing": not expect_gone},
                )
            except TaskNotFound:
                yield from self._forget_task()
                return None
            if isinstance(answer, Task) and answer.ended:
                yield from self._forget_task()
                return None
            if isinstance(answer, Task) and not expect_gone:
                break
        if self._state.idle_since is not None and isinstance(answer, Task):
            yield from self._save(idle_since=None)
        return answer if isinstance(answer, Task) else None

    # --- refresh and destroy --------------------------------------------------------------------

    def _refresh(self) -> Steps[Task | None]:
        self._snapshot = Inputs(self._state.hosts, self._state.speaker, self._spec.fingerprint)
        # After an idle spell longer than idleTimeout a 404 is expected: believe it at once.
        task = yield from self._query_task([], expect_gone=self._idled_out())
        if task is None:
            self._fast = None
        return task

    def _destroy(self) -> Steps[ReconcileResult]:
        self._snapshot = Inputs(self._state.hosts, self._state.speaker, self._spec.fingerprint)
        self._fast = None
        calls: list[str] = []
        plan = Plan(
            "delete" if self._state.task_id or self._state.intent else "noop",
            ("destroy: Delete the task and forget the session",),
            instance_id=self._spec.instance_id,
            task_id=self._state.task_id,
        )
        try:
            yield from self._resume(calls)
            if self._state.task_id is None:
                yield from self._adopt_orphan(calls)
            if self._state.task_id is not None:
                task_id = self._state.task_id
                plan = dataclasses.replace(plan, action="delete", task_id=task_id)
                if not (yield from self._delete(calls)):
                    gone = f"task {task_id} was already gone (ended by idleTimeout or deleted)"
                    plan = dataclasses.replace(plan, action="noop", reasons=(gone,))
            yield Erase(self.name)
        except (LayoutsyncError, _Pending) as error:
            failure = error if isinstance(error, LayoutsyncError) else None
            return self._result(plan, calls, error=failure, requeue_after=REQUEUE_AFTER)
        self._state = SessionState(name=self.name, instance_id=self._spec.instance_id)
        result = self._result(plan, calls)
        self._log.info("session.destroyed", calls=calls)
        return result

    # --- what both drivers share ---------------------------------------------------------------

    def _store_effect(self, effect: Effect) -> LayoutsyncError | None:
        """Perform a ``Save`` or ``Erase`` (the store is local and blocking in both twins)."""
        try:
            if type(effect) is Save:
                self._store.save(effect.state)
            else:
                assert type(effect) is Erase
                self._store.delete(effect.name)
        except LayoutsyncError as exc:
            return exc
        return None

    def _observe(self, effect: Send, result: Any, error: LayoutsyncError | None) -> None:
        """Log one sent call (debug) and keep its request id for the reconcile's summary line."""
        state = self._state
        request_id = getattr(error if error is not None else result, "request_id", None)
        if request_id and self._request_ids is not None:
            self._request_ids.append(request_id)
        self._log.debug(
            "api.call",
            call=effect.call,
            taskId=state.task_id,
            sequenceId=state.sequence_id,
            request_id=request_id,
            outcome=type(error).__name__ if error is not None else type(result).__name__,
        )


# --- the twins ----------------------------------------------------------------------------------


class Session(_SessionCore):
    """Keep one transcoder equal to ``spec`` and the hosts present (blocking I/O).

    ``client`` defaults to ``Client()`` (configured from the environment), made
    on first use so ``plan()`` never needs credentials. ``clock`` is wall time
    (token ages must survive restarts), ``sleep`` waits between 202 polls, and
    ``on_wait`` is told of each such wait as it begins (``WaitEvent``; give the
    client its own ``on_wait`` for its back-offs). The session prints nothing.
    ``durable_inputs`` (default True): a host/speaker change that returned is in
    ``store`` (see "Durable desired state" above).
    ``tokens`` mints the rtcTokens of a spec with ``tokens`` (default: a
    ``TokenMinter`` for the spec, with the client's App ID, see ``layoutsync.tokens``).
    """

    def __init__(
        self,
        spec: LayoutSpec,
        *,
        client: Client | None = None,
        store: StateStore,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,
        durable_inputs: bool = True,
        tokens: TokenMinter | None = None,
        on_wait: WaitHook | None = None,
    ) -> None:
        super().__init__(
            spec,
            client=client,
            store=store,
            name=name,
            clock=clock,
            durable_inputs=durable_inputs,
            tokens=tokens,
        )
        self._sleep = sleep
        self._on_wait = on_wait
        self._lock = threading.Lock()

    def plan(self) -> Plan:
        """The plan ``reconcile()`` would start from. Sends nothing, writes nothing."""
        with self._lock:
            return self._plan_now()

    def reconcile(self) -> ReconcileResult:
        """Send what makes the live task equal the desired state; never raises
        ``LayoutsyncError`` (see ``ReconcileResult.error``; ``raise_for_error()``)."""
        with self._lock:
            fast = self._fast_result()
            if fast is not None and self._state.intent is None:
                return fast
            return self._drive(self._reconcile())

    def refresh(self) -> Task | None:
        """Query the task: the task, or None when there is none (a gone task is forgotten)."""
        with self._lock:
            return self._drive(self._refresh())

    def destroy(self) -> ReconcileResult:
        """Delete the task (resolving any unsettled call first) and forget the session."""
        with self._lock:
            return self._drive(self._destroy())

    def _client_or_default(self) -> Any:
        if self._client is None:
            self._client = Client()
        return self._client

    def _drive(self, steps: Steps[T]) -> T:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = steps.throw(error) if error is not None else steps.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value = error = None
            if type(effect) is Send:
                try:
                    method = getattr(self._client_or_default(), effect.call)
                    value = method(*effect.args, **effect.kwargs)
                except LayoutsyncError as exc:
                    error = exc
                self._observe(effect, value, error)
            elif type(effect) is Sleep:
                if effect.wait is not None and self._on_wait is not None:
                    self._on_wait(effect.wait)
                self._sleep(effect.seconds)
            else:
                error = self._store_effect(effect)


class AsyncSession(_SessionCore):
    """``Session`` over ``AsyncClient``: ``plan``/``reconcile``/``refresh``/``destroy`` are
    awaited; ``host_*``/``set_*`` stay plain methods, which write a change to the store
    before returning as ``Session``'s do. The store is called inline (SQLite on a local
    disk answers in microseconds to a few ms), or awaited where it has awaitable writes
    (``asave``/``adelete``: ``RedisStore`` with an asyncio client); ``durable_inputs=False``
    leaves the writing of desired inputs to the caller (the daemon's group commit)."""

    def __init__(
        self,
        spec: LayoutSpec,
        *,
        client: AsyncClient | None = None,
        store: StateStore,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
        durable_inputs: bool = True,
        tokens: TokenMinter | None = None,
        on_wait: WaitHook | None = None,
    ) -> None:
        super().__init__(
            spec,
            client=client,
            store=store,
            name=name,
            clock=clock,
            durable_inputs=durable_inputs,
            tokens=tokens,
        )
        self._sleep = sleep
        self._on_wait = on_wait
        self._lock = _IdleFreeLock()
        #: a store with awaitable writes (``RedisStore`` with an asyncio client) is awaited,
        #: so the loop never blocks on a network round trip; others are called inline
        self._awaited_store = getattr(store, "aredis", None) is not None and callable(
            getattr(store, "asave", None)
        )

    async def plan(self) -> Plan:
        async with self._lock:
            return self._plan_now()

    async def reconcile(self) -> ReconcileResult:
        fast = self._fast_result()
        if fast is not None and self._state.intent is None and not self._lock.locked():
            return fast
        async with self._lock:
            fast = self._fast_result()
            if fast is not None and self._state.intent is None:
                return fast
            return await self._drive(self._reconcile())

    async def refresh(self) -> Task | None:
        async with self._lock:
            return await self._drive(self._refresh())

    async def destroy(self) -> ReconcileResult:
        async with self._lock:
            return await self._drive(self._destroy())

    def _client_or_default(self) -> Any:
        if self._client is None:
            self._client = AsyncClient()
        return self._client

    async def _drive(self, steps: Steps[T]) -> T:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = steps.throw(error) if error is not None else steps.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value = error = None
            if type(effect) is Send:
                try:
                    method = getattr(self._client_or_default(), effect.call)
                    value = await method(*effect.args, **effect.kwargs)
                except LayoutsyncError as exc:
                    error = exc
                self._observe(effect, value, error)
            elif type(effect) is Sleep:
                if effect.wait is not None and self._on_wait is not None:
                    self._on_wait(effect.wait)
                await self._sleep(effect.seconds)
            elif self._awaited_store:
                error = await self._astore_effect(effect)
            else:
                error = self._store_effect(effect)

    async def _astore_effect(self, effect: Effect) -> LayoutsyncError | None:
        """``_store_effect`` through the store's awaitable twins (``asave``/``adelete``)."""
        store: Any = self._store
        try:
            if type(effect) is Save:
                await store.asave(effect.state)
            else:
                assert type(effect) is Erase
                await store.adelete(effect.name)
        except LayoutsyncError as exc:
            return exc
        return None
