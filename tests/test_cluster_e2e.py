"""Three ``layoutsync daemon --redis`` replicas, the emulator and redis-server as real processes.

Every wait polls with a deadline; every child is killed in ``finally``. The
lease TTL is short (``LEASE_TTL``) so takeovers happen within seconds.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from _redis import RedisServer
from test_daemon_e2e import AUTH, Child, World, spawn, spec_doc, wait_until, webhook
from test_daemon_e2e import world as world

from layoutsync.daemon.cluster import rendezvous_owner

pytestmark = pytest.mark.e2e

LEASE_TTL = 2.0
DEBOUNCE = 0.1
REPLICAS = ("r1", "r2", "r3")
SESSIONS = tuple(f"room{i}" for i in range(9))


@dataclass
class Fleet:
    tmp: Path
    redis: RedisServer
    emulator: Child
    env: dict[str, str]
    specs: Path
    replicas: dict[str, Child]

    def start(self, replica_id: str) -> Child:
        child = spawn(
            [
                "daemon",
                "--config",
                str(self.specs),
                "--listen",
                "127.0.0.1:0",
                "--redis",
                self.redis.url,
                "--replica-id",
                replica_id,
                "--lease-ttl",
                str(LEASE_TTL),
                "--debounce",
                str(DEBOUNCE),
                "--qps",
                "200",
                "--burst",
                "50",
                "--no-watch",
            ],
            self.tmp / f"{replica_id}.log",
            self.env,
            r'"url": "(http://127\.0\.0\.1:\d+)"',
        )
        self.replicas[replica_id] = child
        return child

    def join_everywhere(self, uid: int) -> None:
        """``uid`` joins every session, each sent to its owner; wait until all show it."""
        for name, owner in owners().items():
            with self.api(owner) as api:
                assert api.put(f"/v1/sessions/{name}/hosts/{uid}").status_code == 202
        self.wait_uids(SESSIONS, [uid])

    def ready(self, replica_id: str) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"{self.replicas[replica_id].url}/readyz", timeout=2)
        except httpx.TransportError:
            return None
        body = response.json()
        return body if response.status_code == 200 else None

    def api(self, replica_id: str) -> httpx.Client:
        return httpx.Client(base_url=self.replicas[replica_id].url, headers=AUTH, timeout=10)

    def emu(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.emulator.url}{path}", params=params, timeout=5)
        response.raise_for_status()
        return response.json()

    def requests(self, kind: str | None = None) -> list[dict[str, Any]]:
        params = {"kind": kind} if kind else {}
        return list(self.emu("/_emulator/requests", **params)["requests"])

    def live_tasks(self) -> list[dict[str, Any]]:
        return [t for t in self.emu("/_emulator/tasks")["tasks"] if t.get("status") != "stopped"]

    def video_uids(self, name: str) -> list[int]:
        for task in self.live_tasks():
            if task["instanceId"] == f"{name}-1":
                inputs = task["config"]["transcoder"].get("videoInputs", [])
                return sorted(item["rtc"]["rtcUid"] for item in inputs)
        return []

    def wait_uids(self, names: Any, uids: list[int], *, timeout: float = 15.0) -> float:
        """Wait until every session in ``names`` shows ``uids``; returns when (monotonic)."""
        wait_until(
            lambda: all(self.video_uids(n) == uids for n in names),
            timeout=timeout,
            what=f"{len(list(names))} sessions to show {uids}",
        )
        return time.monotonic()

    def check_invariants(self) -> None:
        """Never two live tasks for one instanceId; no sequenceId sent twice to a task."""
        per_instance = Counter(t["instanceId"] for t in self.live_tasks())
        assert all(count == 1 for count in per_instance.values()), per_instance
        sent = Counter(
            (r["path"], r["query"].get("sequenceId"))
            for r in self.requests("update")
            if r["status"] is not None
        )
        assert all(count == 1 for count in sent.values()), [k for k, c in sent.items() if c > 1]


def owners(replicas: tuple[str, ...] = REPLICAS) -> dict[str, str]:
    return {name: str(rendezvous_owner(name, replicas)) for name in SESSIONS}


@pytest.fixture
def fleet(world: World, redis_server: RedisServer) -> Iterator[Fleet]:
    """The emulator of ``test_daemon_e2e``'s world, its sessions replaced by ``SESSIONS``."""
    for old in world.specs.glob("*.json"):
        old.unlink()
    for name in SESSIONS:
        (world.specs / f"{name}.json").write_text(json.dumps(spec_doc(f"{name}-1", name)))
    fleet = Fleet(world.tmp, redis_server, world.emulator, world.env, world.specs, {})
    try:
        with ThreadPoolExecutor(len(REPLICAS)) as pool:
            list(pool.map(fleet.start, REPLICAS))
        expected = Counter(owners().values())
        wait_until(
            lambda: all(
                (ready := fleet.ready(r)) and ready["checks"]["owned"] == expected[r]
                for r in REPLICAS
            ),
            what="every replica to own its share",
        )
        yield fleet
    finally:
        for child in fleet.replicas.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGCONT)
            child.kill()


def other_than(replica_id: str) -> str:
    return next(r for r in REPLICAS if r != replica_id)


