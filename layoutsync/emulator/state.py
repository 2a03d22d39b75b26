"""The emulated Cloud Transcoder service as plain Python: no Starlette, no I/O.

``Emulator`` owns the builder tokens, the tasks, host presence, the virtual
clock, the per-app rate limiter, the fault plan and the logs. Each call of
the service is one method that takes already-parsed inputs and returns a
``Reply`` (status + JSON body), so the rules can be unit-tested without HTTP
and the web layer (``app.py``) only translates.

The decisions where the vendor page is silent are listed in the package docstring
(``layoutsync.emulator``); this module implements them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from heapq import heappop, heappush
from typing import Any

import orjson

from ..redact import MASK, mask_query, redact
from ..validate import check_request
from .faults import DEFAULT_DELAY, FaultAction, FaultPlan, FaultRule, RandomFaults
from .rules import (
    DEFAULT_IDLE_TIMEOUT,
    handled_hosts,
    input_channel,
    instance_id_error,
    update_violations,
)
from .tokens import check_body_tokens, held_tokens, is_certificate

__all__ = [
    "BUILDER_TOKEN_TTL",
    "DEFAULT_APP_ID",
    "DEFAULT_CUSTOMER_KEY",
    "DEFAULT_CUSTOMER_SECRET",
    "UPDATE_MASK",
    "Emulator",
    "EmulatorConfig",
    "ManualClock",
    "Reply",
    "config_digest",
]

DEFAULT_APP_ID = "emulator-app"
DEFAULT_CUSTOMER_KEY = "emulator-key"
DEFAULT_CUSTOMER_SECRET = "emulator-secret"  # a public default of a local fake
BUILDER_TOKEN_TTL = 300.0
UPDATE_MASK = "services.cloudTranscoder.config"
RETRIED_CREATE_STATUSES = (200, 201, 409)


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the emulator behaves. ``qps=None`` turns rate limiting off (the in-process default)."""

    app_ids: tuple[str, ...] = (DEFAULT_APP_ID,)
    disabled_app_ids: tuple[str, ...] = ()
    customer_key: str = DEFAULT_CUSTOMER_KEY
    customer_secret: str = field(default=DEFAULT_CUSTOMER_SECRET, repr=False)
    qps: float | None = None
    retried_create: int = 200
    echo_config: bool = False
    builder_token_ttl: float = BUILDER_TOKEN_TTL
    fault_delay: float = DEFAULT_DELAY
    faults: tuple[FaultRule, ...] = ()
    random_faults: RandomFaults | None = None
    request_log_size: int = 10_000
    event_log_size: int = 10_000
    seed: int | None = None  #: makes builder tokens and task ids reproducible
    #: check every rtcToken of Create/Update against this App Certificate (``tokens``)
    app_certificate: str | None = field(default=None, repr=False)
    strict_tokens: bool = False  #: a bad rtcToken is 400 naming the field (else recorded)

    def __post_init__(self) -> None:
        if self.retried_create not in RETRIED_CREATE_STATUSES:
            raise ValueError(
                f"retried_create must be one of 200, 201, 409, got {self.retried_create!r}"
            )
        if self.qps is not None and not self.qps > 0:
            raise ValueError(f"qps must be > 0 or None (no limit), got {self.qps!r}")
        if not self.app_ids and not self.disabled_app_ids:
            raise ValueError("configure at least one app id")
        if self.builder_token_ttl <= 0 or self.fault_delay < 0:
            raise ValueError("builder_token_ttl must be > 0 and fault_delay >= 0")
        if self.request_log_size < 1 or self.event_log_size < 1:
            raise ValueError("log sizes must be >= 1")
        if self.app_certificate is not None and not is_certificate(self.app_certificate):
            raise ValueError("app_certificate must be 32 hexadecimal digits")
        if self.strict_tokens and self.app_certificate is None:
            raise ValueError("strict_tokens needs an app_certificate to check tokens against")


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer of the service. ``note`` says what happened, for the request log."""

    status: int
    body: Any
    note: str = ""
    headers: tuple[tuple[str, str], ...] = ()


class ManualClock:
    """A clock that moves only when told: inject it for tests that must not wait."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def _error(status: int, message: str, note: str = "", **extra: Any) -> Reply:
    return Reply(status, {"message": message, **extra}, note)


