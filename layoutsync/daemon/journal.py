"""Group commit of desired inputs: nothing the daemon acknowledges is lost to a crash.

An API call or a webhook changes a session's desired state in memory, then
``record``s it here and ``await``s ``commit()`` before the 202/200 goes out.
One writer flushes what was recorded in one ``StateStore.save_inputs``
transaction; whatever is recorded while it writes goes into the next batch.
So N events that arrive together share one transaction, and each request
waits for at most two flushes. Where a commit waits for the disk (SQLite
``synchronous=FULL``: an fsync) or a network (the store's ``commit_blocks``
is true, the default), the writer runs in a thread of its own and the loop
keeps serving meanwhile; where it does not (``synchronous=NORMAL``, tens of
microseconds), it writes on the loop: a thread would cost more in handing
over the GIL (up to its 5 ms switch interval on a busy core) than the write.

Per session only the latest desired inputs are kept (a later record
overwrites an earlier one not yet written), as are the latest clientSeq
record per (channel, uid): a batch carries the newest state, never a stale
one, and batches are written in order.

A batch that fails (``StateError``: disk full, file gone) fails every
request waiting (the HTTP layer answers 503, so NCS and API callers
send again) and goes back into the pending set, unless something newer
replaced it meanwhile; the next ``commit()`` writes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..store import ClientSeqRow, DesiredInputs, StateStore

__all__ = ["GroupCommit", "InputJournal", "JournalStats"]


@dataclass(slots=True)
class JournalStats:
    """What the writer did (exported as metrics; the bench reports the write cost)."""

    batches: int = 0
    records: int = 0  #: desired inputs and clientSeq records written
    failures: int = 0
    seconds: float = 0.0  #: total time inside ``save_inputs``
    largest: int = 0

    def seconds_per_batch(self) -> float:
        return self.seconds / self.batches if self.batches else 0.0


class GroupCommit:
    """What a group-committing writer shares with another: each record bumps a
    generation, ``commit()`` waits until its generation is written, and one writer
    task (``_write``, a subclass's) writes whatever is pending, batch after batch,
    waking the waiters of each batch (``_wake``)."""

    _task_name = "layoutsync-journal"

    def __init__(self) -> None:
        self._recorded = 0  #: generation of the last record
        self._durable = 0  #: every record up to this generation is written
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Records waiting for a write."""
        raise NotImplementedError

    async def commit(self) -> None:
        """Return once everything recorded so far is written; raise the store's error if not."""
        target = self._recorded
        if self._durable >= target and not len(self):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        if self._writer is None or self._writer.done():
            # A task of its own: the handlers already scheduled in this loop tick record
            # before it runs, so their events join its first batch.
            self._writer = asyncio.create_task(self._write(), name=self._task_name)
        await future

    async def _write(self) -> None:
        raise NotImplementedError

    def _wake(self, generation: int, error: BaseException | None) -> None:
        still = []
        for target, future in self._waiters:
            if target > generation:
                still.append((target, future))
            elif not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
        self._waiters = still


class InputJournal(GroupCommit):
    """The daemon's one writer of desired inputs and clientSeq records (group commit)."""

    def __init__(self, store: StateStore, *, clock: Callable[[], float] = time.perf_counter):
        super().__init__()
        self._store = store
        self._clock = clock
        self._threaded = bool(getattr(store, "commit_blocks", True))
        self._desired: dict[str, DesiredInputs] = {}
        self._seqs: dict[tuple[str, int], ClientSeqRow] = {}
        self._executor: ThreadPoolExecutor | None = None
        self.stats = JournalStats()

    def __len__(self) -> int:
        """Records waiting for a flush."""
        return len(self._desired) + len(self._seqs)

    def record(self, name: str, desired: DesiredInputs) -> None:
        self._desired[name] = desired
        self._recorded += 1

    def record_seq(self, row: ClientSeqRow) -> None:
        self._seqs[row[0], row[1]] = row
        self._recorded += 1

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        if self._executor is None and self._threaded:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="layoutsync-journal")
        while self._waiters:
            desired, seqs, generation = self._desired, self._seqs, self._recorded
            self._desired, self._seqs = {}, {}
            error: BaseException | None = None
            started = self._clock()
            try:
                if self._threaded:
                    await loop.run_in_executor(
                        self._executor, self._store.save_inputs, desired, list(seqs.values())
                    )
                else:
                    self._store.save_inputs(desired, list(seqs.values()))
            except Exception as exc:  # handed to every waiter of this batch
                error = exc
                self.stats.failures += 1
                # back into the pending set, under anything newer recorded meanwhile
                self._desired = {**desired, **self._desired}
                self._seqs = {**seqs, **self._seqs}
            else:
                count = len(desired) + len(seqs)
                self.stats.batches += 1
                self.stats.records += count
                self.stats.largest = max(self.stats.largest, count)
                self._durable = max(self._durable, generation)
            self.stats.seconds += self._clock() - started
            # after a failure every waiter hears of it (later records are pending again too)
            self._wake(self._recorded if error is not None else generation, error)
            if error is not None:
                return  # the next commit() tries again: no busy loop against a broken disk

    async def compact(self, rows: list[ClientSeqRow]) -> None:
        """Replace the saved clientSeq records by ``rows`` (the live ones), off the loop
        where a commit blocks. Any order against the batches is right: ``rows`` holds
        every record made so far, and a batch only upserts newer ones."""
        if not self._threaded:
            self._store.save_client_seqs(rows)
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="layoutsync-journal")
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self._store.save_client_seqs, rows
        )

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
