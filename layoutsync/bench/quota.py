"""The daemon at the vendor's quota: sessions that change faster than the quota serves them.

Issue 16's run as a benchmark. The emulator runs in its own process with
its rate limit equal to the daemon's ``--qps`` (a token bucket, burst =
qps); the daemon runs in this process with its defaults (pacing 5 % below
``--qps``, burst 1, debounce 0.2 s) and the real HTTP transport. Each
scenario gives N sessions four hosts each, then sends join/leave events at
``overload`` times ``qps`` for a while: far more events than Updates, so
sessions wait their turn and their events merge. Full run: 300 sessions
with 16 workers, then 50 sessions with 16 and with 2 workers (the case
where compiling before waiting for a token cost most), at ``--qps 10``
and 5x overload; ``--quick`` runs 30 sessions at ``--qps 20``, 3x.

Measured per scenario:

- staleness: from an event to the moment the request that carries it
  leaves the daemon (a probe between the rate limiter and the network, as
  in ``bench daemon``), p50 and p99;
- the ideal bound, from the same run: a scheduler that serves N dirty
  sessions oldest-first with one Update per token reads each session once
  per ``N / rate`` seconds at least, so none of its events waits longer
  than that. ``ratio`` is p99 over that bound at the
  daemon's pacing rate (the scheduling, the goal is <= 1.05); ``ratio_at_quota``
  is the same against ``N / qps`` (what the 5 % margin costs on top);
- stale on arrival: the share of Updates whose hosts were already out of
  date when they left (an event came between reading and sending);
- requests per 1-s window, the most in any window: as they arrived (the
  emulator's own request log, as the vendor counts them) and as they left
  the daemon (the probe); and the 429s the emulator answered;
- Updates per changed session and events per Update;
- convergence: from the last event to the last request that still carried
  one of them.

Every event changes desired state: a fresh uid joins, or a host already
shown leaves (so no join is cancelled by its leave before any request
shows it), and each is served by exactly one request.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from ..emulator.process import run_emulator
from . import BenchOptions, Figure, quiet_logs
from .daemon import _Probe, _spec

__all__ = ["FULL", "GOAL_RATIO", "QUICK", "Load", "Scenario", "run"]

GOAL_RATIO = 1.05
DEBOUNCE = 0.2
HOSTS = (1, 2, 3, 4)


@dataclass(frozen=True, slots=True)
class Scenario:
    sessions: int
    concurrency: int
    seconds: float  #: how long the events come


@dataclass(frozen=True, slots=True)
class Load:
    qps: float
    overload: float  #: events per second, as a multiple of qps
    scenarios: tuple[Scenario, ...]
    seed: int = 16


FULL = Load(
    qps=10.0,
    overload=5.0,
    scenarios=(Scenario(300, 16, 60.0), Scenario(50, 16, 30.0), Scenario(50, 2, 30.0)),
)
QUICK = Load(qps=20.0, overload=3.0, scenarios=(Scenario(30, 16, 8.0), Scenario(30, 2, 8.0)))


def run(options: BenchOptions) -> list[Figure]:
    load = QUICK if options.quick else FULL
    with quiet_logs(), _emulator_process(load.qps) as base_url:
        results = asyncio.run(_run(load, base_url))
    figures = []
    for scenario, result in zip(load.scenarios, results, strict=True):
        name = f"s{scenario.sessions}_c{scenario.concurrency}"
        details: dict[str, float | int | str] = {
            "sessions": scenario.sessions,
            "concurrency": scenario.concurrency,
            "qps": load.qps,
            "overload": load.overload,
            **result,
        }
        figures.append(
            Figure(
                "quota",
                f"{name}.staleness_p99_ratio",
                result["ratio"],
                "x",
                goal=f"<= {GOAL_RATIO:g} x the ideal bound (N / rate)",
                ok=result["ratio"] <= GOAL_RATIO and result["unserved"] == 0,
                details=details,
            )
        )
        figures.append(
            Figure(
                "quota",
                f"{name}.too_many_requests",
                result["too_many_requests"],
                "429s",
                goal="0",
                ok=result["too_many_requests"] == 0,
                details={
                    "max_requests_per_1s": result["max_requests_per_1s"],
                    "max_sent_per_1s": result["max_sent_per_1s"],
                },
            )
        )
    return figures


# --- the run --------------------------------------------------------------------------------


class _QuotaProbe(_Probe):
    """``bench daemon``'s probe, also counting Updates and those stale when they leave."""

    def __init__(self, transport: Any, hosts: dict[str, set[int]]) -> None:
        super().__init__(transport, 0.0)
        self._hosts = hosts
        self.updates = 0
        self.stale_updates = 0
        self.last_served = 0.0
        self.sent: list[float] = []  #: when each request left the daemon (while measuring)

    async def _handle(self, request: Any) -> Any:
        if self.measuring:
            self.sent.append(time.perf_counter())
            self.updates += request.method == "PATCH"
        return await super()._handle(request)

    def _serve(self, instance: str, now: float, content: bytes) -> None:
        served = len(self.latencies)
        super()._serve(instance, now, content)
        if len(self.latencies) > served:
            self.last_served = now
        transcoder = orjson.loads(content)["services"]["cloudTranscoder"]["config"]["transcoder"]
        sent = {item["rtc"]["rtcUid"] for item in transcoder.get("videoInputs", ())}
        if sent != self._hosts.get(instance):
            self.stale_updates += 1