# The task lifecycle as data: what a task shows in each status, and how calls move it.
_SHOWN: dict[str, tuple[str, str]] = {
    "STARTED": ("serviceReady", ""),
    "IN_PROGRESS": ("serviceInProgress", "OnSlaveServiceQueryUpdated"),
    "STOPPED": ("serviceCompleted", "OnSlaveServiceStopped"),
}
_NEXT_STATUS: dict[tuple[str, str], str] = {
    ("STARTED", "query"): "IN_PROGRESS",
    ("STARTED", "update"): "IN_PROGRESS",
    ("STARTED", "delete"): "STOPPED",
    ("IN_PROGRESS", "delete"): "STOPPED",
}


@dataclass(slots=True, eq=False)
class _Token:
    name: str = field(repr=False)
    app_id: str
    instance_id: str
    created_at: float
    task_id: str | None = None


@dataclass(slots=True, eq=False)
class _Task:
    task_id: str
    app_id: str
    instance_id: str
    token: str = field(repr=False)
    created_at: float
    #: The last applied ``transcoder``, as compact JSON: ten thousand live tasks hold a
    #: fifth of the memory that parsed dicts would (see ``config``).
    config_json: bytes = field(repr=False)
    idle_timeout: int
    channel: str | None
    uids: frozenset[int]
    whole_channel: bool
    watch_from: float
    status: str = "STARTED"
    last_seq: int = -1
    updates: int = 0
    stale: int = 0
    last_update_at: float | None = None
    deadline: float | None = None
    version: int = 0
    #: with an App Certificate: when each token of the applied config expires, by role
    token_expiry: dict[str, float] = field(default_factory=dict)
    token_problems: list[dict[str, Any]] = field(default_factory=list)
    tokens_expired: set[str] = field(default_factory=set)  #: roles already reported expired

    @property
    def config(self) -> dict[str, Any]:
        """A fresh parsed copy of the last applied ``transcoder``."""
        parsed: dict[str, Any] = orjson.loads(self.config_json)
        return parsed


