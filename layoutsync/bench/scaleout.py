"""Several replicas over Redis (issue 15): throughput, the shared quota, takeover time.

Everything is a real process on loopback: ``redis-server`` (from PATH; the
bench reports itself skipped without one), ``layoutsync emulator`` and N
``layoutsync daemon --redis`` replicas; the bench drives them over HTTP.

throughput
    The same trace against 1 and against 3 replicas, the rate limit lifted
    (``--qps 100000``; the emulator has none), events sent round-robin to
    every replica: every session gets one join (a change), and the round
    ends when the emulator has counted one Update per session; ``rounds``
    rounds. events/s = changes applied / seconds; the ratio 3 vs 1 is the
    figure (goal >= 2.5x). On a machine with fewer cores than processes
    (3 replicas + emulator + Redis + this driver) the replicas share the
    cores, and the ratio says so: ``cores`` is in the details. Then the
    same stack takes ``paced_rate`` events/s *per replica* for
    ``paced_seconds`` (1 replica: that rate, 3: three times it), below
    what the machine can serve: the replicas' CPU per event at an equal load
    each (their idle cost taken out) gives ``3 * cpu(1) / cpu(3)``, the ratio
    with a core per replica, and Redis' CPU per event the fleet's ceiling.
quota
    ``sessions`` sessions with a task each (made first with the limit
    lifted), then 3 replicas restarted with ``--qps Q`` (one bucket in
    Redis for all three) and the emulator with ``--qps Q`` too (a 429 would
    show any excess). Events arrive at ``overload`` x Q per second for
    ``seconds``, each a change of a random session. Measured from the
    emulator's request log: the most requests in any 1-second window
    (calendar seconds, goal <= Q), every session converged after the load,
    Updates sent / sessions changed, and the p99 of event -> the first
    Update of its session that reached the emulator after the event was
    acknowledged, against the queueing bound (sessions changed / Q, what a
    session waits behind every other changed one), goal <= 1.2x.
takeover
    SIGKILL one of three replicas, then change each of its sessions (at the
    survivors): seconds from the signal until the emulator answered the last
    Update carrying those changes (its request log), goal <= lease TTL + one
    debounce window; ``takeover_runs`` runs, each replica killed in turn and
    started again after. The details split each run at the moment the
    victim's leases lapsed in Redis (its last renewal + TTL).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import math
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from . import BenchOptions, Figure

__all__ = ["FULL", "QUICK", "Scale", "run"]

API_TOKEN = "bench-scaleout-token"
NCS_SECRET = "bench-scaleout-ncs"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
DEBOUNCE = 0.2
START_TIMEOUT = 60.0
IDLE_SECONDS = 3.0  #: how long the replicas' idle CPU is measured before the rounds


@dataclass(frozen=True, slots=True)
class Scale:
    throughput_sessions: int
    rounds: int
    quota_sessions: int
    qps: float
    overload: float
    seconds: float
    lease_ttl: float
    takeover_runs: int = 3
    paced_rate: float = 40.0  #: events/s per replica in the equal-load phase
    paced_seconds: float = 30.0


FULL = Scale(
    throughput_sessions=300,
    rounds=3,
    quota_sessions=1000,
    qps=10,
    overload=10,
    seconds=60,
    lease_ttl=10,
)
QUICK = Scale(
    throughput_sessions=90,
    rounds=2,
    quota_sessions=60,
    qps=10,
    overload=10,
    seconds=6,
    lease_ttl=2,
    paced_rate=20,
    paced_seconds=5,
)


def run(options: BenchOptions) -> list[Figure]:
    scale = QUICK if options.quick else FULL
    if shutil.which("redis-server") is None:
        return [
            Figure(
                "scaleout",
                "skipped",
                0,
                "",
                details={"reason": "redis-server not on PATH (apt-get install -y redis-server)"},
            )
        ]
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="layoutsync-scaleout-") as tmp:
        root = Path(tmp)
        figures += _throughput(root / "throughput", scale)
        figures += _quota(root / "quota", scale)
        figures += _takeover(root / "takeover", scale)
    return figures


# --- processes --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def stop(self, sig: int = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _spawn(args: list[str], log: Path, env: dict[str, str], pattern: str | None) -> _Child:
    with log.open("ab") as handle:
        process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env)
    child = _Child(process, log)
    if pattern is None:
        return child
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        text = log.read_text(errors="replace")
        found = re.findall(pattern, text)
        if found:
            child.url = found[-1]
            return child
        if process.poll() is not None or time.monotonic() > deadline:
            child.stop(9)
            raise RuntimeError(f"{args[:4]} did not start:\n{text[-2000:]}")
        time.sleep(0.05)


@dataclass
class _Stack:
    """redis-server, the emulator and the replicas of one phase."""

    root: Path
    sessions: int
    emulator_qps: float | None = None
    redis_port: int = field(default_factory=_free_port)
    children: list[_Child] = field(default_factory=list)
    replicas: dict[str, _Child] = field(default_factory=dict)
    emulator: _Child | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def specs(self) -> Path:
        return self.root / "specs"

    def start(self) -> _Stack:
        self.root.mkdir(parents=True, exist_ok=True)
        self.specs.mkdir(exist_ok=True)
        for i in range(self.sessions):
            (self.specs / f"s{i}.json").write_text(json.dumps(_spec(i)))
        redis = shutil.which("redis-server") or "redis-server"
        args = [redis, "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.root), "--appendonly", "yes", "--save", ""]
        self.children.append(_spawn(args, self.root / "redis.log", dict(os.environ), None))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAYOUTSYNC_")}
        emulator = [sys.executable, "-m", "layoutsync", "emulator", "--port", "0"]
        emulator += ["--customer-key", "bench-key", "--customer-secret", "bench-secret"]
        if self.emulator_qps:
            emulator += ["--qps", str(self.emulator_qps)]
        self.emulator = _spawn(
            emulator, self.root / "emulator.log", env, r"listening on (http://127\.0\.0\.1:\d+)"
        )
        self.children.append(self.emulator)
        from ..emulator import DEFAULT_APP_ID

        env.update(
            LAYOUTSYNC_BASE_URL=self.emulator.url,
            LAYOUTSYNC_APP_ID=DEFAULT_APP_ID,
            LAYOUTSYNC_CUSTOMER_KEY="bench-key",
            LAYOUTSYNC_CUSTOMER_SECRET="bench-secret",
            LAYOUTSYNC_API_TOKEN=API_TOKEN,
            LAYOUTSYNC_NCS_SECRET=NCS_SECRET,
        )
        self.env = env
        return self

    def start_replicas(self, count: int, *, qps: float, lease_ttl: float) -> None:
        for replica in list(self.replicas.values()):
            replica.stop()
        self.replicas.clear()
        for i in range(count):
            self.start_replica(f"r{i + 1}", qps=qps, lease_ttl=lease_ttl)
        _wait(lambda: self.owned() == self.sessions, START_TIMEOUT, "replicas to own all sessions")

    def start_replica(self, rid: str, *, qps: float, lease_ttl: float) -> None:
        args = [sys.executable, "-m", "layoutsync", "daemon", "--config", str(self.specs)]
        port = _free_port()
        args += ["--listen", f"127.0.0.1:{port}", "--redis", self.redis_url]
        args += ["--replica-id", rid]
        args += ["--lease-ttl", str(lease_ttl), "--debounce", str(DEBOUNCE)]
        args += ["--qps", str(qps), "--burst", str(max(1, int(qps))), "--no-watch"]
        args += ["--log-level", "warning", "--resync", "3600"]
        with (self.root / f"{rid}.log").open("ab") as handle:
            process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=self.env)
        child = _Child(process, self.root / f"{rid}.log", f"http://127.0.0.1:{port}")
        self.replicas[rid] = child
        self.children.append(child)

    def owned(self) -> int:
        total = 0
        for child in self.replicas.values():
            try:
                response = httpx.get(f"{child.url}/readyz", timeout=5)
            except httpx.HTTPError:
                return -1
            if response.status_code != 200:
                return -1
            total += int(response.json()["checks"]["owned"])
        return total

    def emu(self, path: str) -> Any:
        assert self.emulator is not None
        response = httpx.get(f"{self.emulator.url}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def calls(self, kind: str) -> int:
        return sum(int(v) for v in self.emu("/_emulator/stats")["calls"].get(kind, {}).values())

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()


@contextlib.contextmanager
def _stack(root: Path, sessions: int, emulator_qps: float | None = None) -> Iterator[_Stack]:
    stack = _Stack(root, sessions, emulator_qps)
    try:
        yield stack.start()
    finally:
        stack.stop()


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _spec(i: int) -> dict[str, Any]:
    return {
        "instanceId": f"s{i}-1",
        "input": {"channel": f"ch{i}", "token": "007eJxBENCHINPUT"},
        "output": {
            "channel": f"ch{i}-live",
            "uid": 9000,
            "token": "007eJxBENCHOUTPUT",
            "video": {"width": 1280, "height": 720},
        },
        "placeholderImage": "https://example.com/placeholder.png",
    }


async def _send(urls: list[str], events: list[tuple[str, int]], concurrency: int = 32) -> None:
    """PUT each (session, uid) join, round-robin over ``urls``; all must be acknowledged."""
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as client:

        async def one(index: int, name: str, uid: int) -> None:
            async with semaphore:
                url = urls[index % len(urls)]
                response = await _request(client, "PUT", f"{url}/v1/sessions/{name}/hosts/{uid}")
                if response.status_code != 202:
                    raise RuntimeError(f"event not acknowledged: {response.text}")

        await asyncio.gather(*(one(i, n, u) for i, (n, u) in enumerate(events)))


async def _request(client: httpx.AsyncClient, method: str, url: str) -> httpx.Response:
    """One event; sent again on a connection error (a join or leave is idempotent, and a
    kept-alive connection may be closed by the server just as it is reused)."""
    for attempt in range(3):
        try:
            return await client.request(method, url)
        except httpx.TransportError:
            if attempt == 2:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")


# --- throughput ---------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float | None:
    """A process's CPU time so far (user + system), from /proc; None where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fleet_cpu(stack: _Stack) -> float | None:
    times = [_cpu_seconds(child.process.pid) for child in stack.replicas.values()]
    return None if None in times else sum(t for t in times if t is not None)