async def _run(load: Load, base_url: str) -> list[dict[str, Any]]:
    from ..daemon.config import SpecCatalog
    from ..daemon.metrics import DaemonMetrics
    from ..daemon.runtime import Daemon, DaemonSettings, build_client
    from ..emulator import DEFAULT_APP_ID, DEFAULT_CUSTOMER_KEY, DEFAULT_CUSTOMER_SECRET
    from ..store import SqliteStore

    rng = random.Random(load.seed)
    workdir = Path(tempfile.mkdtemp(prefix="layoutsync-bench-quota-"))
    hosts: dict[str, set[int]] = {}
    next_uid: dict[str, int] = {}
    # what the probe learns from Acquire/Create answers outlives one daemon: a scenario that
    # reuses the sessions of the one before sends Updates to tasks made then
    known_tokens: dict[str, str] = {}
    known_tasks: dict[str, str] = {}
    results = []
    admin = httpx.AsyncClient(base_url=base_url, timeout=30)
    try:
        for scenario in load.scenarios:
            specs = workdir / f"specs-{scenario.sessions}"
            names = [f"q{scenario.sessions}-{i:04d}" for i in range(scenario.sessions)]
            fresh = not specs.exists()
            if fresh:  # scenarios with as many sessions share them, and their tasks
                specs.mkdir()
                for name in names:
                    (specs / f"{name}.json").write_text(json.dumps(_spec(name)), encoding="utf-8")
                    hosts[name] = set(HOSTS)
                    next_uid[name] = 100
            probe = _QuotaProbe(httpx.AsyncHTTPTransport(), hosts)
            probe._tokens, probe._tasks = known_tokens, known_tasks
            settings = DaemonSettings(
                config=specs,
                state=workdir / f"state-{scenario.sessions}.db",
                debounce=DEBOUNCE,
                concurrency=scenario.concurrency,
                qps=load.qps,
                resync=3600.0,  # no drift checks inside the window
                watch=False,
                full_gc_interval=0.0,
            )
            metrics = DaemonMetrics(process=False)
            client = build_client(
                settings,
                metrics,
                transport=probe.transport,
                base_url=base_url,
                app_id=DEFAULT_APP_ID,
                customer_key=DEFAULT_CUSTOMER_KEY,
                customer_secret=DEFAULT_CUSTOMER_SECRET,
            )
            store = SqliteStore(settings.state, synchronous="NORMAL")
            daemon = Daemon(
                settings, client=client, store=store, catalog=SpecCatalog(specs), metrics=metrics
            )
            daemon.load()
            await daemon.start()
            try:
                if fresh:
                    for name in names:
                        daemon.set_hosts(name, sorted(hosts[name]))
                setup_budget = 60.0 + 3.0 * scenario.sessions / load.qps
                await _drained(daemon, time.perf_counter() + setup_budget)
                await admin.delete("/_emulator/requests")  # the log and the counts start here
                result = await _measure(load, scenario, daemon, probe, names, hosts, next_uid, rng)
                log = (await admin.get("/_emulator/requests")).json()["requests"]
                stats = (await admin.get("/_emulator/stats")).json()
            finally:
                await daemon.aclose()
            times = sorted(entry["time"] for entry in log)
            result["max_requests_per_1s"] = _busiest_second(times)
            result["max_sent_per_1s"] = _busiest_second(probe.sent)
            result["requests"] = len(times)
            result["too_many_requests"] = sum(
                int(counts.get("429", 0)) for counts in stats["calls"].values()
            )
            results.append(result)
    finally:
        await admin.aclose()
    return results