class Emulator:
    """The service's state and rules. Thread-safe; every method is fast and never blocks.

    ``clock`` is the base time source (``time.time`` by default, a ``ManualClock``
    in tests); emulator time is that plus an offset moved by ``advance_clock`` /
    ``set_clock``. ``sleep`` is awaited by the "delay" fault.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.sleep = sleep
        self._clock = clock
        self._lock = threading.RLock()
        self.reset()

    # --- lifecycle of the emulator itself ------------------------------------------------------

    def reset(self) -> None:
        """Forget every token, task, presence, fault, log entry and clock offset."""
        with self._lock:
            config = self.config
            self._offset = 0.0
            self._rng: random.Random = (
                random.Random(config.seed) if config.seed is not None else random.SystemRandom()
            )
            self._tokens: dict[str, _Token] = {}
            self._unbound: deque[_Token] = deque()
            self._tasks: dict[str, _Task] = {}
            self._live_instances: dict[tuple[str, str], str] = {}
            self._presence: dict[str, dict[int, float | None]] = {}
            self._by_channel: dict[str, set[str]] = {}
            self._deadlines: list[tuple[float, int, str, int]] = []
            self._heap_seq = 0
            self._buckets: dict[str, list[float]] = {}
            self._requests: deque[dict[str, Any]] = deque(maxlen=config.request_log_size)
            self._events: deque[dict[str, Any]] = deque(maxlen=config.event_log_size)
            self._calls: Counter[tuple[str, int]] = Counter()
            self.faults = FaultPlan()
            for rule in config.faults:
                self.faults.add(rule)
            self.faults.set_random(config.random_faults)
            self._basic = _basic_header(config)

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change settings at run time (e.g. ``retried_create=409``, ``qps=5``, ``echo_config``)."""
        with self._lock:
            self.config = replace(self.config, **changes)
            self._basic = _basic_header(self.config)
            if "qps" in changes:
                self._buckets.clear()
            return self.config

    # --- clock -----------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock() + self._offset

    def advance_clock(self, seconds: float) -> float:
        """Move emulator time forward (never back) and destroy tasks that became idle."""
        if seconds < 0:
            raise ValueError(f"the clock cannot go backwards (advance {seconds})")
        with self._lock:
            self._offset += seconds
            self.expire_idle()
            return self.now()

    def set_clock(self, timestamp: float) -> float:
        """Set emulator time to ``timestamp`` (Unix seconds, not before now)."""
        with self._lock:
            return self.advance_clock(timestamp - self.now())

    # --- presence and idleTimeout ------------------------------------------------------------

    def set_present(self, channel: str, uid: int, present: bool = True) -> None:
        """Report host ``uid`` in ``channel`` as present or absent (a uid never reported is
        present). Absence is timed from this call; a repeated report changes nothing."""
        with self._lock:
            hosts = self._presence.setdefault(channel, {})
            if present:
                if hosts.get(uid, 0.0) is None:
                    return
                hosts[uid] = None
            else:
                if hosts.get(uid) is not None:
                    return
                hosts[uid] = self.now()
            self._event("host_present" if present else "host_absent", channel=channel, uid=uid)
            for task_id in tuple(self._by_channel.get(channel, ())):
                self._schedule_idle(self._tasks[task_id])
            self.expire_idle()

    def presence(self, channel: str) -> dict[int, float | None]:
        """Every reported uid of ``channel``: None when present, else when it left."""
        with self._lock:
            return dict(self._presence.get(channel, {}))

    def _idle_deadline(self, task: _Task) -> float | None:
        hosts = self._presence.get(task.channel, {}) if task.channel is not None else {}
        uids: Iterable[int] = task.uids
        if task.whole_channel:
            if not hosts:
                return None  # nobody ever reported in the channel: assume someone is there
            uids = task.uids | hosts.keys()
        since = task.watch_from
        for uid in uids:
            left = hosts.get(uid)
            if left is None:
                return None
            since = max(since, left)
        return since + task.idle_timeout

    def _schedule_idle(self, task: _Task) -> None:
        task.version += 1
        task.deadline = self._idle_deadline(task)
        if task.deadline is not None:
            self._heap_seq += 1
            heappush(self._deadlines, (task.deadline, self._heap_seq, task.task_id, task.version))

    def expire_idle(self) -> None:
        """Destroy every task idle for longer than its idleTimeout (checked lazily)."""
        with self._lock:
            now = self.now()
            heap = self._deadlines
            while heap and heap[0][0] < now:
                _, _, task_id, version = heappop(heap)
                task = self._tasks.get(task_id)
                if task is not None and task.version == version:
                    self._drop_task(task, "idle_destroyed")
            if self.config.app_certificate is not None:
                self._expire_tokens(now)

    # --- authentication, rate limit, faults -----------------------------------------------------

    def authorize(self, app_id: str, authorization: str | None) -> Reply | None:
        """401 for missing/wrong Basic credentials, 403 for a disabled or unknown app id."""
        if authorization is None or not self._credentials_match(authorization):
            return _error(401, "Authorization is missing or invalid (HTTP Basic customer key)")
        config = self.config
        if app_id not in config.app_ids:
            if app_id in config.disabled_app_ids:
                return _error(403, f"app id {app_id!r} does not have cloud transcoding enabled")
            return _error(403, f"app id {app_id!r} is unknown or not enabled for this service")
        return None

    def _credentials_match(self, header: str) -> bool:
        if hmac.compare_digest(header.encode(), self._basic.encode()):
            return True
        scheme, _, encoded = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        key, sep, secret = decoded.partition(":")
        config = self.config
        key_ok = hmac.compare_digest(key.encode(), config.customer_key.encode())
        secret_ok = hmac.compare_digest(secret.encode(), config.customer_secret.encode())
        return bool(sep) and key_ok and secret_ok

    def admit(self, app_id: str) -> Reply | None:
        """429 when ``app_id`` is over its QPS (token bucket, burst = QPS), else None."""
        qps = self.config.qps
        if qps is None:
            return None
        with self._lock:
            now = self.now()
            burst = max(qps, 1.0)
            bucket = self._buckets.get(app_id)
            if bucket is None:
                bucket = self._buckets[app_id] = [burst, now]
            tokens = min(burst, bucket[0] + (now - bucket[1]) * qps)
            bucket[1] = now
            if tokens < 1.0:
                bucket[0] = tokens
                wait = (1.0 - tokens) / qps
                return Reply(
                    429,
                    {"message": f"too many requests: app id {app_id!r} is limited to {qps:g}/s"},
                    "rate-limited",
                    (("Retry-After", str(max(1, round(wait)))),),
                )
            bucket[0] = tokens - 1.0
            return None

    def take_fault(self, kind: str) -> FaultAction | None:
        """The fault this call of ``kind`` gets, if any (consumes it)."""
        with self._lock:
            return self.faults.take(kind)

    def add_fault(
        self, kind: str, action: str, count: int = 1, *, delay: float | None = None
    ) -> FaultRule:
        """``action`` for the next ``count`` calls of ``kind`` (see ``faults``)."""
        rule = FaultRule.make(
            kind, action, count, delay=self.config.fault_delay if delay is None else delay
        )
        self.install_fault(rule)
        return rule

    def set_random_faults(
        self,
        rate: float,
        *,
        seed: int = 0,
        actions: Iterable[str] | None = None,
        kinds: Iterable[str] = ("any",),
        delay: float | None = None,
    ) -> RandomFaults:
        extra = {} if actions is None else {"actions": tuple(actions)}
        faults = RandomFaults.make(
            rate,
            seed=seed,
            kinds=kinds,
            delay=self.config.fault_delay if delay is None else delay,
            **extra,
        )
        self.install_fault(faults)
        return faults

    def install_fault(self, fault: FaultRule | RandomFaults) -> None:
        """Schedule a parsed rule, or replace the random faults (the admin API's entry)."""
        with self._lock:
            if isinstance(fault, FaultRule):
                self.faults.add(fault)
            else:
                self.faults.set_random(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    # --- the five calls ------------------------------------------------------------------------

    def acquire(self, app_id: str, body: Any) -> Reply:
        problem = instance_id_error(body)
        if problem is not None:
            return _error(400, str(problem))
        with self._lock:
            now = self.now()
            self._purge_tokens(now)
            name = self._new_token_name()
            token = _Token(name, app_id, body["instanceId"], now)
            self._tokens[name] = token
            self._unbound.append(token)
        return Reply(
            200,
            {"tokenName": name, "createTs": int(now), "instanceId": token.instance_id},
            "acquired",
        )

    def create(self, app_id: str, builder_token: str | None, body: Any) -> Reply:
        if not builder_token:
            return _error(400, "builderToken: the query parameter is required")
        problems = check_request(body)
        if problems:
            return _error(400, "; ".join(map(str, problems)), "invalid")
        with self._lock:
            self.expire_idle()
            now = self.now()
            token = self._find_token(app_id, builder_token)
            if token is None:
                return _error(
                    400,
                    "builderToken: unknown or expired; Acquire one and Create within "
                    f"{self.config.builder_token_ttl:g} s",
                    "bad-token",
                )
            if token.task_id is not None:
                return self._retried_create(token)
            ttl = self.config.builder_token_ttl
            if now - token.created_at > ttl:
                return _error(
                    400,
                    f"builderToken: expired {now - token.created_at - ttl:.0f} s ago; "
                    f"it is valid {ttl:g} s after Acquire",
                    "bad-token",
                )
            key = (app_id, token.instance_id)
            if key in self._live_instances:
                return _error(
                    409,
                    f"instanceId {token.instance_id!r} already has a live task; Delete it first",
                    "conflict",
                )
            config = body["services"]["cloudTranscoder"]["config"]
            checked = self._check_tokens(app_id, config["transcoder"])
            if isinstance(checked, Reply):
                return checked
            task = self._new_task(token, config, now)
            self._settle_tokens(task, checked, "create")
        return Reply(200, self._task_body(task), "created")

    def _retried_create(self, token: _Token) -> Reply:
        task = self._tasks.get(token.task_id or "")
        if task is None:
            return _error(
                400,
                f"builderToken: already used by task {token.task_id}, which has ended; "
                "Acquire a new one",
                "bad-token",
            )
        status = self.config.retried_create
        self._event("retried_create", task, status=status)
        if status == 409:
            return _error(
                409,
                "this builderToken already created a task; its taskId is in the body",
                "retried-create",
                taskId=task.task_id,
            )
        return Reply(status, self._task_body(task), "retried-create")

    def query(self, app_id: str, task_id: str, builder_token: str | None) -> Reply:
        with self._lock:
            found = self._task_for_call(app_id, task_id, builder_token)
            if isinstance(found, Reply):
                return found
            self._advance_status(found, "query")
            return Reply(200, self._task_body(found))

    def update(
        self,
        app_id: str,
        task_id: str,
        builder_token: str | None,
        sequence_id: str | None,
        update_mask: str | None,
        body: Any,
    ) -> Reply:
        if update_mask != UPDATE_MASK:
            shown = "missing" if update_mask is None else repr(update_mask)
            return _error(400, f"updateMask: is {shown}; it must be {UPDATE_MASK!r}")
        sequence = _sequence_id(sequence_id)
        if isinstance(sequence, Reply):
            return sequence
        with self._lock:
            found = self._task_for_call(app_id, task_id, builder_token)
            if isinstance(found, Reply):
                return found
            task = found
            problems = check_request(body)
            if problems:
                return _error(400, "; ".join(map(str, problems)), "invalid")
            if sequence <= task.last_seq:
                task.stale += 1
                self._event("stale_update", task, sequenceId=sequence)
                return Reply(200, None, "stale")
            transcoder = body["services"]["cloudTranscoder"]["config"]["transcoder"]
            violations = update_violations(task.config, transcoder)
            if violations:
                return _error(400, "; ".join(map(str, violations)), "not-updatable")
            checked = self._check_tokens(app_id, transcoder, task.config)
            if isinstance(checked, Reply):
                return checked
            self._apply(task, transcoder, sequence)
            self._settle_tokens(task, checked, "update")
            return Reply(200, None, "applied")  # the vendor: 包体为空, an empty body

    def delete(self, app_id: str, task_id: str, builder_token: str | None) -> Reply:
        with self._lock:
            found = self._task_for_call(app_id, task_id, builder_token)
            if isinstance(found, Reply):
                return found
            self._advance_status(found, "delete")
            body = self._task_body(found)
            self._drop_task(found, "deleted")
            return Reply(200, body, "deleted")

    # --- helpers of the calls ------------------------------------------------------------------

    def _check_tokens(
        self,
        app_id: str,
        transcoder: Mapping[str, Any],
        applied: Mapping[str, Any] | None = None,
    ) -> Any:
        """With an App Certificate: every token's check, or the 400 of ``strict_tokens``.
        On Update a token the task already holds is not judged again (it is in use; its
        expiry is tracked on the clock), only new ones."""
        certificate = self.config.app_certificate
        if certificate is None:
            return None
        checks = check_body_tokens(
            transcoder,
            certificate=certificate,
            app_id=app_id,
            now=self.now(),
            held=held_tokens(applied) if applied is not None else frozenset(),
        )
        bad = [check for check in checks if check.problem is not None]
        if bad and self.config.strict_tokens:
            text = "; ".join(f"{check.pointer}: {check.problem}" for check in bad)
            return _error(400, text, "bad-rtc-token")
        return checks

    def _settle_tokens(self, task: _Task, checks: Any, call: str) -> None:
        """Record the applied tokens' expiry and problems on the task (admin view, events)."""
        if checks is None:
            return
        expiry: dict[str, float] = {}
        for check in checks:
            if check.expires_at is not None:
                expiry[check.role] = min(expiry.get(check.role, check.expires_at), check.expires_at)
            if check.problem is not None:
                self._token_problem(task, check.pointer, check.problem, call)
        # a role whose token changed (renewed) may expire again, and be reported again
        task.tokens_expired = {
            role for role in task.tokens_expired if task.token_expiry.get(role) == expiry.get(role)
        }
        task.token_expiry = expiry

    def _token_problem(self, task: _Task, pointer: str, problem: str, call: str) -> None:
        entry = {"time": self.now(), "call": call, "field": pointer, "problem": problem}
        task.token_problems.append(entry)
        del task.token_problems[:-100]  # bounded: the latest hundred
        self._event("token_problem", task, field=pointer, problem=problem, call=call)

    def _expire_tokens(self, now: float) -> None:
        """A live task whose applied token expired: recorded once per applied config."""
        for task in self._tasks.values():
            expired = [
                role
                for role, at in task.token_expiry.items()
                if now >= at and role not in task.tokens_expired
            ]
            if expired:
                task.tokens_expired.update(expired)
                for role in sorted(expired):
                    at = task.token_expiry[role]
                    self._token_problem(
                        task,
                        role,
                        f"the {role} token expired at {at:.0f} (emulator clock)",
                        "clock",
                    )

    def _new_token_name(self) -> str:
        # Standard base64 of 21..23 random bytes: "+", "/" and "=" padding appear often, so
        # clients that send the query value unencoded are exercised.
        size = self._rng.choice((21, 22, 23))
        while True:
            name = base64.b64encode(self._rng.randbytes(size)).decode("ascii")
            if name not in self._tokens:
                return name

    def _purge_tokens(self, now: float) -> None:
        ttl = self.config.builder_token_ttl
        unbound = self._unbound
        while unbound and now - unbound[0].created_at > ttl:
            token = unbound.popleft()
            if token.task_id is None:
                del self._tokens[token.name]

    def _find_token(self, app_id: str, given: str) -> _Token | None:
        token = self._tokens.get(given)
        if token is None and " " in given:
            # An unencoded "+" in a query string arrives as a space; tokens have no spaces.
            token = self._tokens.get(given.replace(" ", "+"))
        if token is None or token.app_id != app_id:
            return None
        return token

    def _task_for_call(self, app_id: str, task_id: str, builder_token: str | None) -> _Task | Reply:
        if not builder_token:
            return _error(400, "builderToken: the query parameter is required")
        self.expire_idle()
        task = self._tasks.get(task_id)
        if task is None or task.app_id != app_id:
            return _error(404, f"task {task_id!r} not found", "not-found")
        token = self._find_token(app_id, builder_token)
        if token is None or token.task_id != task.task_id:
            return _error(
                400,
                "builderToken: not the token this task was created with; every call on a task "
                "passes the same builderToken",
                "bad-token",
            )
        return task

    def _new_task(self, token: _Token, config: Mapping[str, Any], now: float) -> _Task:
        transcoder = config["transcoder"]
        uids, whole = handled_hosts(transcoder)
        task_id = uuid.UUID(int=self._rng.getrandbits(128), version=4).hex
        task = _Task(
            task_id=task_id,
            app_id=token.app_id,
            instance_id=token.instance_id,
            token=token.name,
            created_at=now,
            config_json=_compact_json(transcoder),
            idle_timeout=transcoder.get("idleTimeout", DEFAULT_IDLE_TIMEOUT),
            channel=input_channel(transcoder),
            uids=uids,
            whole_channel=whole,
            watch_from=now,
        )
        token.task_id = task_id
        self._tasks[task_id] = task
        self._live_instances[(task.app_id, task.instance_id)] = task_id
        if task.channel is not None:
            self._by_channel.setdefault(task.channel, set()).add(task_id)
        self._schedule_idle(task)
        self._event("created", task)
        return task

    def _apply(self, task: _Task, transcoder: dict[str, Any], sequence: int) -> None:
        now = self.now()
        task.config_json = _compact_json(transcoder)
        task.last_seq = sequence
        task.updates += 1
        task.last_update_at = now
        self._advance_status(task, "update")
        uids, whole = handled_hosts(transcoder)
        channel = input_channel(transcoder)
        if uids != task.uids or whole != task.whole_channel or channel != task.channel:
            if channel != task.channel:
                self._unindex(task)
                task.channel = channel
                if channel is not None:
                    self._by_channel.setdefault(channel, set()).add(task.task_id)
            task.uids, task.whole_channel, task.watch_from = uids, whole, now
            self._schedule_idle(task)
        self._event("updated", task, sequenceId=sequence)

    def _advance_status(self, task: _Task, call: str) -> None:
        task.status = _NEXT_STATUS.get((task.status, call), task.status)

    def _unindex(self, task: _Task) -> None:
        if task.channel is not None:
            members = self._by_channel.get(task.channel)
            if members is not None:
                members.discard(task.task_id)
                if not members:
                    del self._by_channel[task.channel]

    def _drop_task(self, task: _Task, event: str) -> None:
        del self._tasks[task.task_id]
        self._live_instances.pop((task.app_id, task.instance_id), None)
        self._unindex(task)
        task.version += 1
        self._event(event, task)

    def _task_body(self, task: _Task) -> dict[str, Any]:
        service_status, message = _SHOWN[task.status]
        created = int(task.created_at)
        return {
            "createTs": created,
            "eventHandlers": {},
            "execution": {"workflows": {}},
            "properties": {},
            "sequenceId": str(max(task.last_seq, 0)),
            "services": {
                "cloudTranscoder": {
                    "config": {"transcoder": task.config} if self.config.echo_config else {},
                    "createTs": created,
                    "details": {},
                    "message": message,
                    "serviceType": "cloudTranscoderV2",
                    "status": service_status,
                }
            },
            "status": task.status,
            "taskId": task.task_id,
            "variables": {},
            "workflows": {},
        }

    # --- logs and listings ---------------------------------------------------------------------

    def _event(self, event: str, task: _Task | None = None, **details: Any) -> None:
        entry: dict[str, Any] = {"time": self.now(), "event": event}
        if task is not None:
            entry["taskId"] = task.task_id
            entry["instanceId"] = task.instance_id
        entry.update(details)
        self._events.append(entry)

    def record(
        self,
        *,
        request_id: str,
        method: str,
        path: str,
        query: Mapping[str, str],
        status: int | None,
        kind: str | None,
        note: str = "",
        fault: str | None = None,
    ) -> None:
        """Append one API call to the request log (query secrets masked) and count it."""
        entry = {
            "requestId": request_id,
            "time": self.now(),
            "method": method,
            "path": path,
            "query": mask_query(query),
            "status": status,
            "kind": kind,
            "note": note,
        }
        if fault is not None:
            entry["fault"] = fault
        with self._lock:
            self._requests.append(entry)
            self._calls[(kind or "unknown", 0 if status is None else status)] += 1

    def requests(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The request log, oldest first (bounded: the oldest entries fall off)."""
        with self._lock:
            return [dict(e) for e in self._requests if kind is None or e["kind"] == kind]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._calls.clear()

    def events(self) -> list[dict[str, Any]]:
        """Task lifecycle events: created, updated, stale_update, deleted, idle_destroyed..."""
        with self._lock:
            return [dict(e) for e in self._events]

    def stats(self) -> dict[str, dict[str, int]]:
        """Calls counted by kind and status (0 = connection dropped), since the last reset."""
        with self._lock:
            counted: dict[str, dict[str, int]] = {}
            for (kind, status), count in sorted(self._calls.items()):
                counted.setdefault(kind, {})[str(status)] = count
            return counted

    def tasks(self) -> list[dict[str, Any]]:
        """Every live task with its last applied config; tokens masked."""
        with self._lock:
            self.expire_idle()
            return [self._describe(task) for task in self._tasks.values()]

    def task(self, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            self.expire_idle()
            task = self._tasks.get(task_id)
            return None if task is None else self._describe(task)

    def live_config(self, task_id: str) -> dict[str, Any] | None:
        """The applied ``transcoder`` object *with* its tokens, for in-process tests only;
        never logged or served."""
        with self._lock:
            self.expire_idle()
            task = self._tasks.get(task_id)
            return None if task is None else task.config

    def _describe(self, task: _Task) -> dict[str, Any]:
        return {
            "taskId": task.task_id,
            "appId": task.app_id,
            "instanceId": task.instance_id,
            "status": task.status,
            "sequenceId": task.last_seq if task.last_seq >= 0 else None,
            "builderToken": MASK,
            "config": {"transcoder": redact(task.config)},
            "configSha256": config_digest(task.config),
            "updateCount": task.updates,
            "staleUpdates": task.stale,
            "createdAt": task.created_at,
            "lastUpdateAt": task.last_update_at,
            "idleTimeout": task.idle_timeout,
            "channel": task.channel,
            "idleDeadline": task.deadline,
            **self._token_view(task),
        }

    def _token_view(self, task: _Task) -> dict[str, Any]:
        if self.config.app_certificate is None:
            return {}
        return {
            "tokens": {
                "checked": True,
                "expiresAt": dict(task.token_expiry),
                "expired": sorted(task.tokens_expired),
                "problems": [dict(problem) for problem in task.token_problems],
            }
        }


def config_digest(transcoder: Any) -> str:
    """SHA-256 of a ``transcoder`` as sorted JSON, tokens included: lets a test outside the
    process tell that the live config has the very tokens it expects, without seeing them."""
    return hashlib.sha256(orjson.dumps(transcoder, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _compact_json(value: Any) -> bytes:
    """``value`` as JSON in a bytes object of its own size.

    orjson hands back its growing buffer (16 KB for a 1.4 KB body); a task keeps its
    config for its whole life, so the copy pays for itself ten times over.
    """
    return bytes(memoryview(orjson.dumps(value)))


def _basic_header(config: EmulatorConfig) -> str:
    pair = f"{config.customer_key}:{config.customer_secret}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _sequence_id(text: str | None) -> int | Reply:
    if text is None:
        return _error(400, "sequenceId: the query parameter is required (an integer >= 0)")
    stripped = text.strip()
    if not stripped.isdigit() or not stripped.isascii():
        return _error(400, f"sequenceId: {text!r} is not an integer >= 0")
    return int(stripped)