def _throughput(root: Path, scale: Scale) -> list[Figure]:
    """Events/s of 1 and of 3 replicas on the same rounds, and the replicas' CPU per event.

    On a machine with fewer cores than processes the events/s measure the
    machine. The CPU the replicas spend per event does not, once what they
    spend idle (leases, heartbeats, measured over ``IDLE_SECONDS`` before the
    rounds) is taken out, and once each replica carries the same load: at
    saturation CPU per event depends on how far each one is starved (a
    starved replica batches more), so it is measured at ``paced_rate``
    events/s per replica. ``3 * cpu(1) / cpu(3)`` is then the ratio three
    replicas would reach with a core each (Redis, the emulator and the sender
    elsewhere, as in production), up to Redis' own ceiling.
    """
    rates: dict[int, float] = {}
    busy_ms: dict[int, float] = {}  # at saturation (the rounds)
    paced_ms: dict[int, float] = {}  # at an equal load per replica
    redis_ms: dict[int, float] = {}
    idle_shares: dict[int, float] = {}
    for count in (1, 3):
        with _stack(root / f"x{count}", scale.throughput_sessions) as stack:
            stack.start_replicas(count, qps=100_000, lease_ttl=10)
            urls = [c.url for c in stack.replicas.values()]
            names = [f"s{i}" for i in range(scale.throughput_sessions)]
            asyncio.run(_send(urls, [(n, 100) for n in names]))  # every task made, not timed
            total = len(names)
            _wait(lambda t=total: stack.calls("create") >= t, 300, "the first creates")
            idle = _Meter(stack)
            time.sleep(IDLE_SECONDS)
            idle_share = idle.cores()  # the fleet idle
            rounds = _Meter(stack)
            for r in range(scale.rounds):
                asyncio.run(_send(urls, [(n, 101 + r) for n in names]))
                want = len(names) * (r + 1)
                _wait(lambda want=want: stack.calls("update") >= want, 300, "a round of updates")
            events = len(names) * scale.rounds
            rates[count] = events / rounds.seconds()
            if idle_share is not None:
                busy_ms[count] = rounds.busy_ms_per_event(events, idle_share)
            paced = _Meter(stack)
            before = stack.calls("update")
            sent = asyncio.run(
                _paced(urls, names, scale.paced_rate * count, scale.paced_seconds, 1000)
            )
            want = before + sent
            _wait(lambda want=want: stack.calls("update") >= want, 300, "the paced updates")
            if idle_share is not None:
                idle_shares[count] = idle_share
                paced_ms[count] = paced.busy_ms_per_event(sent, idle_share)
                redis_ms[count] = paced.redis_ms_per_event(sent)
    ratio = rates[3] / rates[1]
    cpu_details: dict[str, float | int | str] = {}
    if len(paced_ms) == 2:
        cpu_details = {
            "replica_cpu_ms_per_event_1": round(paced_ms[1], 3),
            "replica_cpu_ms_per_event_3": round(paced_ms[3], 3),
            "paced_events_per_s_per_replica": scale.paced_rate,
            # three replicas on a core each, the rest of the stack elsewhere
            "ratio_with_a_core_per_replica": round(3 * paced_ms[1] / paced_ms[3], 2),
            "redis_cpu_ms_per_event_3": round(redis_ms[3], 3),
            "redis_ceiling_events_per_s": round(1000 / redis_ms[3]) if redis_ms[3] > 0 else 0,
            "saturated_cpu_ms_per_event_1": round(busy_ms[1], 3),
            "saturated_cpu_ms_per_event_3": round(busy_ms[3], 3),
            "idle_cores_1": round(idle_shares[1], 3),
            "idle_cores_3": round(idle_shares[3], 3),
        }
    return [
        Figure("scaleout", "throughput_1_replica", rates[1], "events/s"),
        Figure("scaleout", "throughput_3_replicas", rates[3], "events/s"),
        Figure(
            "scaleout",
            "throughput_ratio",
            ratio,
            "x",
            goal=">= 2.5",
            ok=ratio >= 2.5,
            details={
                "cores": os.cpu_count() or 0,
                "sessions": scale.throughput_sessions,
                **cpu_details,
            },
        ),
    ]


