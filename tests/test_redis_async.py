"""The asyncio side of the Redis store (a replica's loop never blocks on Redis): the store's
awaitable twins, the group commit of events, and the desired-input reads a replica skips,
against a real redis-server (tests/_redis.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _redis import RedisServer
from _sessionkit import make_spec

from layoutsync.apply import AsyncSession
from layoutsync.daemon.cluster import _wake_of
from layoutsync.daemon.redis_journal import RedisEventJournal
from layoutsync.errors import StateError
from layoutsync.redis_store import RedisStore
from layoutsync.store import Intent, SessionState

pytestmark = pytest.mark.anyio

BODY = {"services": {"cloudTranscoder": {"config": {"transcoder": {"a": 1}}}}}


@pytest.fixture
async def astore(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    import redis.asyncio

    aclient = redis.asyncio.Redis.from_url(redis_server.url)
    store = RedisStore.from_url(redis_server.url, aclient=aclient)
    store.redis.flushdb()
    try:
        yield store
    finally:
        store.close()
        await aclient.aclose()


def a_state(**changes: Any) -> SessionState:
    base = SessionState(name="hall", instance_id="hall-1", hosts=(101, 102), speaker=101)
    return dataclasses.replace(base, **changes)


class TestAwaitableTwins:
    async def test_asave_and_adelete_write_what_save_and_delete_write(
        self, astore: RedisStore
    ) -> None:
        intent = Intent("update", at=1.0, task_id="t1", sequence_id=3, body=BODY, body_hash="h3")
        state = a_state(task_id="t1", sequence_id=3, intent=intent)
        astore.save(state)
        synced = astore.redis.get(astore.keys.state("hall"))
        astore.delete("hall")
        assert astore.load("hall") is None
        await astore.asave(state)
        assert astore.redis.get(astore.keys.state("hall")) == synced
        with pytest.raises(StateError, match="sent with another body"):  # the same script
            await astore.asave(
                dataclasses.replace(state, intent=dataclasses.replace(intent, body_hash="x"))
            )
        await astore.adelete("hall")
        assert astore.load("hall") is None and astore.names() == ()

    async def test_a_fenced_view_refuses_an_awaited_write_without_its_lease(
        self, astore: RedisStore
    ) -> None:
        astore.redis.set(astore.keys.lease("hall"), "other|1")
        with pytest.raises(StateError, match="lease not held"):
            await astore.fenced("hall", "me|1").asave(a_state())
        assert astore.load("hall") is None

    async def test_a_store_without_an_asyncio_client_says_so(
        self, redis_server: RedisServer
    ) -> None:
        store = RedisStore.from_url(redis_server.url)
        try:
            with pytest.raises(StateError, match="no asyncio client"):
                await store.asave(a_state())
        finally:
            store.close()

    async def test_adesired_reads_what_desired_reads(self, astore: RedisStore) -> None:
        assert await astore.adesired("hall") is None
        astore.record_event("hall", "join", 7)
        assert await astore.adesired("hall") == astore.desired("hall") == ((7,), None, 1)

    async def test_an_async_session_awaits_such_a_store(self, astore: RedisStore) -> None:
        class NoBlocking(RedisStore):
            def save(self, state: SessionState) -> None:
                raise AssertionError("a blocking save on the event loop")

            def delete(self, name: str) -> None:
                raise AssertionError("a blocking delete on the event loop")

        store = NoBlocking(astore.redis, aclient=astore.aredis)
        astore.save(a_state())
        session = AsyncSession(make_spec(), client=_NoClient(), store=store, name="hall")  # type: ignore[arg-type]
        result = await session.destroy()  # no task: only the state's erase, awaited
        assert result.error is None and astore.load("hall") is None


class TestEventBatches:
    async def test_events_of_one_tick_share_one_round_trip_and_keep_their_order(
        self, astore: RedisStore
    ) -> None:
        batches: list[int] = []
        record = astore.arecord_events

        async def counting(events: Any) -> list[int]:
            batches.append(len(events))
            return await record(events)

        astore.arecord_events = counting  # type: ignore[method-assign]
        written: list[tuple[str, int]] = []
        journal = RedisEventJournal(astore, on_written=lambda n, v: written.append((n, v)))
        journal.record("hall", "join", 101)
        journal.record("hall", "join", 102)
        journal.record("lobby", "hosts", [5, 6])
        journal.record("hall", "leave", 101)
        journal.record("hall", "speaker", 102)
        await asyncio.gather(*(journal.commit() for _ in range(5)))
        assert batches == [5]
        assert written == [("hall", 1), ("hall", 2), ("lobby", 1), ("hall", 3), ("hall", 4)]
        assert astore.desired("hall") == ((102,), 102, 4)
        assert astore.desired("lobby") == ((5, 6), None, 1)
        await journal.commit()  # nothing pending: no round trip
        assert batches == [5]

    async def test_a_batch_survives_redis_forgetting_its_scripts(self, astore: RedisStore) -> None:
        astore.redis.script_flush()
        versions = await astore.arecord_events([("hall", "join", 1), ("hall", "join", 2)])
        assert versions == [1, 2] and astore.desired("hall") == ((1, 2), None, 2)

    async def test_a_failed_batch_fails_every_waiter_and_keeps_nothing_to_resend(
        self, astore: RedisStore
    ) -> None:
        """Its callers hear 503 and send again; writing it again as well would apply an
        event twice, and an event is not always a no-op the second time (below)."""
        record = astore.arecord_events
        failures = [StateError("Redis: cannot record desired-state changes: gone")]

        async def flaky(events: Any) -> list[int]:
            if failures:
                raise failures.pop()
            return await record(events)

        astore.arecord_events = flaky  # type: ignore[method-assign]
        failed: list[set[str]] = []
        journal = RedisEventJournal(astore, on_failed=failed.append)
        journal.record("hall", "join", 101)
        journal.record("lobby", "join", 7)
        results = await asyncio.gather(journal.commit(), journal.commit(), return_exceptions=True)
        assert all(isinstance(r, StateError) for r in results)
        assert len(journal) == 0 and failed == [{"hall", "lobby"}]
        assert astore.desired("hall") is None
        journal.record("hall", "join", 102)
        await journal.commit()
        assert astore.desired("hall") == ((102,), None, 1)

    async def test_an_event_applied_twice_can_reorder_the_hosts(self, astore: RedisStore) -> None:
        """Why a failed batch is not written again (found by a property test)."""
        for op, value in [("leave", 1), ("hosts", [1, 2])] * 2:
            astore.record_event("x", op, value)
        assert astore.desired("x")[0] == (2, 1)  # type: ignore[index]
        astore.redis.delete(astore.keys.desired("x"))
        for op, value in [("leave", 1), ("hosts", [1, 2])]:
            astore.record_event("x", op, value)
        assert astore.desired("x")[0] == (1, 2)  # type: ignore[index]


class TestWakeMessages:
    @pytest.mark.parametrize(
        ("text", "parsed"),
        [
            ("3 hall", (3, "hall")),
            ("12 my room", (12, "my room")),
            ("hall", (None, "hall")),
            ("3", (None, "3")),
            ("room 3", (None, "room 3")),
        ],
    )
    def test_a_wake_names_the_version_when_it_has_one(
        self, text: str, parsed: tuple[int | None, str]
    ) -> None:
        assert _wake_of(text) == parsed


class _NoClient:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"no call expected, got {name}")


class TestOwnerAddressedWakes:
    async def test_a_change_wakes_the_replica_its_lease_names_or_every_replica(
        self, astore: RedisStore
    ) -> None:
        keys = astore.keys
        pubsub = astore.aredis.pubsub()
        await pubsub.subscribe(keys.wake, keys.wake_of("r1"), keys.wake_of("r2"))
        try:
            for _ in range(3):
                await pubsub.get_message(timeout=1)  # the subscribe confirmations

            async def next_wake() -> tuple[bytes, bytes]:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
                assert message is not None
                return message["channel"], message["data"]

            astore.record_event("hall", "join", 5)  # no lease: every replica
            assert await next_wake() == (keys.wake.encode(), b"1 hall")
            astore.redis.set(keys.lease("hall"), "r1|7")
            await astore.arecord_events([("hall", "join", 6), ("hall", "leave", 5)])
            assert await next_wake() == (keys.wake_of("r1").encode(), b"2 hall")
            assert await next_wake() == (keys.wake_of("r1").encode(), b"3 hall")
            astore.redis.set(keys.lease("lobby"), "r2|1")
            record = astore.record_notification
            assert record("ch", 8, 1, joined=True, names=["hall", "lobby"], retention=60)
            assert {await next_wake(), await next_wake()} == {
                (keys.wake_of("r1").encode(), b"4 hall"),
                (keys.wake_of("r2").encode(), b"1 lobby"),
            }
            assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
        finally:
            await pubsub.aclose()


class TestLoadedSessions:
    async def test_a_view_made_from_a_loaded_session_answers_its_first_reads_from_it(
        self, astore: RedisStore
    ) -> None:
        astore.save(a_state(task_id="t1", sequence_id=4))
        astore.record_event("hall", "join", 103)
        loaded = await astore.aload_session("hall")
        assert loaded.state is not None and loaded.state.hosts == (101, 102, 103)
        assert loaded.desired is not None and loaded.desired.hosts == (101, 102, 103)
        assert loaded.state == astore.load("hall")  # what the blocking read gives

        view = astore.fenced("hall", "r1|1", loaded=loaded)
        astore.redis.delete(astore.keys.state("hall"), astore.keys.desired("hall"))
        assert view.load("hall") == loaded.state  # no read: from what was loaded
        assert view.load_desired("hall") == loaded.desired
        assert view.load("hall") is None and view.load_desired("hall") is None  # then Redis

    async def test_a_session_of_no_row_yet_loads_as_none(self, astore: RedisStore) -> None:
        loaded = await astore.aload_session("new")
        assert (loaded.state, loaded.desired) == (None, None)
        session = AsyncSession(
            make_spec(),
            client=_NoClient(),  # type: ignore[arg-type]
            store=astore.fenced("new", None, loaded=loaded),
            name="new",
        )
        assert session.status().task_id is None
