"""A level-triggered work queue, after client-go's ``workqueue``.

A queued item is only a key (a session name); the worker reads the
session's current desired state when it gets there, never the event that
queued it. So any number of events for one key between two reconciles cost
one reconcile:

- *dirty*: keys waiting to be handed out, each with the time it is due;
- *processing*: keys a worker holds. A key is never handed to two workers at
  once; adding a key that is being processed marks it dirty, and ``done``
  queues it again;
- *debounce*: a key that becomes dirty is due ``debounce`` seconds after the
  first event, not the last, so a burst is gathered into one reconcile and a
  steady stream cannot postpone it for ever;
- ``add_after`` (backoff, resync) never delays a key that is already due
  earlier;
- *changes*: a key queued by ``add`` (an event, a spec edit) carries the time
  of its first change not yet applied, until a worker finishes it; a key
  queued only by ``add_after`` (a scheduled resync) carries none. A failed
  reconcile hands the change back (``done(key, settled=False)``), so the
  change stays pending through its backoff. ``changes()`` and
  ``oldest_change`` are what an operator alerts on: real work waiting, and
  for how long, apart from the resyncs that come and go every period.

``QueueCore`` is the bookkeeping with the clock passed in (tested without
waiting); ``WorkQueue`` adds ``await get()``. Backoff is a separate object,
``BackoffLimiter`` (``when``/``forget``), as client-go keeps its rate limiter
apart from the queue.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

__all__ = ["BackoffLimiter", "QueueCore", "QueueShutDown", "WorkQueue"]

K = TypeVar("K", bound=Hashable)


class QueueShutDown(Exception):
    """``get`` was called on a queue that is shut down and has nothing left to hand out."""


class QueueCore(Generic[K]):
    """The queue's state, with time passed in: no I/O, no waiting."""

    __slots__ = ("_changed", "_counter", "_dirty", "_heap", "_processing", "_serving", "debounce")

    def __init__(self, *, debounce: float = 0.2) -> None:
        if debounce < 0:
            raise ValueError("debounce must be >= 0")
        self.debounce = debounce
        self._dirty: dict[K, float] = {}  # key -> when it is due
        self._processing: set[K] = set()
        self._changed: dict[K, float] = {}  # waiting key -> its first change not applied yet
        self._serving: dict[K, float] = {}  # processing key -> the change it is applying
        self._heap: list[tuple[float, int, K]] = []  # may hold stale entries
        self._counter = itertools.count()

    def __len__(self) -> int:
        """Keys waiting (the queue depth); keys being processed are not counted."""
        return len(self._dirty)

    def __contains__(self, key: object) -> bool:
        return key in self._dirty

    @property
    def processing(self) -> frozenset[K]:
        return frozenset(self._processing)

    def is_processing(self, key: K) -> bool:
        return key in self._processing

    def waiting(self) -> Iterator[K]:
        return iter(tuple(self._dirty))

    def changes(self) -> int:
        """Waiting keys with a change to apply (the rest wait only for a scheduled resync)."""
        return len(self._changed)

    def oldest_change(self) -> float | None:
        """When the oldest change not applied yet happened (waiting or being applied)."""
        times = [*self._changed.values(), *self._serving.values()]
        return min(times) if times else None

    def change_time(self, key: K) -> float | None:
        """When the oldest change of ``key`` not applied yet happened (applying or waiting)."""
        times = [t for t in (self._serving.get(key), self._changed.get(key)) if t is not None]
        return min(times) if times else None

    def add(self, key: K, now: float) -> bool:
        """Mark ``key`` dirty, due after the debounce window. True when it was not dirty yet."""
        return self.add_at(key, now + self.debounce, changed_at=now)

    def add_after(self, key: K, delay: float, now: float, *, change: bool = False) -> bool:
        return self.add_at(key, now + max(0.0, delay), changed_at=now if change else None)

    def add_at(self, key: K, due: float, *, changed_at: float | None = None) -> bool:
        """Mark ``key`` dirty, due at ``due`` unless it is already due earlier.

        ``changed_at``: the key carries a change made then (kept if an older one waits).
        """
        if changed_at is not None:
            self._changed.setdefault(key, changed_at)
        current = self._dirty.get(key)
        if current is not None and current <= due:
            return False
        self._dirty[key] = due
        if key not in self._processing:
            heapq.heappush(self._heap, (due, next(self._counter), key))
        return current is None

    def pop(self, now: float) -> K | None:
        """The key due first, if one is due at ``now``; it moves to *processing*."""
        heap = self._heap
        while heap:
            due, _, key = heap[0]
            if self._dirty.get(key) != due or key in self._processing:
                heapq.heappop(heap)  # stale: re-added earlier, or handed out already
                continue
            if due > now:
                return None
            heapq.heappop(heap)
            del self._dirty[key]
            self._processing.add(key)
            changed_at = self._changed.pop(key, None)
            if changed_at is not None:
                self._serving[key] = changed_at
            return key
        return None

    def next_due(self) -> float | None:
        """When the next key falls due (None when nothing waits)."""
        heap = self._heap
        while heap:
            due, _, key = heap[0]
            if self._dirty.get(key) != due or key in self._processing:
                heapq.heappop(heap)
                continue
            return due
        return None

    def done(self, key: K, *, settled: bool = True) -> None:
        """A worker finished ``key``; if it became dirty meanwhile it is queued again.

        ``settled=False``: the change it was applying is not applied (the reconcile
        failed and was queued again), so that change stays pending.
        """
        self._processing.discard(key)
        serving = self._serving.pop(key, None)
        due = self._dirty.get(key)
        if not settled and serving is not None and due is not None:
            self._changed[key] = min(self._changed.get(key, serving), serving)
        if due is not None:
            heapq.heappush(self._heap, (due, next(self._counter), key))

    def forget(self, key: K) -> bool:
        """Drop a waiting ``key`` (its session went away). True when it was waiting."""
        self._changed.pop(key, None)
        return self._dirty.pop(key, None) is not None

    def reading(self, key: K) -> None:
        """The worker holding ``key`` reads its desired state now: what made it dirty meanwhile
        is in that read, so it no longer counts (nor keeps its place in line)."""
        if key not in self._processing or key not in self._dirty:
            return
        del self._dirty[key]
        changed_at = self._changed.pop(key, None)
        if changed_at is not None:
            self._serving[key] = min(self._serving.get(key, changed_at), changed_at)

    def expedite(self, now: float) -> None:
        """Make every waiting key due now (used to drain on shutdown)."""
        for key in self._dirty:
            self._dirty[key] = now
        self._heap = [
            (now, next(self._counter), key) for key in self._dirty if key not in self._processing
        ]
        heapq.heapify(self._heap)


