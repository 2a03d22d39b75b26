"""The daemon's core: sessions, the work queue, its workers, resync and spec reloads.

Level-triggered, as a Kubernetes controller: an event (API call, webhook,
spec edit) only changes a session's desired state and marks its name dirty
in the ``WorkQueue``. A worker later reconciles the session from its current
desired state, whatever the events were. The reconcile outcome follows
controller-runtime's contract:

- success: the key's backoff is forgotten;
- a retryable error (5xx, timeouts, 429, 409, a store failure): the key is
  queued again after ``BackoffLimiter.when`` (exponential, jittered);
- a terminal error (the spec cannot be compiled, a body the schema rejects,
  a 400): not retried, because retrying cannot help; the next change to the
  session or the next resync tries again.

A periodic resync marks every session for a ``refresh()`` (a Query: does
the task still exist?) followed by a reconcile, spread over the period with
jitter, and never using more than ``resync_share`` of the outgoing rate
budget, so ten thousand sessions do not starve event-driven work.

Nothing acknowledged is lost: each change is recorded in the ``InputJournal``
and the HTTP layer awaits ``commit_inputs()`` (a group commit of every
change recorded meanwhile) before it answers 202/200. On start, every
session takes its desired inputs back from the store, the webhook clientSeq
records are restored, and every session is reconciled once, so what a crash
or a drain left undone is done.

Nothing here speaks HTTP: ``layoutsync.daemon.app`` maps routes onto
``Daemon`` methods, and tests can drive a ``Daemon`` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..apply import AsyncSession, ReconcileResult
from ..errors import BadRequest, LayoutsyncError, SpecError, StateError, ValidationError
from ..logs import get_logger
from ..spec import LayoutSpec
from ..store import StateStore
from ..validate import MAX_UID
from .config import ConfigChanges, ConfigError, LoadedSpec, SpecCatalog, watch_specs
from .heap import HeapPolicy
from .journal import InputJournal
from .metrics import DaemonMetrics
from .queue import BackoffLimiter, QueueShutDown, WorkQueue
from .ratelimit import (
    DEFAULT_BURST,
    DEFAULT_MARGIN,
    DEFAULT_QPS,
    RateLimitedTransport,
    RateLimiter,
    TokenBucket,
    prepaid,
)
from .webhooks import ClientSeqTracker, Notification

__all__ = [
    "TERMINAL_ERRORS",
    "Daemon",
    "DaemonSettings",
    "ManagedSession",
    "UnknownSession",
    "WebhookOutcome",
    "build_client",
    "check_uid",
]


#: Errors a retry cannot fix: wait for the next change instead of hammering.
TERMINAL_ERRORS: tuple[type[BaseException], ...] = (SpecError, ValidationError, BadRequest)


class UnknownSession(LayoutsyncError):
    """No session has that name (the HTTP API answers 404)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no session named {name!r}")


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """Tuning knobs; the CLI flags map one to one."""

    config: Path
    state: Path = Path("layoutsync.db")
    debounce: float = 0.2
    concurrency: int = 16
    qps: float = DEFAULT_QPS
    burst: int = DEFAULT_BURST
    qps_margin: float = DEFAULT_MARGIN
    resync: float = 300.0
    resync_share: float = 0.5
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    drain_timeout: float = 20.0
    watch: bool = True
    poll_interval: float = 2.0
    seq_retention: float = 60.0
    full_gc_interval: float = 600.0

    def __post_init__(self) -> None:
        problems = []
        if self.debounce < 0:
            problems.append(f"debounce must be >= 0 seconds, got {self.debounce}")
        if self.concurrency < 1:
            problems.append(f"concurrency must be >= 1, got {self.concurrency}")
        if self.qps <= 0:
            problems.append(f"qps must be > 0, got {self.qps}")
        if self.burst < 1:
            problems.append(f"burst must be >= 1, got {self.burst}")
        if not 0 <= self.qps_margin < 1:
            problems.append(f"qps_margin must be in [0, 1), got {self.qps_margin}")
        if self.drain_timeout < 0:
            problems.append(f"drain_timeout must be >= 0 seconds, got {self.drain_timeout}")
        if self.resync <= 0:
            problems.append(f"resync must be > 0 seconds, got {self.resync}")
        if not 0 < self.resync_share <= 1:
            problems.append(f"resync_share must be in (0, 1], got {self.resync_share}")
        if self.full_gc_interval < 0:
            problems.append(
                f"full_gc_interval must be >= 0 seconds (0: leave the collector alone), "
                f"got {self.full_gc_interval}"
            )
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(slots=True, eq=False)
class ManagedSession:
    """A session the daemon manages: the library ``AsyncSession`` plus where its spec came from."""

    name: str
    path: Path
    spec: LayoutSpec
    session: AsyncSession
    last_result: ReconcileResult | None = None
    last_error: str | None = None
    last_reconciled_at: float | None = None
    reconciles: int = 0

    @property
    def input_channel(self) -> str:
        return str(self.spec.input_channel)

    def is_own_output(self, channel: str, uid: int) -> bool:
        """The transcoder's own output stream, seen as a host of ``channel``: never a host."""
        return uid == self.spec.output_uid and channel == self.spec.output_channel


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """What one NCS notification did: the sessions it changed, or why it was ignored."""

    event_type: int
    applied: tuple[str, ...] = ()
    ignored: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": True, "eventType": self.event_type}
        if self.ignored is not None:
            out["ignored"] = self.ignored
        else:
            out["sessions"] = list(self.applied)
        return out


