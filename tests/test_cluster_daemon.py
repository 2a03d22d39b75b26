"""A ``ClusterDaemon`` in process (emulator over ASGITransport, a real redis-server): fencing
at the write and at the send, and the ``--redis`` flags' errors."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _redis import RedisServer, free_port

from layoutsync.api.client import RetryPolicy
from layoutsync.cli import main
from layoutsync.daemon.cluster import (
    _SENDER,
    ClusterDaemon,
    ClusterSettings,
    FencedTransport,
    LeaseTable,
    build_cluster_daemon,
    rendezvous_owner,
)
from layoutsync.daemon.metrics import DaemonMetrics
from layoutsync.daemon.runtime import DaemonSettings
from layoutsync.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_CUSTOMER_KEY,
    DEFAULT_CUSTOMER_SECRET,
    EmulatorConfig,
)
from layoutsync.emulator import create_app as create_emulator
from layoutsync.redis_store import LeaseLost, RedisKeys

pytestmark = pytest.mark.anyio


def write_specs(directory: Path, *names: str) -> Path:
    directory.mkdir(exist_ok=True)
    for name in names:
        doc = {
            "instanceId": f"{name}-1",
            "input": {"channel": name, "token": "007eJxINPUTTOKEN"},
            "output": {
                "channel": f"{name}-live",
                "uid": 9000,
                "token": "007eJxOUTPUTTOKEN",
                "video": {"width": 1280, "height": 720},
            },
            "placeholderImage": "https://example.com/placeholder.png",
        }
        (directory / f"{name}.json").write_text(json.dumps(doc), encoding="utf-8")
    return directory


def make_replica(
    config: Path, redis_url: str, replica_id: str, emulator: Any, *, lease_ttl: float = 1.5
) -> ClusterDaemon:
    settings = DaemonSettings(
        config=config,
        debounce=0.01,
        concurrency=2,
        qps=1000.0,
        burst=100,
        watch=False,
        backoff_base=5.0,
        drain_timeout=2.0,
        full_gc_interval=0,
    )
    daemon = build_cluster_daemon(
        settings,
        ClusterSettings(redis_url, replica_id, lease_ttl=lease_ttl),
        metrics=DaemonMetrics(process=False),
        transport=httpx.ASGITransport(app=emulator),
        base_url="http://emulator.test",
        app_id=DEFAULT_APP_ID,
        customer_key=DEFAULT_CUSTOMER_KEY,
        customer_secret=DEFAULT_CUSTOMER_SECRET,
        retry=RetryPolicy(delays=()),
    )
    daemon.load()
    return daemon


@pytest.fixture
async def replica(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[tuple[Any, Any]]:
    emulator = create_emulator(EmulatorConfig(seed=3))
    daemon = make_replica(write_specs(tmp_path / "specs", "hall"), redis_server.url, "a", emulator)
    await daemon.start()
    emu = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url="http://e")
    try:
        yield daemon, emu
    finally:
        await daemon.aclose()
        await emu.aclose()


async def requests(emu: httpx.AsyncClient) -> list[dict[str, Any]]:
    return list((await emu.get("/_emulator/requests")).json()["requests"])


async def eventually(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def created(daemon: ClusterDaemon, emu: httpx.AsyncClient) -> Any:
    """Host 101 joins "hall" and its task is made; returns what lists the calls' kinds."""
    daemon.host_joined("hall", 101)
    await daemon.commit_inputs()  # as the HTTP layer does

    async def kinds() -> list[str]:
        return [r["kind"] for r in await requests(emu)]

    await eventually(lambda: _has(kinds(), "create"))
    return kinds