class WorkQueue(Generic[K]):
    """``QueueCore`` for asyncio workers: ``key = await q.get()`` ... ``q.done(key)``.

    Idle workers wait in line; each due key is handed to the first of them
    directly (one wake-up per key, however many workers wait), and a single
    timer is armed for the next key to fall due.

    ``shutdown()`` hands out nothing more; ``shutdown(drain=True)`` first
    hands out every waiting key at once, so a stopping daemon applies what it
    has accepted, then ``get`` raises ``QueueShutDown``.
    """

    def __init__(
        self,
        *,
        debounce: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core: QueueCore[K] = QueueCore(debounce=debounce)
        self._clock = clock
        self._waiters: deque[asyncio.Future[K]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._shutting_down = False
        self._draining = False

    @property
    def debounce(self) -> float:
        return self._core.debounce

    def __len__(self) -> int:
        return len(self._core)

    def __contains__(self, key: object) -> bool:
        return key in self._core

    def is_processing(self, key: K) -> bool:
        return self._core.is_processing(key)

    @property
    def processing(self) -> frozenset[K]:
        return self._core.processing

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def waiting(self) -> tuple[K, ...]:
        """Keys waiting to be handed out (not those being processed)."""
        return tuple(self._core.waiting())

    def changes(self) -> int:
        """Waiting keys with a change to apply; ``len(q) - q.changes()`` wait for a resync."""
        return self._core.changes()

    def oldest_change_age(self) -> float:
        """Seconds since the oldest change not applied yet (0 when there is none)."""
        oldest = self._core.oldest_change()
        return 0.0 if oldest is None else max(0.0, self._clock() - oldest)

    def change_time(self, key: K) -> float | None:
        """When the oldest change of ``key`` not applied yet happened (clock time), if any."""
        return self._core.change_time(key)

    def add(self, key: K) -> bool:
        """Mark ``key`` dirty; it is handed out once the debounce window has passed."""
        if self._shutting_down and not self._draining:
            return False
        now = self._clock()
        due = now if self._draining else now + self._core.debounce
        added = self._core.add_at(key, due, changed_at=now)
        self._dispatch()
        return added

    def add_after(self, key: K, delay: float, *, change: bool = False) -> bool:
        """Hand ``key`` out after ``delay`` seconds (backoff, resync), unless due sooner.

        ``change``: the key carries a change to apply (e.g. a removed spec's onEmpty).
        """
        if self._shutting_down:
            return False
        added = self._core.add_after(key, delay, self._clock(), change=change)
        self._dispatch()
        return added

    def forget(self, key: K) -> bool:
        return self._core.forget(key)

    def reading(self, key: K) -> None:
        """Called by the worker holding ``key`` just before it reads the desired state."""
        self._core.reading(key)

    def done(self, key: K, *, settled: bool = True) -> None:
        """The worker is finished with ``key``; it is queued again if it became dirty.

        ``settled=False`` when the change it applied failed and was queued again.
        """
        self._core.done(key, settled=settled)
        self._dispatch()

    def shutdown(self, *, drain: bool = False) -> None:
        self._shutting_down = True
        self._draining = drain
        if drain:
            self._core.expedite(self._clock())
        else:
            for key in list(self._core.waiting()):
                self._core.forget(key)
        self._dispatch()

    async def get(self) -> K:
        """Wait for a due key. Raises ``QueueShutDown`` once shut down and empty."""
        if not self._waiters:  # nobody is ahead in line
            key = self._core.pop(self._clock())
            if key is not None:
                return key
        if self._shutting_down and self._core.next_due() is None:
            raise QueueShutDown()
        waiter: asyncio.Future[K] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._dispatch()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a key, then cancelled before using it: put the key back.
                key = waiter.result()
                self._core.add_at(key, self._clock())
                self._core.done(key, settled=False)
                self._dispatch()
            raise

    def _dispatch(self) -> None:
        """Hand due keys to waiting workers; arm one timer for the next key to fall due."""
        waiters = self._waiters
        now = self._clock()
        while waiters:
            if waiters[0].done():  # its worker was cancelled
                waiters.popleft()
                continue
            key = self._core.pop(now)
            if key is None:
                break
            waiters.popleft().set_result(key)
        due = self._core.next_due()
        if not waiters:
            return
        if due is None:
            if self._shutting_down:
                while waiters:
                    waiter = waiters.popleft()
                    if not waiter.done():
                        waiter.set_exception(QueueShutDown())
            return
        if self._timer is not None and self._timer_due is not None and self._timer_due <= due:
            return  # a timer fires sooner and will look again
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = asyncio.get_running_loop().call_later(max(0.0, due - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_due = None
        self._dispatch()


class BackoffLimiter(Generic[K]):
    """Per-key exponential backoff with jitter: ``when`` after a failure, ``forget`` on success.

    The n-th consecutive failure waits ``min(cap, base * 2**(n-1))`` scaled by
    a random factor in ``[1 - jitter, 1 + jitter]`` (never above ``cap``), so
    sessions that failed together do not retry together.
    """

    __slots__ = ("_failures", "_rng", "base", "cap", "jitter")

    def __init__(
        self,
        *,
        base: float = 0.5,
        cap: float = 300.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        """Record one more failure of ``key`` and return how long to wait before retrying."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = min(self.cap, self.base * 2.0 ** min(failures - 1, 62))
        if self.jitter:
            delay *= self._rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return min(self.cap, delay)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)