def check_uid(value: object, where: str = "uid", *, text: bool = False) -> int:
    """A host uid: an integer 1..2^32-1; with ``text``, its decimal form (a URL path segment)."""
    if text and isinstance(value, str):
        if not value.isascii() or not value.isdigit():
            raise ValueError(f"{where}: {value!r} is not an integer uid (1..{MAX_UID})")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: {value!r} is not an integer uid (1..{MAX_UID})")
    if not 1 <= value <= MAX_UID:
        raise ValueError(f"{where}: {value} is outside 1..{MAX_UID}")
    return value


def build_client(
    settings: DaemonSettings,
    metrics: DaemonMetrics,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    bucket: RateLimiter | None = None,
    **client_options: Any,
) -> Any:
    """An ``AsyncClient`` whose every request takes a token and is counted.

    The rate limiter (``bucket``: any ``RateLimiter``, by default a
    ``TokenBucket`` from the settings) wraps the transport (the real one, or
    e.g. ``httpx.ASGITransport`` over the emulator in tests), below the
    client's retry loop; the client's ``on_response`` hook feeds the call
    counters. The limiter is also the client's ``rate_limiter`` attribute: a
    ``Daemon`` built on the client reserves its workers' tokens from it.
    Credentials and base URL come from ``client_options`` or the environment.
    """
    from ..api.client import AsyncClient

    base = transport if transport is not None else httpx.AsyncHTTPTransport()
    limiter = bucket or TokenBucket(settings.qps, settings.burst, margin=settings.qps_margin)
    client = AsyncClient(
        transport=RateLimitedTransport(base, limiter),
        on_response=metrics.observe_response,
        **client_options,
    )
    client.rate_limiter = limiter  # type: ignore[attr-defined]
    return client


def _default_session_factory(
    spec: LayoutSpec, *, client: Any, store: StateStore, name: str
) -> AsyncSession:
    # the daemon writes desired inputs itself, many sessions to one transaction
    return AsyncSession(spec, client=client, store=store, name=name, durable_inputs=False)