class TestStaleOwner:
    async def test_a_stale_owner_neither_writes_nor_sends(
        self, replica: tuple[ClusterDaemon, httpx.AsyncClient]
    ) -> None:
        daemon, emu = replica
        assert daemon.owned() == ("hall",)
        daemon.host_joined("hall", 101)
        await daemon.commit_inputs()  # as the HTTP layer does

        async def created() -> bool:
            return any(r["kind"] == "create" for r in await requests(emu))

        await eventually(created)

        async def idle() -> bool:  # the create's answer saved too
            return not daemon.queue.is_processing("hall") and "hall" not in daemon.queue

        await eventually(idle)
        row = daemon.redis_store.redis.get(daemon.redis_store.keys.state("hall"))
        sent = len(await requests(emu))
        # "paused": its lease loop stops, and its clock does not notice the pause either
        daemon._cluster_tasks[0].cancel()
        lease = daemon.leases.held["hall"]
        daemon.leases.held["hall"] = dataclasses.replace(lease, valid_until=time.monotonic() + 60)
        await asyncio.sleep(1.6)  # past the lease in Redis' clock
        thief = LeaseTable(daemon.redis, daemon.redis_store.keys, "b", ttl=30)
        assert (await thief.acquire(["hall"]))[0] == {"hall"}
        daemon.host_joined("hall", 102)  # an event reaches the stale owner
        await daemon.commit_inputs()  # as the HTTP layer does

        async def failed() -> bool:
            return "lease not held by this replica" in (daemon.get("hall").last_error or "")

        await eventually(failed)
        assert len(await requests(emu)) == sent  # nothing sent
        assert daemon.redis_store.redis.get(daemon.redis_store.keys.state("hall")) == row
        # the event itself was kept, for whoever owns the session
        assert daemon.redis_store.desired("hall")[0] == (101, 102)  # type: ignore[index]
        await thief.release(["hall"])

    async def test_the_plan_before_a_token_reads_the_events_of_other_replicas(
        self, replica: tuple[ClusterDaemon, httpx.AsyncClient]
    ) -> None:
        daemon, emu = replica
        kinds = await created(daemon, emu)

        class Slow:  # every token must wait: the worker plans first
            rate = 1000.0
            reserved = cancelled = 0

            async def reserve(self) -> float:
                self.reserved += 1
                return 0.05

            async def cancel(self) -> None:
                self.cancelled += 1

        slow = Slow()
        daemon.rate_limiter = slow
        daemon.redis_store.record_event("hall", "join", 102)  # as another replica records it
        await eventually(lambda: _has(kinds(), "update"))
        assert daemon.get("hall").session.hosts == (101, 102)
        # its plan saw the event (read from Redis first): one token, none given back
        assert (slow.reserved, slow.cancelled) == (1, 0)

    async def test_a_token_is_asked_for_with_the_time_of_the_change_it_serves(
        self, replica: tuple[ClusterDaemon, httpx.AsyncClient]
    ) -> None:
        """What the fleet's bucket orders its grants by (oldest change first)."""
        daemon, emu = replica
        kinds = await created(daemon, emu)
        bucket = daemon.bucket
        assert bucket is not None and daemon.rate_limiter is bucket
        asked: list[float | None] = []
        reserve = bucket.reserve

        async def noting() -> float:
            asked.append(bucket.change.get())
            return await reserve()

        bucket.reserve = noting  # type: ignore[method-assign]
        before = time.monotonic()
        daemon.host_joined("hall", 102)
        await daemon.commit_inputs()  # as the HTTP layer does
        after = time.monotonic()
        await eventually(lambda: _has(kinds(), "update"))
        assert len(asked) == 1 and asked[0] is not None and before <= asked[0] <= after

    async def test_the_transport_refuses_a_send_without_a_confirmed_lease(
        self, redis_server: RedisServer
    ) -> None:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_server.url)
        sent: list[httpx.Request] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return httpx.Response(200)

        leases = LeaseTable(client, RedisKeys(), "a", ttl=1.0)
        transport = FencedTransport(httpx.MockTransport(handler), leases)
        try:
            await leases.acquire(["hall"])
            token = leases.token("hall")
            marker = _SENDER.set(("hall", token))
            try:
                await transport.handle_async_request(httpx.Request("GET", "http://x/"))
                assert len(sent) == 1
                await asyncio.sleep(1.05)
                with pytest.raises(LeaseLost):
                    await transport.handle_async_request(httpx.Request("GET", "http://x/"))
                assert len(sent) == 1 and transport.refused == 1
            finally:
                _SENDER.reset(marker)
            # a request of no session (none in the daemon) is not the transport's business
            await transport.handle_async_request(httpx.Request("GET", "http://x/"))
            assert len(sent) == 2
        finally:
            await client.aclose()

    async def test_the_window_admission_confirms_the_lease_in_redis(
        self, redis_server: RedisServer
    ) -> None:
        """With the fleet's window, the lease is confirmed by the admission's own script:
        a lease taken over in Redis (still valid on this replica's clock) sends nothing
        and holds no slot."""
        import redis.asyncio

        from layoutsync.daemon.cluster import RedisTokenBucket

        client = redis.asyncio.Redis.from_url(redis_server.url)
        sent: list[httpx.Request] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return httpx.Response(200)

        keys = RedisKeys("window-test")
        leases = LeaseTable(client, keys, "a", ttl=30.0)
        bucket = RedisTokenBucket(client, keys.bucket, qps=10)
        transport = FencedTransport(httpx.MockTransport(handler), leases, window=bucket.sending)
        try:
            await leases.acquire(["hall"])
            marker = _SENDER.set(("hall", leases.token("hall")))
            try:
                await transport.handle_async_request(httpx.Request("GET", "http://x/"))
                assert len(sent) == 1
                await client.set(keys.lease("hall"), "b|99")  # taken over, as Redis sees it
                with pytest.raises(LeaseLost, match="taken over"):
                    await transport.handle_async_request(httpx.Request("GET", "http://x/"))
                assert len(sent) == 1 and transport.refused == 1
                assert await client.zcard(f"{keys.bucket}:sent") == 1  # the first send's only
            finally:
                _SENDER.reset(marker)
        finally:
            await client.aclose()


