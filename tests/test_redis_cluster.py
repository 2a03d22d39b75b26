"""RedisStore and the cluster primitives (leases, fencing, rendezvous, shared bucket, wakes)
against a real redis-server (tests/_redis.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from _redis import RedisServer

from layoutsync.daemon.cluster import LeaseTable, RedisTokenBucket, rendezvous_owner
from layoutsync.errors import StateError
from layoutsync.redis_store import LeaseLost, RedisKeys, RedisStore
from layoutsync.store import Intent, SessionState, StateStore

pytestmark = pytest.mark.anyio

BODY_A = {"services": {"cloudTranscoder": {"config": {"transcoder": {"a": 1}}}}}


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[RedisStore]:
    s = RedisStore.from_url(redis_server.url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
async def aredis(redis_server: RedisServer) -> AsyncIterator[Any]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


def a_state(name: str = "hall", **changes: Any) -> SessionState:
    return dataclasses.replace(
        SessionState(name=name, instance_id=f"{name}-1", hosts=(101, 102), speaker=101), **changes
    )


def update_intent(seq: int, body_hash: str) -> Intent:
    return Intent("update", at=1.0, task_id="t1", sequence_id=seq, body=BODY_A, body_hash=body_hash)


class TestRedisStore:
    """The StateStore contract, plus what only a shared store needs."""

    def test_is_a_state_store_and_round_trips(self, store: RedisStore) -> None:
        from test_store import full_state

        assert isinstance(store, StateStore)  # the whole contract: tests/test_store.py
        assert store.load("demo") is None
        store.save(full_state())
        loaded = store.load("demo")
        assert loaded is not None and loaded.task_id == "task-1" and loaded.sequence_id == 7
        raw = store.redis.get(store.keys.state("demo"))
        assert b"rtc-SECRET" not in raw and b"hmac-sha256:" in raw  # no rtcToken at rest
        assert store.names() == ("demo",)
        store.delete("demo")
        assert store.load("demo") is None and store.names() == ()

    def test_secrets_not_in_repr(self, store: RedisStore) -> None:
        assert "SECRET" not in repr(store) and "RedisStore(" in repr(store)

    def test_unreachable_is_a_state_error(self) -> None:
        from _redis import free_port

        dead = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
        with pytest.raises(StateError, match="Redis: cannot reach Redis"):
            dead.check()
        with pytest.raises(StateError, match="Redis: cannot write session state"):
            dead.save(a_state())

    def test_damaged_row_is_a_state_error(self, store: RedisStore) -> None:
        store.redis.set(store.keys.state("hall"), b"{not json")
        with pytest.raises(StateError, match="row of session 'hall' is damaged"):
            store.load("hall")

    def test_sequence_ids_never_decrease_or_repeat_with_another_body(
        self, store: RedisStore
    ) -> None:
        store.save(a_state(task_id="t1", sequence_id=3, intent=update_intent(3, "h3")))
        store.save(a_state(task_id="t1", sequence_id=3))  # settled: the same allocation
        store.save(a_state(task_id="t1", sequence_id=3, intent=update_intent(3, "h3")))
        with pytest.raises(StateError, match="sent with another body"):
            store.save(a_state(task_id="t1", sequence_id=3, intent=update_intent(3, "other")))
        with pytest.raises(StateError, match="below 3"):
            store.save(a_state(task_id="t1", sequence_id=2, intent=update_intent(2, "h2")))
        store.save(a_state(task_id="t1", sequence_id=4, intent=update_intent(4, "h4")))
        # a new task starts over at 0
        store.save(a_state(task_id="t2", sequence_id=0, intent=update_intent(0, "x")))
        assert store.load("hall").sequence_id == 0  # type: ignore[union-attr]

    def test_events_follow_the_session_rules(self, store: RedisStore) -> None:
        store.save(a_state())  # hosts (101, 102) in the row
        store.record_event("hall", "join", 103)
        store.record_event("hall", "join", 101)  # idempotent
        store.record_event("hall", "leave", 102)
        assert store.desired("hall")[:2] == ((101, 103), 101)  # type: ignore[index]
        store.record_event("hall", "hosts", [103, 105, 101])
        store.record_event("hall", "speaker", None)
        hosts, speaker, version = store.desired("hall")  # type: ignore[misc]
        assert (hosts, speaker, version) == ((101, 103, 105), None, 5)
        loaded = store.load("hall")
        assert loaded is not None and loaded.hosts == (101, 103, 105) and loaded.speaker is None
        store.record_event("hall", "leave", 101)
        store.record_event("hall", "leave", 103)
        store.record_event("hall", "leave", 105)
        assert store.desired("hall")[0] == ()  # type: ignore[index]
        with pytest.raises(ValueError, match="unknown desired-state change"):
            store.record_event("hall", "rename", 1)

    def test_a_notification_checks_its_client_seq_with_the_change(self, store: RedisStore) -> None:
        names = ["a", "b"]
        record = store.record_notification
        assert record("ch", 7, 10, joined=True, names=names, retention=60)
        assert not record("ch", 7, 9, joined=False, names=names, retention=60)  # late leave
        assert not record("ch", 7, 10, joined=False, names=names, retention=60)
        assert record("ch", 7, 11, joined=False, names=names, retention=60)
        assert record("ch", 8, 1, joined=True, names=names, retention=60)
        assert store.desired("a")[0] == (8,) and store.desired("b")[0] == (8,)  # type: ignore[index]
        assert store.redis.pttl(store.keys.client_seq("ch", 7)) > 0  # a leave's record expires
        assert store.redis.pttl(store.keys.client_seq("ch", 8)) == -1
        rows = sorted(store.load_client_seqs())
        assert rows[0][:3] == ("ch", 7, 11) and 0 <= rows[0][3] < 1  # type: ignore[operator]
        assert rows[1] == ("ch", 8, 1, None)
        store.save_client_seqs([("other:ch", 3, 5, None), ("ch", 9, 2, 10.0), ("ch", 4, 1, 70.0)])
        assert sorted(r[:3] for r in store.load_client_seqs()) == [("ch", 9, 2), ("other:ch", 3, 5)]
        assert not record("other:ch", 3, 5, joined=False, names=names, retention=60)


class TestFencing:
    """Leases with fencing tokens: a lapsed owner can neither write nor confirm."""

    async def test_acquire_renew_release(self, store: RedisStore, aredis: Any) -> None:
        a = LeaseTable(aredis, store.keys, "a", ttl=5.0)
        b = LeaseTable(aredis, store.keys, "b", ttl=5.0)
        gained, lost, _ = await a.acquire(["s1", "s2"])
        assert gained == {"s1", "s2"} and not lost
        first = a.token("s1")
        assert first is not None and first.startswith("a|")
        gained, _, soonest = await b.acquire(["s1"])
        assert not gained and b.token("s1") is None and soonest is not None and soonest > 4
        assert (await a.acquire(["s1"]))[0] == set()  # renewed, same token
        assert a.token("s1") == first
        assert await a.release(["s1"]) == 1
        gained, _, _ = await b.acquire(["s1"])
        assert gained == {"s1"}
        fence_a, fence_b = int(first.split("|")[1]), int(b.token("s1").split("|")[1])  # type: ignore[union-attr]
        assert fence_b > fence_a  # a counter bumped on every acquisition

    async def test_a_lapsed_owner_can_neither_write_nor_confirm(
        self, store: RedisStore, aredis: Any
    ) -> None:
        a = LeaseTable(aredis, store.keys, "a", ttl=1.0)
        b = LeaseTable(aredis, store.keys, "b", ttl=5.0)
        await a.acquire(["hall"])
        token_a = a.token("hall")
        view_a = store.fenced("hall", token_a)
        view_a.save(a_state(task_id="t1", sequence_id=1))
        await a.confirm("hall", token_a)
        await asyncio.sleep(1.05)  # "paused" past the lease
        with pytest.raises(LeaseLost, match="expired on this replica's clock"):
            await a.confirm("hall", token_a)
        assert (await b.acquire(["hall"]))[0] == {"hall"}
        with pytest.raises(LeaseLost, match="another replica owns it now"):
            view_a.save(a_state(task_id="t1", sequence_id=2))
        with pytest.raises(LeaseLost):
            view_a.delete("hall")
        a.held["hall"] = dataclasses.replace(a.held["hall"], valid_until=time.monotonic() + 9)
        with pytest.raises(LeaseLost, match="taken over"):  # even a clock that lies is caught
            await a.confirm("hall", token_a)
        store.fenced("hall", b.token("hall")).save(a_state(task_id="t1", sequence_id=2))
        assert store.load("hall").sequence_id == 2  # type: ignore[union-attr]
        with pytest.raises(LeaseLost, match="not acquired"):
            store.fenced("hall", None).save(a_state())

    async def test_a_restarted_replica_with_the_same_id_takes_its_leases_back(
        self, store: RedisStore, aredis: Any
    ) -> None:
        await LeaseTable(aredis, store.keys, "a", ttl=30.0).acquire(["hall"])
        again = LeaseTable(aredis, store.keys, "a", ttl=30.0)
        assert (await again.acquire(["hall"]))[0] == {"hall"}
        assert again.token("hall") == "a|2"

    async def test_heartbeats_expire(self, store: RedisStore, aredis: Any) -> None:
        a = LeaseTable(aredis, store.keys, "a", ttl=1.0)
        b = LeaseTable(aredis, store.keys, "b", ttl=5.0)
        await a.heartbeat()
        _, live = await b.heartbeat()
        assert set(live) == {"a", "b"}
        await asyncio.sleep(1.05)
        _, live = await b.heartbeat()
        assert set(live) == {"b"}
        _, live = await b.heartbeat(leave=True)
        assert live == {}

    async def test_a_replicas_entry_lapses_with_its_last_lease_not_before(
        self, store: RedisStore, aredis: Any
    ) -> None:
        """A takeover takes one round: when the entry of a replica that died is gone, so
        are its leases (its renewals come after its heartbeat in each round)."""
        a = LeaseTable(aredis, store.keys, "a", ttl=1.0)
        b = LeaseTable(aredis, store.keys, "b", ttl=5.0)
        await a.heartbeat()
        await asyncio.sleep(0.3)  # a round's renewals run after its heartbeat
        await a.acquire(["hall"])  # ... then "a" dies
        now_ms, live = await b.heartbeat()
        lapses_ms = int(await aredis.pexpiretime(store.keys.lease("hall")))
        assert live["a"] > lapses_ms
        await asyncio.sleep((live["a"] - now_ms) / 1000 + 0.003)  # what b's next round waits
        _, live = await b.heartbeat()
        assert "a" not in live
        assert (await b.acquire(["hall"]))[0] == {"hall"}  # in the round that sees it gone


class TestRendezvous:
    def test_only_the_sessions_of_a_leaving_replica_move(self) -> None:
        names = [f"room-{i}" for i in range(3000)]
        three = {n: rendezvous_owner(n, ["r1", "r2", "r3"]) for n in names}
        counts = Counter(three.values())
        assert set(counts) == {"r1", "r2", "r3"} and min(counts.values()) > 900
        two = {n: rendezvous_owner(n, ["r1", "r3"]) for n in names}
        moved = [n for n in names if three[n] != two[n]]
        assert moved and all(three[n] == "r2" for n in moved)
        four = {n: rendezvous_owner(n, ["r1", "r2", "r3", "r4"]) for n in names}
        assert all(four[n] in (three[n], "r4") for n in names)
        assert rendezvous_owner("x", []) is None


class TestSharedBucket:
    async def test_three_takers_together_stay_under_the_rate(
        self, redis_server: RedisServer
    ) -> None:
        import redis.asyncio

        clients = [redis.asyncio.Redis.from_url(redis_server.url) for _ in range(3)]
        key = RedisKeys().bucket
        buckets = [RedisTokenBucket(c, key, qps=20.0, burst=5, margin=0) for c in clients]
        stamps: list[float] = []

        async def taker(bucket: RedisTokenBucket) -> None:
            for _ in range(10):
                await bucket.acquire()
                stamps.append(time.monotonic())

        try:
            started = time.monotonic()
            await asyncio.gather(*(taker(b) for b in buckets))
            elapsed = time.monotonic() - started
        finally:
            for c in clients:
                await c.aclose()
        assert buckets[0].burst == 1  # capped: burst + rate must fit in one second's qps
        # 30 takes at 20/s with a burst of 1: the 30th is earned after 29/20 s
        assert elapsed >= 29 / 20 - 0.05
        stamps.sort()
        for i in range(len(stamps) - 20):
            assert stamps[i + 20] - stamps[i] >= 1.0 - 0.05  # never 21 within one second

    async def test_sends_in_any_sliding_second_stay_under_the_cap(self, aredis: Any) -> None:
        bucket = RedisTokenBucket(aredis, "w:bucket", qps=10, margin=0)
        stamps: list[float] = []

        async def send() -> None:
            async with bucket.sending():  # a token already in hand: only the window decides
                stamps.append(time.monotonic())

        await asyncio.gather(*(send() for _ in range(25)))
        stamps.sort()
        assert stamps[-1] - stamps[0] >= 2.0 - 0.05  # 25 sends at 10 per second
        # stamps are taken after each admission returns: a late wake-up only adds to one
        assert all(stamps[i + 10] - stamps[i] >= 1.0 - 0.1 for i in range(len(stamps) - 10))

    async def test_sends_that_arrive_late_cannot_crowd_one_second_at_the_service(
        self, aredis: Any
    ) -> None:
        """A slot is held from a send's admission until a window after its answer: ten
        sends that take half a second to arrive (a busy CPU, a slow link) and ten admitted
        as soon as the window lets them never share a second, where counting admissions
        alone would put all twenty into one."""
        bucket = RedisTokenBucket(aredis, "late:bucket", qps=10, margin=0)
        arrived: list[float] = []

        async def send(on_the_way: float) -> None:
            async with bucket.sending():
                await asyncio.sleep(on_the_way)
                arrived.append(time.time())  # stamped by the service (Redis' clock here)

        slow = [asyncio.ensure_future(send(0.5)) for _ in range(10)]
        await asyncio.sleep(0.05)
        await asyncio.gather(*slow, *(send(0.0) for _ in range(10)))
        arrived.sort()
        assert all(arrived[i + 10] - arrived[i] > 1.0 - 0.005 for i in range(10))

    async def test_a_send_that_never_answers_holds_its_slot_for_its_flight(
        self, aredis: Any
    ) -> None:
        bucket = RedisTokenBucket(aredis, "lost:bucket", qps=1, margin=0, flight=0.4)
        dead = bucket.sending()
        await dead.__aenter__()  # admitted, then the replica died: no answer ever comes
        started = time.monotonic()
        async with bucket.sending():
            waited = time.monotonic() - started
        assert 0.4 + 1.0 - 0.05 < waited < 0.4 + 1.0 + 0.3

    async def test_paces_below_the_quota_with_a_burst_that_fits_one_second(
        self, aredis: Any
    ) -> None:
        bucket = RedisTokenBucket(aredis, "k", qps=10, burst=10)
        assert (bucket.rate, bucket.burst) == (9.5, 1)
        assert RedisTokenBucket(aredis, "k", qps=100, burst=10).burst == 5

    async def test_a_cancelled_wait_gives_the_token_back(self, aredis: Any) -> None:
        bucket = RedisTokenBucket(aredis, "t:bucket", qps=1.0, margin=0)
        await bucket.acquire()
        waiter = asyncio.ensure_future(bucket.acquire())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert 0.5 < await bucket.reserve() <= 1.0  # one ahead, not two

    async def test_the_fleets_oldest_change_is_served_first(
        self, redis_server: RedisServer
    ) -> None:
        """Two replicas' buckets: the one whose waiting change is older gets the next token,
        though the other asked first (a FIFO bucket would serve the first to ask)."""
        import redis.asyncio

        clients = [redis.asyncio.Redis.from_url(redis_server.url) for _ in range(2)]
        a, b = (RedisTokenBucket(c, "o:bucket", qps=4, margin=0) for c in clients)
        served: list[str] = []

        async def take(bucket: RedisTokenBucket, age: float, name: str) -> None:
            bucket.change.set(time.monotonic() - age)
            await asyncio.sleep(await bucket.reserve())
            served.append(name)

        try:
            await a.reserve()
            await a.reserve()  # the fleet's next slot is promised: whoever asks now waits
            young = asyncio.ensure_future(take(b, 0.1, "b young"))
            await asyncio.sleep(0.05)
            old = asyncio.ensure_future(take(a, 3.0, "a old"))
            also_old = asyncio.ensure_future(take(a, 2.0, "a older than b"))
            await asyncio.gather(young, old, also_old)
        finally:
            for c in clients:
                await c.aclose()
        assert served == ["a old", "a older than b", "b young"]

    async def test_a_stalled_holder_delays_the_others_by_at_most_its_staleness(
        self, redis_server: RedisServer
    ) -> None:
        import redis.asyncio

        clients = [redis.asyncio.Redis.from_url(redis_server.url) for _ in range(2)]
        a, b = (RedisTokenBucket(c, "s:bucket", qps=10, margin=0, stale=0.3) for c in clients)
        try:
            await b.reserve()
            await b.reserve()  # the balance below zero: the next take must wait
            assert (await a._call("take", 5.0, None))[0] == "W"  # registered, then stalls
            asked = time.monotonic()
            b.change.set(time.monotonic())
            await b.reserve()
            waited = time.monotonic() - asked
            left = await clients[0].zscore("s:bucket:waiters", a._member)
        finally:
            for c in clients:
                await c.aclose()
        assert 0.3 - 0.02 < waited < 0.3 + 0.1 + 0.1  # its staleness, then one slot at most
        assert left is None  # passed over, and out of the line until it asks again

    async def test_a_younger_change_waits_only_while_tokens_are_short(self, aredis: Any) -> None:
        a = RedisTokenBucket(aredis, "y:bucket", qps=100, burst=5)
        b = RedisTokenBucket(aredis, "y:bucket", qps=100, burst=5)
        assert a.burst == 5
        # a is granted its oldest and stays in line with its next, a minute old
        assert (await a._call("take", 90.0, 60.0))[0] == "G"
        started = time.monotonic()
        assert await b.reserve() == 0.0  # 4 tokens left: enough for a's next and b's now
        assert time.monotonic() - started < 0.1

    async def test_unreachable_is_a_state_error(self) -> None:
        import redis.asyncio
        from _redis import free_port

        client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
        try:
            with pytest.raises(StateError, match="shared rate limit"):
                await RedisTokenBucket(client, "k", 1.0).acquire()
        finally:
            await client.aclose()


class TestWake:
    async def test_an_event_wakes_a_subscriber(self, store: RedisStore, aredis: Any) -> None:
        pubsub = aredis.pubsub()
        await pubsub.subscribe(store.keys.wake)
        try:
            await pubsub.get_message(timeout=1)  # the subscribe confirmation
            store.record_event("hall", "join", 5)
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
            assert message is not None and message["data"] == b"1 hall"  # <version> <name>
        finally:
            await pubsub.aclose()