class _Meter:
    """CPU seconds of the replicas and of Redis, and wall seconds, from its making on."""

    def __init__(self, stack: _Stack) -> None:
        self._stack = stack
        self._started = time.perf_counter()
        self._fleet = _fleet_cpu(stack)
        self._redis = _cpu_seconds(stack.children[0].process.pid)

    def seconds(self) -> float:
        return time.perf_counter() - self._started

    def cores(self) -> float | None:
        """The replicas' CPU per wall second so far (None without /proc)."""
        now = _fleet_cpu(self._stack)
        if now is None or self._fleet is None:
            return None
        return (now - self._fleet) / self.seconds()

    def busy_ms_per_event(self, events: int, idle_cores: float) -> float:
        now = _fleet_cpu(self._stack)
        assert now is not None and self._fleet is not None
        return (now - self._fleet - idle_cores * self.seconds()) / events * 1000

    def redis_ms_per_event(self, events: int) -> float:
        now = _cpu_seconds(self._stack.children[0].process.pid)
        if now is None or self._redis is None:
            return 0.0
        return (now - self._redis) / events * 1000


async def _paced(
    urls: list[str], names: list[str], rate: float, seconds: float, first_uid: int
) -> int:
    """Joins at ``rate``/s for ``seconds``, session after session, round-robin over ``urls``
    (each a change: a new uid); how many were sent, every one acknowledged."""
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as client:
        tasks: list[asyncio.Task[httpx.Response]] = []
        started = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - started) < seconds:
            while sent < int(elapsed * rate):
                name, uid = names[sent % len(names)], first_uid + sent // len(names)
                url = f"{urls[sent % len(urls)]}/v1/sessions/{name}/hosts/{uid}"
                tasks.append(asyncio.create_task(_request(client, "PUT", url)))
                sent += 1
            await asyncio.sleep(0.005)
        for response in await asyncio.gather(*tasks):
            if response.status_code != 202:
                raise RuntimeError(f"event not acknowledged: {response.text}")
    return sent