class TestTwoReplicas:
    async def test_events_at_the_other_replica_are_applied_once_by_the_owner(
        self, tmp_path: Path, redis_server: RedisServer
    ) -> None:
        emulator = create_emulator(EmulatorConfig(seed=5))
        specs = write_specs(tmp_path / "specs", "hall")
        ids = ("a", "b")
        owner_id = rendezvous_owner("hall", ids)
        other_id = next(i for i in ids if i != owner_id)
        owner = make_replica(specs, redis_server.url, str(owner_id), emulator, lease_ttl=5)
        other = make_replica(specs, redis_server.url, other_id, emulator, lease_ttl=5)
        emu = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url="http://e")
        try:
            await owner.start()
            await other.start()
            await eventually(lambda: _async(owner.owned() == ("hall",) and not other.owned()))
            other.host_joined("hall", 101)
            other.set_hosts("hall", [101, 102])
            other.set_speaker("hall", 102)
            await other.commit_inputs()  # as the HTTP layer does

            async def created() -> bool:
                kinds = [r["kind"] for r in await requests(emu)]
                return kinds.count("create") == 1 and owner.get("hall").session.hosts == (101, 102)

            await eventually(created)
            assert other.pending("hall")["owner"] == owner_id
            assert other.pending("hall")["ownedHere"] is False
            await other.reconcile_now("hall")  # at a non-owner: wakes the owner, sends nothing
            await asyncio.sleep(0.2)
            kinds = [r["kind"] for r in await requests(emu)]
            assert kinds.count("create") == 1 and "update" not in kinds
            assert owner.get("hall").session.speaker == 102
            # the owner stops cleanly: the other replica takes over at once
            await owner.aclose()
            await eventually(lambda: _async(other.owned() == ("hall",)))
            other.host_left("hall", 101)
            await other.commit_inputs()  # as the HTTP layer does

            async def updated() -> bool:
                return [r["kind"] for r in await requests(emu)].count("update") == 1

            await eventually(updated)
        finally:
            await owner.aclose()
            await other.aclose()
            await emu.aclose()


async def _async(value: bool) -> bool:
    return value


def _idle(daemon: ClusterDaemon) -> bool:
    return not daemon.queue.waiting() and not daemon.queue.processing


async def _has(values: Any, item: str) -> bool:
    return item in await values


