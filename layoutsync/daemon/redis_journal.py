"""Group commit of a replica's events to Redis: the fleet's twin of ``InputJournal``.

An API call that reaches a replica changes the session there in memory,
``record``s the change here as an operation (join, leave, hosts, speaker:
any replica may hold a stale copy of a session it does not own, so a replica
sends what happened, never a snapshot), and ``await``s ``commit()`` before
its 202 goes out. One writer sends everything recorded meanwhile in one
pipeline on the asyncio client (``RedisStore.arecord_events``: one Lua
script per event, each atomic, in the order recorded), so the loop never
blocks on Redis and N events that arrive together share one round trip.

A batch that fails (Redis away) fails every request waiting (503: the
caller sends again), and what was not written is dropped, not kept for the
next batch: an operation sent again is not always a no-op (a host that left
and is listed again by ``hosts`` goes to the end of the order), so only the
caller's resend may apply it, once. The replica then reads the desired
inputs of those sessions back from Redis before it reconciles them
(``on_failed``), so a change that was not acknowledged does not stay in
its memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..redis_store import RedisStore
from .journal import GroupCommit

__all__ = ["RedisEventJournal"]

Event = tuple[str, str, Any]  #: (session name, op, value), as ``RedisStore.record_event``


class RedisEventJournal(GroupCommit):
    """A replica's one writer of events to Redis; ``on_written(name, version)`` hears
    the version each event made, in order, ``on_failed(names)`` the sessions of a batch
    that failed."""

    _task_name = "layoutsync-events"

    def __init__(
        self,
        store: RedisStore,
        *,
        on_written: Callable[[str, int], None] | None = None,
        on_failed: Callable[[set[str]], None] | None = None,
    ) -> None:
        super().__init__()
        self._store = store
        self._on_written = on_written
        self._on_failed = on_failed
        self._pending: list[Event] = []

    def __len__(self) -> int:
        """Events waiting for a write."""
        return len(self._pending)

    def record(self, name: str, op: str, value: Any) -> None:
        self._pending.append((name, op, value))
        self._recorded += 1

    async def _write(self) -> None:
        while self._waiters:
            batch, generation = self._pending, self._recorded
            self._pending = []
            try:
                versions = await self._store.arecord_events(batch)
            except Exception as exc:  # every waiter hears of it; nothing waits to be sent
                dropped = {name for name, _, _ in batch + self._pending}
                self._pending = []
                self._durable = self._recorded
                self._wake(self._recorded, exc)
                if self._on_failed is not None:
                    self._on_failed(dropped)
                return
            self._durable = max(self._durable, generation)
            if self._on_written is not None:
                for (name, _, _), version in zip(batch, versions, strict=True):
                    self._on_written(name, version)
            self._wake(generation, None)