# --- quota --------------------------------------------------------------------------------------


def _quota(root: Path, scale: Scale) -> list[Figure]:
    names = [f"s{i}" for i in range(scale.quota_sessions)]
    with _stack(root, scale.quota_sessions, emulator_qps=None) as stack:
        stack.start_replicas(3, qps=100_000, lease_ttl=scale.lease_ttl)
        urls = [c.url for c in stack.replicas.values()]
        asyncio.run(_send(urls, [(n, 100) for n in names]))
        _wait(lambda: stack.calls("create") >= len(names), 600, "the tasks to exist")
        time.sleep(DEBOUNCE * 3)
        stack.start_replicas(3, qps=scale.qps, lease_ttl=scale.lease_ttl)
        assert stack.emulator is not None
        httpx.delete(f"{stack.emulator.url}/_emulator/requests", timeout=10)
        # the emulator holds the quota too (a token bucket, burst = qps): a 429 shows excess
        httpx.patch(f"{stack.emulator.url}/_emulator/config", json={"qps": scale.qps}, timeout=10)
        rate = scale.qps * scale.overload
        load_started = time.time()
        events, changed = asyncio.run(_overload(urls_of(stack), names, rate, scale.seconds))
        load_ended = time.time()
        load_average = os.getloadavg()[0]
        bound = len(changed) / scale.qps
        _wait(
            lambda: _converged(stack, changed),
            bound * 3 + 60,
            "every changed session to converge",
        )
        converged_at = time.time()
        log = stack.emu("/_emulator/requests")["requests"]
        tasks = stack.emu("/_emulator/tasks")["tasks"]
    sent = [r for r in log if r["kind"] in ("update", "create", "acquire", "query", "delete")]
    per_second = Counter(math.floor(r["time"]) for r in sent)
    peak = max(per_second.values()) if per_second else 0
    too_many = sum(1 for r in sent if r["status"] == 429)
    updates = [r for r in sent if r["kind"] == "update"]
    latencies, absorbed = _latencies(events, updates, tasks)
    p99 = _percentile(latencies, 0.99)
    return [
        Figure(
            "scaleout",
            "quota_peak_requests_per_s",
            peak,
            "req/s",
            goal=f"<= {scale.qps:g}",
            ok=peak <= scale.qps and too_many == 0,
            details={
                "replicas": 3,
                "requests": len(sent),
                "status_429": too_many,
                "load_average_1m": round(load_average, 1),
            },
        ),
        Figure(
            "scaleout",
            "quota_updates_per_changed_session",
            len(updates) / max(1, len(changed)),
            "updates",
            details={
                "events": len(events),
                "sessions_changed": len(changed),
                "events_per_s_asked": rate,
                "events_per_s_achieved": round(len(events) / (load_ended - load_started), 1),
            },
        ),
        Figure(
            "scaleout",
            "quota_p99_event_to_call",
            p99,
            "s",
            goal=f"<= 1.2 x queueing bound ({bound:.1f} s)",
            ok=p99 <= 1.2 * bound,
            details={
                "queueing_bound_s": round(bound, 2),
                "p50_s": round(_percentile(latencies, 0.5), 2),
                "p90_s": round(_percentile(latencies, 0.9), 2),
                "load_seconds": round(load_ended - load_started, 1),
                "ratio_to_bound": round(p99 / bound, 3) if bound else 0,
                "converged_after_load_s": round(converged_at - load_ended, 1),
                "events_absorbed": absorbed,
            },
        ),
    ]


