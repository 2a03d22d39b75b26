"""InputJournal: group commit, newest value wins, failures fail the waiters and are kept."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from layoutsync.daemon.journal import InputJournal
from layoutsync.errors import StateError
from layoutsync.store import DesiredInputs, MemoryStore

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[False, True], ids=["on-the-loop", "threaded"])
def store(request: pytest.FixtureRequest) -> MemoryStore:
    store = MemoryStore()
    store.commit_blocks = request.param
    return store


async def test_commit_with_nothing_recorded_returns_at_once(store: MemoryStore) -> None:
    journal = InputJournal(store)
    await journal.commit()
    assert store.input_writes == 0


async def test_concurrent_commits_share_batches_and_the_newest_value_wins(
    store: MemoryStore,
) -> None:
    journal = InputJournal(store)

    async def event(uid: int) -> None:
        journal.record("s", DesiredInputs((uid,)))
        journal.record_seq(("room", 1, uid, None))
        await journal.commit()

    await asyncio.gather(*(event(uid) for uid in range(1, 41)))
    journal.close()
    assert store.load_desired("s") == DesiredInputs((40,))
    assert [row[:3] for row in store.load_client_seqs()] == [("room", 1, 40)]
    assert 1 <= store.input_writes < 40
    assert journal.stats.batches == store.input_writes and len(journal) == 0


async def test_a_failed_batch_fails_its_waiters_and_is_written_by_the_next(
    store: MemoryStore,
) -> None:
    journal = InputJournal(store)
    real = store.save_inputs
    failures = [StateError("disk full")]

    def flaky(*args: Any) -> None:
        if failures:
            raise failures.pop()
        real(*args)

    store.save_inputs = flaky  # type: ignore[method-assign]
    journal.record("a", DesiredInputs((1,)))
    with pytest.raises(StateError, match="disk full"):
        await journal.commit()
    assert store.load_desired("a") is None and len(journal) == 1
    journal.record("b", DesiredInputs((2,)))
    await journal.commit()
    journal.close()
    assert store.load_desired("a") == DesiredInputs((1,))
    assert store.load_desired("b") == DesiredInputs((2,))
    assert journal.stats.failures == 1


async def test_compact_replaces_the_records(store: MemoryStore) -> None:
    journal = InputJournal(store)
    journal.record_seq(("room", 1, 5, None))
    await journal.commit()
    await journal.compact([("room", 2, 9, None)])
    journal.close()
    assert [row[:3] for row in store.load_client_seqs()] == [("room", 2, 9)]