class TestFlags:
    def test_replica_flags_need_redis_and_a_reachable_one(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("LAYOUTSYNC_API_TOKEN", "t")
        monkeypatch.setenv("LAYOUTSYNC_NCS_SECRET", "s")
        specs = str(write_specs(tmp_path / "specs", "hall"))
        assert main(["daemon", "--config", specs, "--replica-id", "r1"]) == 2
        assert "--replica-id needs --redis" in capsys.readouterr().err
        dead = f"redis://127.0.0.1:{free_port()}/0"
        assert main(["daemon", "--config", specs, "--redis", dead, "--lease-ttl", "0"]) == 2
        assert "lease_ttl must be > 0" in capsys.readouterr().err
        assert main(["daemon", "--config", specs, "--redis", dead]) == 1
        err = capsys.readouterr().err
        assert f"--redis {dead}: Redis: cannot reach Redis" in err and "Traceback" not in err
        assert main(["daemon", "--config", specs, "--redis", "http://nope"]) == 2
        assert "--redis" in capsys.readouterr().err


class TestDesiredReads:
    """The owner reads a session's desired inputs back from Redis only when a version newer
    than the one it read exists (its own writes, a wake); never a stale reconcile."""

    async def settled(self, daemon: ClusterDaemon, emu: httpx.AsyncClient) -> tuple[Any, list[str]]:
        """The task made and nothing left to do; (what lists the calls' kinds, the reads)."""
        kinds = await created(daemon, emu)
        await eventually(lambda: _async(_idle(daemon)))
        return kinds, self.counting(daemon)

    @staticmethod
    def counting(daemon: ClusterDaemon) -> list[str]:
        reads: list[str] = []
        read = daemon.redis_store.adesired

        async def adesired(name: str) -> Any:
            reads.append(name)
            return await read(name)

        daemon.redis_store.adesired = adesired  # type: ignore[method-assign]
        return reads

    async def test_a_session_whose_events_all_reached_its_owner_is_read_once_per_event(
        self, replica: tuple[ClusterDaemon, httpx.AsyncClient]
    ) -> None:
        daemon, emu = replica
        kinds, reads = await self.settled(daemon, emu)
        for count, uid in enumerate((102, 103), start=1):
            daemon.host_joined("hall", uid)
            await daemon.commit_inputs()

            async def sent(count: int = count) -> bool:
                return (await kinds()).count("update") == count and _idle(daemon)

            await eventually(sent)
        await asyncio.sleep(0.1)  # the replica's own wakes come back meanwhile
        # one read per event (before the token), none after it nor for the own wake
        assert reads == ["hall", "hall"]
        await daemon.reconcile_now("hall")  # nothing new since: no read
        assert reads == ["hall", "hall"]

    async def test_an_event_recorded_elsewhere_is_read_before_the_next_reconcile(
        self, replica: tuple[ClusterDaemon, httpx.AsyncClient]
    ) -> None:
        daemon, emu = replica
        kinds, reads = await self.settled(daemon, emu)
        daemon.redis_store.record_event("hall", "join", 102)  # as another replica records it
        await eventually(lambda: _has(kinds(), "update"))
        assert reads and daemon.get("hall").session.hosts == (101, 102)

    async def test_an_event_that_lands_after_its_session_was_read_is_reconciled_again(
        self, replica: tuple[ClusterDaemon, httpx.AsyncClient]
    ) -> None:
        """Without any wake (pub/sub gone): the replica's own write queues the session."""
        daemon, emu = replica
        kinds, reads = await self.settled(daemon, emu)
        wakes = daemon._cluster_tasks[1]
        assert wakes.get_name() == "layoutsync-wake"
        wakes.cancel()
        daemon.host_joined("hall", 102)  # recorded; a worker reads before it is written
        daemon._newest_version["hall"] = 10**9  # (so that it reads, and sends nothing)
        await daemon.reconcile_now("hall")
        await eventually(lambda: _async(_idle(daemon)))
        assert reads and "update" not in await kinds()
        await daemon.commit_inputs()
        await eventually(lambda: _has(kinds(), "update"))
        assert daemon.get("hall").session.hosts == (101, 102)

    async def test_a_lost_wake_subscription_forgets_what_was_read(
        self, replica: tuple[ClusterDaemon, httpx.AsyncClient]
    ) -> None:
        daemon, emu = replica
        await created(daemon, emu)
        await eventually(lambda: _async("hall" in daemon._read_version))
        daemon._read_version["hall"] = 10**9  # as if read; a lost subscription forgets it
        await daemon.redis.client_kill_filter(_type="pubsub")  # the subscription drops
        await eventually(lambda: _async("hall" not in daemon._read_version), timeout=5)


class TestWebhookOrder:
    async def test_a_webhook_lands_after_the_api_events_the_replica_took_before_it(
        self, replica: tuple[ClusterDaemon, httpx.AsyncClient]
    ) -> None:
        """The API's events wait in the group commit; a webhook taken after them is
        written after them, so a join by the API then a leave by NCS ends with the host
        gone (the other order would bring it back)."""
        from layoutsync.daemon.webhooks import parse_notification

        daemon, _ = replica
        daemon.host_joined("hall", 5)  # recorded, not yet written
        leave = {"channelName": "hall", "uid": 5, "clientSeq": 1}
        body = json.dumps({"noticeId": "n1", "productId": 1, "eventType": 104, "payload": leave})
        outcome = await daemon.notify(parse_notification(body.encode()))
        assert outcome.applied == ("hall",)
        await daemon.commit_inputs()
        assert daemon.redis_store.desired("hall") == ((), None, 2)


class TestNewEpoch:
    async def test_a_session_bound_to_a_new_lease_epoch_is_loaded_without_blocking(
        self, replica: tuple[ClusterDaemon, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from layoutsync.redis_store import RedisStore

        daemon, emu = replica
        kinds = await created(daemon, emu)
        await eventually(lambda: _async(_idle(daemon)))
        before = daemon.get("hall").session

        def blocking(*_: Any) -> Any:
            raise AssertionError("a blocking read of the row on the event loop")

        monkeypatch.setattr(RedisStore, "_read_session", blocking)
        daemon._tokens["hall"] = "an earlier epoch"  # as after a takeover
        daemon.host_joined("hall", 102)
        await daemon.commit_inputs()
        await eventually(lambda: _has(kinds(), "update"))
        session = daemon.get("hall").session
        assert session is not before and session.hosts == (101, 102)
        assert session.status().task_id == before.status().task_id  # the row, as loaded


class TestReadiness:
    async def test_a_redis_that_does_not_answer_fails_readiness_without_stalling_the_loop(
        self, replica: tuple[ClusterDaemon, httpx.AsyncClient]
    ) -> None:
        import socket

        import redis.asyncio

        daemon, _ = replica
        assert (await daemon.aready())[0] is True
        with socket.socket() as silent:  # accepts connections, never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            port = silent.getsockname()[1]
            live, daemon.redis = daemon.redis, redis.asyncio.Redis(host="127.0.0.1", port=port)
            ticks = 0

            async def ticking() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.create_task(ticking())
            try:
                ok, checks = await daemon.aready()
            finally:
                ticker.cancel()
                await daemon.redis.aclose()
                daemon.redis = live
        assert not ok and checks["store"] is False
        assert "Redis: cannot reach Redis" in checks["storeError"]
        assert ticks >= 5  # the loop went on while the probe waited (a blocking PING: 0)


class TestVersionsStartAgain:
    async def test_a_session_removed_and_added_again_reads_its_new_versions(
        self, replica: tuple[ClusterDaemon, httpx.AsyncClient]
    ) -> None:
        """Deleting a session's state deletes its desired inputs: their versions start
        again at 1. A version read before must not make the new ones look old."""
        daemon, emu = replica
        kinds = await created(daemon, emu)
        await eventually(lambda: _async(_idle(daemon)))
        daemon._read_version["hall"] = daemon._newest_version["hall"] = 50  # the old row's
        managed = daemon.get("hall")
        managed.session = daemon._build(
            managed.spec, client=daemon.client, store=daemon.redis_store, name="hall"
        )  # as a reload makes it
        daemon.redis_store.redis.delete(daemon.redis_store.keys.desired("hall"))
        daemon.redis_store.record_event("hall", "join", 102)  # version 1, as another replica
        await eventually(lambda: _has(kinds(), "update"))
        assert daemon.get("hall").session.hosts == (101, 102)  # the row seeds version 1