def urls_of(stack: _Stack) -> list[str]:
    return [c.url for c in stack.replicas.values()]


async def _overload(
    urls: list[str], names: list[str], rate: float, seconds: float
) -> tuple[list[tuple[float, str]], set[str]]:
    """Changes at ``rate``/s for ``seconds``; returns (acknowledged at, session) and the set."""
    rng = random.Random(15)
    hosts: dict[str, list[int]] = {n: [100] for n in names}
    events: list[tuple[float, str]] = []
    next_uid = 1000
    # At most 64 events in flight: a driver that opened a connection per late event would
    # starve the replicas it measures. ``achieved`` in the figure says what was sent.
    semaphore = asyncio.Semaphore(64)
    timeout = httpx.Timeout(30.0, pool=None)
    async with httpx.AsyncClient(headers=AUTH, timeout=timeout) as client:
        pending: set[asyncio.Task[None]] = set()

        async def one(url: str, name: str, method: str, uid: int) -> None:
            async with semaphore:
                response = await _request(client, method, f"{url}/v1/sessions/{name}/hosts/{uid}")
            if response.status_code != 202:
                raise RuntimeError(f"event not acknowledged: {response.text}")
            events.append((time.time(), name))

        started = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate)
            while n < due and len(pending) < 256:
                name = rng.choice(names)
                current = hosts[name]
                if len(current) > 3:
                    uid, method = current.pop(1), "DELETE"
                else:
                    next_uid += 1
                    uid, method = next_uid, "PUT"
                    current.append(uid)
                task = asyncio.create_task(one(urls[n % len(urls)], name, method, uid))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
            await asyncio.sleep(0.005)
        if pending:
            await asyncio.gather(*pending)
    return events, {name for _, name in events}


def _converged(stack: _Stack, changed: set[str]) -> bool:
    """Every replica idle on its sessions: no owned session queued, running or pending."""
    for child in stack.replicas.values():
        response = httpx.get(f"{child.url}/v1/sessions", headers=AUTH, timeout=30)
        for item in response.json()["sessions"]:
            pending = item["pending"]
            if pending.get("ownedHere") and (
                pending["changes"] or pending["queued"] or pending["running"]
            ):
                return False
    return True