def test_sessions_spread_and_a_join_at_any_replica_is_applied_once(fleet: Fleet) -> None:
    shares = Counter(owners().values())
    assert set(shares) == set(REPLICAS)  # 9 sessions over all three
    for name, owner in owners().items():
        with fleet.api(other_than(owner)) as api:  # never the owner
            assert api.put(f"/v1/sessions/{name}/hosts/101").status_code == 202
    fleet.wait_uids(SESSIONS, [101])
    assert len(fleet.requests("create")) == len(SESSIONS)
    for name, owner in owners().items():
        with fleet.api(other_than(other_than(owner))) as api:
            assert api.put(f"/v1/sessions/{name}/hosts/102").status_code == 202
    fleet.wait_uids(SESSIONS, [101, 102])
    time.sleep(3 * DEBOUNCE + 0.3)  # a second reconcile of any session would show by now
    assert len(fleet.requests("create")) == len(SESSIONS)
    assert len(fleet.requests("update")) == len(SESSIONS)
    # a signed webhook, at a replica that owns none of the channel's sessions
    name = SESSIONS[0]
    assert webhook_to(fleet, other_than(owners()[name]), name, 103, 103, 5)["sessions"] == [name]
    assert webhook_to(fleet, owners()[name], name, 103, 103, 5)["ignored"]  # same clientSeq
    fleet.wait_uids([name], [101, 102, 103])
    fleet.check_invariants()
    for child in fleet.replicas.values():
        assert child.stop() == 0


def webhook_to(fleet: Fleet, replica_id: str, channel: str, event: int, uid: int, seq: int) -> Any:
    response = _webhook(fleet.replicas[replica_id], channel, event, uid, seq)
    assert response.status_code == 200, response.text
    return response.json()


def _webhook(child: Child, channel: str, event: int, uid: int, seq: int) -> httpx.Response:
    return webhook(child, event, uid, seq, channel=channel)


def test_sigkill_one_replica_the_others_take_over_within_the_lease(fleet: Fleet) -> None:
    fleet.join_everywhere(201)
    victim = "r2"
    orphaned = [n for n, o in owners().items() if o == victim]
    assert orphaned
    fleet.replicas[victim].process.kill()
    killed_at = time.monotonic()
    for name in orphaned:  # acknowledged while nobody owns these sessions
        with fleet.api(other_than(victim)) as api:
            assert api.put(f"/v1/sessions/{name}/hosts/202").status_code == 202
    done = fleet.wait_uids(orphaned, [201, 202], timeout=LEASE_TTL + 10)
    takeover = done - killed_at
    print(f"takeover after SIGKILL: {takeover:.2f} s (lease TTL {LEASE_TTL} s)")
    # a lease lapses at most LEASE_TTL after its last renewal; then one debounce, one Update
    assert takeover <= LEASE_TTL + DEBOUNCE + 1.5
    survivors = tuple(r for r in REPLICAS if r != victim)
    assert set(owners(survivors).values()) <= set(survivors)
    for name in SESSIONS:
        if name not in orphaned:
            assert fleet.video_uids(name) == [201]  # nothing else moved or changed
    fleet.check_invariants()


def test_a_replica_paused_past_its_lease_sends_and_writes_nothing(fleet: Fleet) -> None:
    import redis

    fleet.join_everywhere(301)
    paused = "r1"
    mine = [n for n, o in owners().items() if o == paused]
    fleet.replicas[paused].process.send_signal(signal.SIGSTOP)
    try:
        for name in mine:  # it will find these in its socket buffer (wake) when resumed
            with fleet.api(other_than(paused)) as api:
                assert api.put(f"/v1/sessions/{name}/hosts/302").status_code == 202
        fleet.wait_uids(mine, [301, 302], timeout=LEASE_TTL + 10)  # taken over meanwhile
        time.sleep(3 * DEBOUNCE)
        client = redis.Redis.from_url(fleet.redis.url)
        rows = {n: client.get(f"layoutsync:state:{n}") for n in mine}
        before = len(fleet.requests())
    finally:
        fleet.replicas[paused].process.send_signal(signal.SIGCONT)
    # it resumes believing it owns its sessions, with stale state and a pending wake
    time.sleep(LEASE_TTL)
    assert len(fleet.requests()) == before, fleet.requests()[before:]
    assert {n: client.get(f"layoutsync:state:{n}") for n in mine} == rows
    client.close()

    def rejoined() -> bool:
        ready = fleet.ready(paused)
        return bool(ready) and ready["checks"]["owned"] > 0

    wait_until(rejoined, timeout=LEASE_TTL + 10, what="the resumed replica to own a share again")
    name = mine[0]
    with fleet.api(paused) as api:
        assert api.put(f"/v1/sessions/{name}/hosts/303").status_code == 202
    fleet.wait_uids([name], [301, 302, 303])
    fleet.check_invariants()


def test_redis_down_readiness_fails_then_recovers_with_nothing_lost(fleet: Fleet) -> None:
    for name, owner in owners().items():
        with fleet.api(owner) as api:
            assert api.put(f"/v1/sessions/{name}/hosts/401").status_code == 202
            assert api.put(f"/v1/sessions/{name}/hosts/402").status_code == 202
    fleet.redis.stop()
    try:
        wait_until(
            lambda: not any(fleet.ready(r) for r in REPLICAS),
            timeout=LEASE_TTL + 5,
            what="every replica to report not ready",
        )
        with fleet.api("r1") as api:
            refused = api.put(f"/v1/sessions/{SESSIONS[0]}/hosts/499")
        assert refused.status_code == 503, refused.text  # not acknowledged: send it again
        assert refused.headers["retry-after"] == "1" and "Redis" in refused.json()["error"]
        time.sleep(1.0)
    finally:
        fleet.redis.start()
    wait_until(
        lambda: all(fleet.ready(r) for r in REPLICAS), timeout=LEASE_TTL + 10, what="recovery"
    )
    fleet.wait_uids(SESSIONS, [401, 402])  # and not 499: refused, so not kept either
    with fleet.api("r3") as api:
        for name in SESSIONS:
            assert api.delete(f"/v1/sessions/{name}/hosts/401").status_code == 202
    fleet.wait_uids(SESSIONS, [402])
    fleet.check_invariants()