class Daemon:
    """Every session of one daemon process, and the machinery that keeps them in sync."""

    def __init__(
        self,
        settings: DaemonSettings,
        *,
        client: Any,
        store: StateStore,
        catalog: SpecCatalog | None = None,
        metrics: DaemonMetrics | None = None,
        session_factory: Callable[..., AsyncSession] = _default_session_factory,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.catalog = catalog if catalog is not None else SpecCatalog(settings.config)
        self.metrics = metrics if metrics is not None else DaemonMetrics()
        self._session_factory = session_factory
        self._clock = clock
        self._rng = rng or random.Random()
        self.queue: WorkQueue[str] = WorkQueue(debounce=settings.debounce, clock=clock)
        self.limiter: BackoffLimiter[str] = BackoffLimiter(
            base=settings.backoff_base, cap=settings.backoff_cap, rng=self._rng
        )
        self.seqs = ClientSeqTracker(retention=settings.seq_retention)
        self.journal = InputJournal(store)
        self._sessions: dict[str, ManagedSession] = {}
        self._retiring: dict[str, ManagedSession] = {}
        self._by_channel: dict[str, tuple[ManagedSession, ...]] = {}
        self._refresh_due: set[str] = set()
        self._reported: dict[str, ConfigError] = {}
        self._in_flight = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self.heap = HeapPolicy()
        #: Workers reserve a token here before they read desired state (None: the
        #: client's transport alone paces, e.g. a client built without ``build_client``).
        self.rate_limiter: RateLimiter | None = getattr(client, "rate_limiter", None)
        self._drain_reconciled = 0
        self._drain_failed: set[str] = set()
        self._loaded = False
        self._stopping = False
        self._seqs_restored = False  # a stop before any start must not wipe the saved records
        self.metrics.bind(
            queue_changes=self.queue.changes,
            queue_resyncs=lambda: len(self.queue) - self.queue.changes(),
            oldest_change_age=self.queue.oldest_change_age,
            in_flight=lambda: self._in_flight,
            sessions=lambda: len(self._sessions),
            config_errors=lambda: len(self.catalog.errors),
        )

    @property
    def _log(self) -> Any:
        # Looked up per use, so a ``configure`` after construction still applies.
        return get_logger(component="daemon")

    # --- sessions -------------------------------------------------------------------------

    def load(self, changes: ConfigChanges | None = None) -> ConfigChanges:
        """Create a session per accepted spec (the first scan, before ``start``).

        Raises ``LayoutsyncError`` listing every spec that failed, so the
        daemon refuses to start rather than run half its sessions.
        """
        changes = changes if changes is not None else self.catalog.scan()
        if changes.failed:
            raise SpecError(
                [_field_error(error) for error in changes.failed],
                source=f"{len(changes.failed)} spec file(s) under {self.catalog.path} failed",
            )
        for loaded in changes.added:
            self._add(loaded)
        self._loaded = True
        return changes

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def stopping(self) -> bool:
        return self._stopping

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._sessions))

    def get(self, name: str) -> ManagedSession:
        try:
            return self._sessions[name]
        except KeyError:
            raise UnknownSession(name) from None

    def sessions_for_channel(self, channel: str) -> tuple[ManagedSession, ...]:
        return self._by_channel.get(channel, ())

    def _add(self, loaded: LoadedSpec) -> ManagedSession:
        retiring = self._retiring.pop(loaded.name, None)
        if retiring is not None:
            # Re-added while its removal is pending: keep the one object, so two
            # sessions never share one state row.
            managed = retiring
            managed.path = loaded.path
            if managed.spec is not loaded.spec:
                managed.session.replace_spec(loaded.spec)
                managed.spec = loaded.spec
        else:
            session = self._session_factory(
                loaded.spec, client=self.client, store=self.store, name=loaded.name
            )
            managed = ManagedSession(loaded.name, loaded.path, loaded.spec, session)
        self._sessions[loaded.name] = managed
        self._index_add(managed)
        return managed

    def _index_add(self, managed: ManagedSession) -> None:
        """Index ``managed`` by its input channel (a webhook names only the channel)."""
        channel = managed.input_channel
        group = self._by_channel.get(channel, ())
        if not any(member is managed for member in group):
            self._by_channel[channel] = (*group, managed)

    def _index_remove(self, managed: ManagedSession, channel: str) -> None:
        group = tuple(m for m in self._by_channel.get(channel, ()) if m is not managed)
        if group:
            self._by_channel[channel] = group
        else:
            self._by_channel.pop(channel, None)

    # --- desired state (called by the HTTP layer; synchronous, answers at once) -------------

    def host_joined(self, name: str, uid: int, *, source: str = "api") -> None:
        managed = self.get(name)
        managed.session.host_joined(uid)
        self._changed(managed, source, "join")

    def host_left(self, name: str, uid: int, *, source: str = "api") -> None:
        managed = self.get(name)
        managed.session.host_left(uid)
        self._changed(managed, source, "leave")

    def set_hosts(self, name: str, uids: Iterable[int]) -> None:
        managed = self.get(name)
        managed.session.set_hosts(list(uids))
        self._changed(managed, "api", "hosts")

    def set_speaker(self, name: str, uid: int | None) -> None:
        managed = self.get(name)
        managed.session.set_speaker(uid)
        self._changed(managed, "api", "speaker")

    def _changed(self, managed: ManagedSession, source: str, kind: str) -> None:
        if source == "api":
            self.metrics.events.labels(source, kind).inc()
        self.journal.record(managed.name, managed.session.desired)
        self._queue_change(managed.name)

    def _queue_change(self, name: str) -> None:
        self.queue.add(name)

    async def commit_inputs(self) -> None:
        """Wait until every change made so far is in the store (then it may be acknowledged).

        Raises ``StateError`` when the store cannot take it; the change stays in memory and
        pending, and is written with the next commit.
        """
        await self.journal.commit()

    async def notify(self, notification: Notification) -> WebhookOutcome:
        """``handle_notification``, as the HTTP layer calls it (a store over the network
        records it without blocking the loop: ``ClusterDaemon``)."""
        return self.handle_notification(notification)

    def handle_notification(self, notification: Notification) -> WebhookOutcome:
        """Apply one verified NCS notification to every session of its channel."""
        self.metrics.events.labels("webhook", str(notification.event_type)).inc()
        event = notification.host_event
        if event is None:
            return self._ignored(notification, "event type not handled")
        targets = self._by_channel.get(event.channel, ())
        if not targets:
            return self._ignored(notification, "no session for this channel")
        if not self.seqs.accept(event, self._clock()):
            return self._ignored(notification, "clientSeq not above the last seen")
        self.journal.record_seq(
            (event.channel, event.uid, event.client_seq, None if event.joined else 0.0)
        )
        applied = []
        for managed in targets:
            if managed.is_own_output(event.channel, event.uid):
                continue
            if event.joined:
                managed.session.host_joined(event.uid)
            else:
                managed.session.host_left(event.uid)
            self.journal.record(managed.name, managed.session.desired)
            self.queue.add(managed.name)
            applied.append(managed.name)
        if not applied:
            return self._ignored(notification, "the transcoder's own output uid")
        return WebhookOutcome(notification.event_type, applied=tuple(applied))

    def _ignored(self, notification: Notification, reason: str) -> WebhookOutcome:
        self.metrics.events_ignored.labels(reason).inc()
        return WebhookOutcome(notification.event_type, ignored=reason)

    # --- reconciling ------------------------------------------------------------------------

    async def reconcile_now(self, name: str) -> ReconcileResult | None:
        """Reconcile one session at once (``POST .../reconcile``) and return the result."""
        managed = self.get(name)
        if not self.queue.is_processing(name):
            self.queue.forget(name)  # this reconcile reads the latest desired state
        error = await self._reconcile(managed, refresh=False)
        if error is None:
            self.limiter.forget(name)
        return managed.last_result

    async def _reconcile(self, managed: ManagedSession, *, refresh: bool) -> BaseException | None:
        """One refresh-then-reconcile of ``managed``; returns the error, if any."""
        log = self._log.bind(session=managed.name, instanceId=managed.spec.instance_id)
        started = time.perf_counter()
        self._in_flight += 1
        error: BaseException | None = None
        result: Any = None
        try:
            if refresh:
                await managed.session.refresh()
            result = await managed.session.reconcile()
            error = getattr(result, "error", None)
        except (LayoutsyncError, OSError, httpx.HTTPError) as exc:
            error = exc
        except Exception as exc:  # a bug must not kill the worker: report it, back off
            log.exception("reconcile crashed")
            error = exc
        finally:
            self._in_flight -= 1
        elapsed = time.perf_counter() - started
        self.metrics.reconcile_seconds.observe(elapsed)
        managed.reconciles += 1
        managed.last_reconciled_at = time.time()
        if result is not None:
            # Without its plan: ten thousand sessions would each keep a plan's change list
            # alive. The session's status() keeps the plan's one-line summary.
            managed.last_result = dataclasses.replace(result, plan=None)
        action = getattr(result, "action", None) if error is None else "error"
        self.metrics.reconciles.labels(action or "error").inc()
        bound = log.bind(
            taskId=getattr(result, "task_id", None),
            sequenceId=getattr(result, "sequence_id", None),
            seconds=round(elapsed, 6),
        )
        if error is not None:
            managed.last_error = _describe(error)
            bound.warning(
                "reconcile failed",
                error=managed.last_error,
                error_type=type(error).__name__,
                request_id=getattr(error, "request_id", None),
            )
        else:
            managed.last_error = None
            if action != "noop":
                # apply.py logs the reconcile itself at info; this line adds the timing only
                bound.debug("reconciled", action=action, calls=_calls(result))
        return error

    async def _work(self) -> None:
        while True:
            try:
                name = await self.queue.get()
            except QueueShutDown:
                return
            settled = False
            try:
                settled = await self._process(name)
            finally:
                self.queue.done(name, settled=settled)
            if self._stopping:
                self._drain_reconciled += 1
                if not settled and name not in self.queue:  # a retry refused by the shutdown
                    self._drain_failed.add(name)

    async def _process(self, name: str) -> bool:
        """Reconcile ``name`` once; False when its change is not applied yet (queued again)."""
        retiring = self._retiring.get(name)
        if retiring is not None:
            return await self._retire(retiring)
        managed = self._sessions.get(name)
        if managed is None:
            return True
        refresh = name in self._refresh_due
        self._refresh_due.discard(name)
        error = await self._reconcile_paced(managed, refresh=refresh)
        if error is None:
            self.limiter.forget(name)
            result = managed.last_result
            if result is not None and result.requeue_after is not None:
                # an outcome still unknown (a 202 not settled yet): look again later
                self.queue.add_after(name, result.requeue_after, change=True)
                return False
            return True
        if isinstance(error, TERMINAL_ERRORS):
            self.limiter.forget(name)
            return True
        if refresh:
            self._refresh_due.add(name)
        # As controller-runtime: after an error the limiter decides, the result's hint is
        # ignored (the client has already waited out its own 5/10/15 s retries).
        self.queue.add_after(name, self.limiter.when(name))
        return False

    async def _reconcile_paced(
        self, managed: ManagedSession, *, refresh: bool
    ) -> BaseException | None:
        """``_reconcile``, with its first request's token reserved and waited for *first*.

        A worker that compiled and then waited its turn would send a body that
        misses every event of that wait (up to concurrency / qps seconds). So
        it reserves a token, waits, and only then reads the desired state; the
        first request goes on that token (``prepaid``), and an unused token is
        given back. When it would have to wait, a plan first says whether the
        reconcile sends at all: a session with nothing to send does not queue
        for the quota.
        """
        limiter = self.rate_limiter
        if limiter is None:
            return await self._reconcile(managed, refresh=refresh)
        name = managed.name
        try:
            delay = await limiter.reserve()
        except Exception as exc:  # a shared limiter's store is down: back off, keep the worker
            managed.last_error = f"rate limiter: {_describe(exc)}"
            self._log.warning("rate limiter failed", session=name, error=managed.last_error)
            return exc
        if delay > 0 and not refresh and not await self._would_send(managed):
            await self._give_back(limiter)
            return await self._reconcile(managed, refresh=refresh)
        used = False
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            if name not in self._refresh_due and name not in self._retiring:
                # Events of the wait are in this read: they must not queue the session
                # again with their early due time, ahead of sessions that waited longer.
                # (A resync or a removal that came meanwhile keeps it queued.)
                self.queue.reading(name)
            with prepaid() as token:
                try:
                    return await self._reconcile(managed, refresh=refresh)
                finally:
                    used = token.used
        finally:
            if not used:
                await self._give_back(limiter)

    async def _give_back(self, limiter: RateLimiter) -> None:
        try:
            await limiter.cancel()
        except Exception as exc:  # best effort: a token lost costs one request's slot
            self._log.warning("rate limiter: token not given back", error=_describe(exc))

    async def _would_send(self, managed: ManagedSession) -> bool:
        try:
            plan = await managed.session.plan()
        except (LayoutsyncError, OSError):
            return False  # the reconcile fails the same way, before any request
        return plan.changed

    async def _retire(self, managed: ManagedSession) -> bool:
        """Stop managing a session whose spec file was removed, applying its ``onEmpty``."""
        log = self._log.bind(session=managed.name, instanceId=managed.spec.instance_id)
        if managed.spec.on_empty == "delete":
            try:
                await managed.session.destroy()
            except (LayoutsyncError, OSError, httpx.HTTPError) as exc:
                managed.last_error = _describe(exc)
                log.warning("destroy of a removed session failed", error=managed.last_error)
                self.queue.add_after(managed.name, self.limiter.when(managed.name), change=True)
                return False
            log.info("session removed; task deleted (onEmpty=delete)")
        else:
            log.info("session removed; task left to its idleTimeout (onEmpty=idle)")
        if self._retiring.get(managed.name) is managed:
            del self._retiring[managed.name]
        self.limiter.forget(managed.name)
        return True

    # --- spec reloads -----------------------------------------------------------------------

    async def reload(self) -> ConfigChanges:
        """Rescan the spec files and apply what changed (also called by the watcher)."""
        async with self._reload_lock:
            try:
                changes = self.catalog.scan()
            except LayoutsyncError as exc:
                self._log.error("spec reload failed", error=str(exc))
                return ConfigChanges()
            self.apply_changes(changes)
            return changes

    def apply_changes(self, changes: ConfigChanges) -> None:
        reported = {error.name: error for error in changes.failed}
        for error in changes.failed:
            if self._reported.get(error.name) != error:  # once per distinct error, not per scan
                self._log.error(
                    "spec file rejected; the previous spec stays",
                    session=error.name,
                    path=str(error.path),
                    error=error.message,
                )
        for name in self._reported.keys() - reported.keys():
            self._log.info("spec file accepted again", session=name)
        self._reported = reported
        for loaded in changes.added:
            self._add(loaded)
            self.queue.add(loaded.name)
            self._log.info("session added", session=loaded.name, path=str(loaded.path))
        for loaded in changes.changed:
            managed = self._sessions.get(loaded.name)
            if managed is None:
                continue
            old_channel = managed.input_channel
            managed.session.replace_spec(loaded.spec)
            managed.spec = loaded.spec
            managed.path = loaded.path
            if managed.input_channel != old_channel:
                self._index_remove(managed, old_channel)
                self._index_add(managed)
            self.queue.add(loaded.name)
            self._log.info("session spec changed", session=loaded.name)
        for loaded in changes.removed:
            managed = self._sessions.pop(loaded.name, None)
            if managed is None:
                continue
            self._index_remove(managed, managed.input_channel)
            self._retiring[loaded.name] = managed
            self._refresh_due.discard(loaded.name)
            self.queue.add_after(loaded.name, 0.0, change=True)

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers, the resync loop and the spec watcher."""
        if not self._loaded:
            self.load()
        self._stop.clear()
        self._restore_client_seqs()
        # A new process reconciles every session once: it compiles the stored desired
        # state and plans against the stored applied body, so nothing is sent unless
        # something is owed (a pending intent, a spec edited while stopped).
        for name in self._sessions:
            self.queue.add(name)
        self._workers = [
            asyncio.create_task(self._work(), name=f"layoutsync-worker-{i}")
            for i in range(self.settings.concurrency)
        ]
        self._tasks = [asyncio.create_task(self._resync_loop(), name="layoutsync-resync")]
        if self.settings.full_gc_interval > 0:
            self.heap.install()
            self._tasks.append(asyncio.create_task(self._compact_loop(), name="layoutsync-heap"))
        if self.settings.watch:
            self._tasks.append(
                asyncio.create_task(
                    watch_specs(
                        self.catalog.path,
                        self.reload,
                        stop=self._stop,
                        poll_interval=self.settings.poll_interval,
                    ),
                    name="layoutsync-watch",
                )
            )
        self._log.info(
            "daemon started",
            sessions=len(self._sessions),
            concurrency=self.settings.concurrency,
            debounce=self.settings.debounce,
            qps=self.settings.qps,
            pacing=_pacing(self.rate_limiter),
        )

    async def stop(self) -> None:
        """Finish in-flight reconciles and what is queued (bounded by ``drain_timeout``).

        The log says what the drain did and what it left: ``queued`` (waiting
        when the stop began), ``reconciled`` (finished during the drain),
        ``left`` (sessions still owed a reconcile; the next start reconciles
        every session from its stored desired state).
        """
        if self._stopping:
            return
        self._stopping = True
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._commit_quietly()
        queued = len(self.queue)
        running = len(self.queue.processing)
        self._drain_reconciled = 0
        self._drain_failed = set()
        started = time.monotonic()
        self.queue.shutdown(drain=True)
        left: set[str] = set()
        if self._workers:
            _, pending = await asyncio.wait(self._workers, timeout=self.settings.drain_timeout)
            if pending:
                left.update(self.queue.waiting(), self.queue.processing)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        left |= self._drain_failed
        drain = {
            "queued": queued,
            "running": running,
            "reconciled": self._drain_reconciled,
            "left": len(left),
            "seconds": round(time.monotonic() - started, 3),
        }
        if left:
            self._log.warning(
                "drain left work undone; the next start reconciles it",
                drain_timeout=self.settings.drain_timeout,
                left_sessions=sorted(left)[:20],
                **drain,
            )
        await self._commit_quietly()
        self._save_client_seqs()
        self.journal.close()
        self.heap.uninstall()
        self._log.info("daemon stopped", **drain)

    async def _commit_quietly(self) -> None:
        """Write what is recorded and not yet committed (changes made without a request)."""
        try:
            await self.journal.commit()
        except LayoutsyncError as exc:
            self._log.warning("desired inputs not saved", error=str(exc), pending=len(self.journal))

    async def aclose(self) -> None:
        """Stop, then close the client and the store."""
        await self.stop()
        with contextlib.suppress(Exception):
            await self.client.aclose()
        close = getattr(self.store, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    def _restore_client_seqs(self) -> None:
        """Take back the webhook ordering records, as the last process acknowledged them.

        Without them, a join that Agora delivers late, after the leave that
        followed it and after a restart, would bring back a host who is gone.
        Each accepted event's record is written before its 200, so this holds
        after a SIGKILL too. The table is then compacted to what was restored
        (records of users gone longer than the retention are dropped).
        """
        self._seqs_restored = True
        try:
            restored = self.seqs.restore(self.store.load_client_seqs(), self._clock())
        except StateError as exc:
            self._log.warning("webhook clientSeq records not restored", error=str(exc))
            return
        self._save_client_seqs(quiet=True)
        if restored:
            self._log.info("webhook clientSeq records restored", records=restored)

    def _save_client_seqs(self, *, quiet: bool = False) -> None:
        """Replace the saved records by the live ones (a compaction: pruned leaves go).

        Called with nothing pending in the journal (on start, on stop), so no
        acknowledged record is older on disk than in memory afterwards.
        """
        if not self._seqs_restored:
            return
        rows = self.seqs.export(self._clock())
        try:
            self.store.save_client_seqs(rows)
        except StateError as exc:
            self._log.warning("webhook clientSeq records not saved", error=str(exc))
            return
        if not quiet:
            self._log.info("webhook clientSeq records saved", records=len(rows))

    def resync_period(self) -> float:
        """The configured period, stretched so resync Queries stay within their rate share."""
        sessions = len(self._sessions)
        rate = self.rate_limiter.rate if self.rate_limiter is not None else self.settings.qps
        floor = sessions / (rate * self.settings.resync_share)
        return max(self.settings.resync, floor)

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait ``seconds``; True when the daemon began stopping meanwhile."""
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _resync_loop(self) -> None:
        while not self._stop.is_set():
            period = self.resync_period()
            if await self._stopped_within(period * self._rng.uniform(0.9, 1.1)):
                return
            self.schedule_resync(period)
            # the saved clientSeq records of users long gone go too (memory already pruned)
            try:
                await self.journal.compact(self.seqs.export(self._clock()))
            except StateError as exc:
                self._log.warning("webhook clientSeq records not compacted", error=str(exc))

    async def _compact_loop(self) -> None:
        """The one full collection per ``full_gc_interval`` (see ``layoutsync.daemon.heap``)."""
        while not await self._stopped_within(self.settings.full_gc_interval):
            self._log.info("heap compacted", **self.heap.compact())

    def schedule_resync(self, period: float) -> None:
        """Mark every session for a refresh, each at a random moment within ``period``."""
        for name in self._sessions:
            self._refresh_due.add(name)
            self.queue.add_after(name, self._rng.uniform(0.0, period))

    def ready(self) -> tuple[bool, Mapping[str, Any]]:
        """Readiness: specs loaded, workers running, the state store answers."""
        check = getattr(self.store, "check", None)  # SqliteStore: one SELECT
        try:
            if check is not None:
                check()
        except (StateError, OSError) as exc:
            return self._readiness(str(exc))
        return self._readiness(None)

    async def aready(self) -> tuple[bool, Mapping[str, Any]]:
        """``ready``, as the HTTP layer asks (a store over the network answers without
        blocking the loop: ``ClusterDaemon``)."""
        return self.ready()

    def _readiness(self, store_error: str | None) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {
            "specsLoaded": self._loaded,
            "running": bool(self._workers) and not self._stopping,
            "store": store_error is None,
        }
        if store_error is not None:
            checks["storeError"] = store_error
        ok = all(value is True for key, value in checks.items() if key != "storeError")
        return ok, checks

    # --- status -----------------------------------------------------------------------------

    def pending(self, name: str) -> dict[str, Any]:
        return {
            "queued": name in self.queue,
            "running": self.queue.is_processing(name),
            "failures": self.limiter.failures(name),
            "refreshDue": name in self._refresh_due,
        }

    def config_error(self, name: str) -> ConfigError | None:
        return self.catalog.error_for(name)


def _pacing(limiter: RateLimiter | None) -> dict[str, Any] | None:
    """What the start-up log says about the pacing: the rate, and a burst that was lowered."""
    if limiter is None:
        return None
    out: dict[str, Any] = {"rate": round(limiter.rate, 3)}
    burst = getattr(limiter, "burst", None)
    if burst is not None:
        out["burst"] = burst
        asked = getattr(limiter, "requested_burst", burst)
        if asked != burst:
            out["burstLoweredFrom"] = asked
    return out


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if isinstance(error, LayoutsyncError) else f"{type(error).__name__}: {text}"


def _calls(result: Any) -> Any:
    calls = getattr(result, "calls", None)
    if calls is None:
        return None
    if isinstance(calls, int):
        return calls
    return [str(call) for call in calls]


def _field_error(error: ConfigError) -> Any:
    from ..errors import FieldError

    return FieldError(str(error.path), error.message)