def _latencies(
    events: list[tuple[float, str]], updates: list[dict[str, Any]], tasks: list[dict[str, Any]]
) -> tuple[list[float], int]:
    """Event -> the first Update of its session's task that reached the emulator after the
    event was acknowledged; (latencies, events that needed no call of their own).

    An Update already in flight when the event came counts as carrying it: an error of
    one reconcile (milliseconds) against waits of seconds.
    """
    session_of = {t["taskId"]: t["instanceId"].rsplit("-", 1)[0] for t in tasks}
    by_session: dict[str, list[float]] = {}
    for update in updates:
        name = session_of.get(update["path"].rsplit("/", 1)[-1])
        if name is not None:
            by_session.setdefault(name, []).append(float(update["time"]))
    latencies: list[float] = []
    absorbed = 0
    for at, name in events:
        times = sorted(by_session.get(name, ()))
        index = bisect.bisect_left(times, at)
        if index == len(times):
            absorbed += 1  # undone by a later event before any call (a join then its leave)
        else:
            latencies.append(times[index] - at)
    return latencies, absorbed


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- takeover -----------------------------------------------------------------------------------


def _takeover(root: Path, scale: Scale) -> list[Figure]:
    """SIGKILL each replica in turn (restarted after), measured from the emulator's log."""
    import redis

    from ..daemon.cluster import rendezvous_owner

    sessions = 30
    names = [f"s{i}" for i in range(sessions)]
    took: list[float] = []
    expiries: list[float] = []
    counts: list[int] = []
    with _stack(root, sessions) as stack:
        stack.start_replicas(3, qps=100_000, lease_ttl=scale.lease_ttl)
        asyncio.run(_send(urls_of(stack), [(n, 100) for n in names]))
        _wait(lambda: stack.calls("create") >= sessions, 120, "the tasks to exist")
        client = redis.Redis.from_url(stack.redis_url)
        try:
            for run in range(scale.takeover_runs):
                time.sleep(DEBOUNCE * 3 + run * 0.37 % (scale.lease_ttl / 3))
                victim = f"r{run % 3 + 1}"
                orphaned = [n for n in names if rendezvous_owner(n, stack.replicas) == victim]
                survivors = [c.url for r, c in stack.replicas.items() if r != victim]
                before = stack.calls("update")
                # when the victim's leases lapse (its last renewal + TTL), in Redis' clock
                lapse = max(int(client.pexpiretime(f"layoutsync:lease:{n}")) for n in orphaned)
                killed = time.time()
                stack.replicas[victim].stop(9)
                asyncio.run(_send(survivors, [(n, 200 + run) for n in orphaned]))
                want = before + len(orphaned)
                _wait(
                    lambda want=want: stack.calls("update") >= want,
                    scale.lease_ttl * 3 + 30,
                    "the takeover",
                )
                ids = {f"{n}-1" for n in orphaned}
                moved = {
                    t["taskId"]
                    for t in stack.emu("/_emulator/tasks")["tasks"]
                    if t["instanceId"] in ids
                }
                answered = [
                    float(r["time"])
                    for r in stack.emu("/_emulator/requests")["requests"]
                    if r["kind"] == "update"
                    and r["path"].rsplit("/", 1)[-1] in moved
                    and float(r["time"]) > killed
                ]
                took.append(max(answered) - killed)
                counts.append(len(orphaned))
                expiries.append(lapse / 1000 - killed)
                stack.start_replica(victim, qps=100_000, lease_ttl=scale.lease_ttl)
                _wait(lambda: stack.owned() == sessions, START_TIMEOUT, "the victim's return")
        finally:
            client.close()
    goal = scale.lease_ttl + DEBOUNCE
    worst = max(took)
    return [
        Figure(
            "scaleout",
            "takeover_after_sigkill",
            worst,
            "s",
            goal=f"<= lease TTL + debounce ({goal:g} s)",
            ok=worst <= goal,
            details={
                "lease_ttl": scale.lease_ttl,
                "runs_s": _spaced(took),
                "lease_lapsed_after_kill_s": _spaced(expiries),
                "after_the_lapse_s": _spaced([t - e for t, e in zip(took, expiries, strict=True)]),
                "sessions_moved": " ".join(map(str, counts)),
            },
        )
    ]


def _spaced(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)