def _busiest_second(times: list[float]) -> int:
    """The most requests in any 1-second window [t, t + 1) of these (sorted) times."""
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


async def _drained(daemon: Any, deadline: float) -> None:
    while len(daemon.queue) or daemon.queue.processing:
        if time.perf_counter() > deadline:
            raise RuntimeError("the daemon did not drain in time")
        await asyncio.sleep(0.05)


async def _measure(
    load: Load,
    scenario: Scenario,
    daemon: Any,
    probe: _QuotaProbe,
    names: list[str],
    hosts: dict[str, set[int]],
    next_uid: dict[str, int],
    rng: random.Random,
) -> dict[str, Any]:
    probe.pending = {name: [] for name in names}
    probe.latencies = []
    probe.measuring = True
    rate = load.qps * load.overload
    total = int(rate * scenario.seconds)
    changed: set[str] = set()
    started = time.perf_counter()
    for index in range(total):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        name = names[rng.randrange(len(names))]
        present = hosts[name]
        # Only a host already shown leaves: a join and its leave inside one wait would cancel
        # out, and no request would ever show when the join was served.
        unseen = {uid for _, uid, joined in probe.pending[name] if joined}
        shown = sorted(present - unseen)
        joining = len(shown) <= 2 or (len(present) < 8 and rng.random() < 0.5)
        if joining:
            uid = next_uid[name] = next_uid[name] + 1
            present.add(uid)
        else:
            uid = rng.choice(shown)
            present.discard(uid)
        probe.pending[name].append((time.perf_counter(), uid, joining))
        if joining:
            daemon.host_joined(name, uid)
        else:
            daemon.host_left(name, uid)
        changed.add(name)
    ended = time.perf_counter()
    deadline = ended + 120.0 + 3.0 * scenario.sessions / load.qps
    while probe.unserved() and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    await _drained(daemon, deadline)
    probe.measuring = False
    limiter = daemon.rate_limiter
    pacing = limiter.rate if limiter is not None else load.qps
    latencies = sorted(probe.latencies)
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 2 else 0.0
    bound = max(len(changed) / pacing, DEBOUNCE)
    bound_at_quota = max(len(changed) / load.qps, DEBOUNCE)
    updates = probe.updates
    return {
        "ratio": round(p99 / bound, 3),
        "ratio_at_quota": round(p99 / bound_at_quota, 3),
        "p50_s": round(statistics.median(latencies), 3) if latencies else 0.0,
        "p99_s": round(p99, 3),
        "max_s": round(latencies[-1], 3) if latencies else 0.0,
        "bound_s": round(bound, 3),
        "pacing_rate": round(pacing, 3),
        "events": total,
        "achieved_event_rate": round(total / (ended - started), 1),
        "changed_sessions": len(changed),
        "updates": updates,
        "updates_per_changed_session": round(updates / len(changed), 2) if changed else 0.0,
        "events_per_update": round(total / updates, 2) if updates else 0.0,
        "stale_on_arrival_share": round(probe.stale_updates / updates, 4) if updates else 0.0,
        "convergence_s": round(max(0.0, probe.last_served - ended), 3),
        "unserved": probe.unserved(),
    }


# --- the emulator, in a process of its own ---------------------------------------------------


@contextlib.contextmanager
def _emulator_process(qps: float) -> Iterator[str]:
    """``layoutsync emulator --port 0 --qps QPS`` on loopback; yields its base URL."""
    with run_emulator("--qps", f"{qps:g}") as emulator:
        yield emulator.base_url
