"""The daemon at the vendor's quota: token before desired state, no 429, gauges, the drain."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from test_daemon_app import eventually, spec_doc, write_spec

from layoutsync.api.client import RetryPolicy
from layoutsync.daemon.metrics import DaemonMetrics
from layoutsync.daemon.runtime import Daemon, DaemonSettings, build_client
from layoutsync.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_CUSTOMER_KEY,
    DEFAULT_CUSTOMER_SECRET,
    EmulatorConfig,
)
from layoutsync.emulator import create_app as create_emulator
from layoutsync.store import SqliteStore

pytestmark = pytest.mark.anyio


def rooms(directory: Path, count: int) -> list[str]:
    names = [f"room{i:02d}" for i in range(count)]
    for name in names:
        write_spec(directory, name, spec_doc(f"{name}-1", name))
    return names


def make_daemon(
    tmp_path: Path, emulator: Any, *, state: str = "state.db", **settings: Any
) -> Daemon:
    options: dict[str, Any] = {
        "debounce": 0.01,
        "watch": False,
        "backoff_base": 0.01,
        "backoff_cap": 0.05,
        "resync": 3600.0,
    }
    options.update(settings)
    config = DaemonSettings(config=tmp_path / "specs", state=tmp_path / state, **options)
    metrics = DaemonMetrics(process=False)
    client = build_client(
        config,
        metrics,
        transport=httpx.ASGITransport(app=emulator),
        base_url="http://emulator.test",
        app_id=DEFAULT_APP_ID,
        customer_key=DEFAULT_CUSTOMER_KEY,
        customer_secret=DEFAULT_CUSTOMER_SECRET,
        retry=RetryPolicy(delays=()),
    )
    store = SqliteStore(config.state, synchronous="NORMAL")
    daemon = Daemon(config, client=client, store=store, metrics=metrics)
    daemon.load()
    return daemon


@contextlib.asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[Daemon]:
    await daemon.start()
    try:
        yield daemon
    finally:
        await asyncio.wait_for(daemon.aclose(), 30.0)


async def idle(daemon: Daemon, timeout: float = 10.0) -> None:
    async def check() -> bool:
        return len(daemon.queue) == 0 and not daemon.queue.processing

    await eventually(check, timeout=timeout, what="an idle queue")


def video_uids(emulator: Any, instance_id: str) -> set[int]:
    for task in emulator.state.emulator.tasks():
        if task["instanceId"] == instance_id:
            return {item["rtc"]["rtcUid"] for item in task["config"]["transcoder"]["videoInputs"]}
    return set()


def metric(daemon: Daemon, line: str) -> float:
    for row in daemon.metrics.render().decode().splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    directory = tmp_path / "specs"
    directory.mkdir()
    return directory


async def join_while_the_quota_is_booked(daemon: Daemon, emulator: Any) -> None:
    """room00 gets a task with host 101; then host 102 joins while others hold the next
    tokens, so the worker holding room00 waits about 1.8 s for its own (qps 4)."""
    daemon.host_joined("room00", 101)
    await eventually(
        lambda: asyncio.sleep(0, video_uids(emulator, "room00-1") == {101}), what="the Create"
    )
    await idle(daemon)
    assert daemon.rate_limiter is not None
    for _ in range(6):
        await daemon.rate_limiter.reserve()
    daemon.host_joined("room00", 102)
    await asyncio.sleep(0.3)
    assert daemon.queue.is_processing("room00")  # holds the key, waits for its token


class TestTokenBeforeDesiredState:
    """A worker waits for its turn first, then reads what to send."""

    async def test_events_during_the_wait_are_in_the_same_update(
        self, tmp_path: Path, specs: Path
    ) -> None:
        rooms(specs, 1)
        emulator = create_emulator(EmulatorConfig())
        daemon = make_daemon(tmp_path, emulator, qps=4.0, concurrency=16)
        async with running(daemon):
            await join_while_the_quota_is_booked(daemon, emulator)
            daemon.host_joined("room00", 103)
            await idle(daemon)
        updates = emulator.state.emulator.requests("update")
        assert len(updates) == 1, "the join during the wait must not cost a second Update"
        assert video_uids(emulator, "room00-1") == {101, 102, 103}

    async def test_a_session_with_nothing_to_send_does_not_queue_for_the_quota(
        self, tmp_path: Path, specs: Path
    ) -> None:
        rooms(specs, 1)
        emulator = create_emulator(EmulatorConfig())
        daemon = make_daemon(tmp_path, emulator, qps=2.0)
        async with running(daemon):
            await idle(daemon)
            limiter = daemon.rate_limiter
            assert limiter is not None
            for _ in range(10):  # the quota is booked for five seconds
                await limiter.reserve()
            booked = time.monotonic()
            before = daemon.get("room00").reconciles
            started = time.monotonic()
            daemon.queue.add("room00")  # nothing changed: the reconcile sends nothing
            await eventually(
                lambda: asyncio.sleep(0, daemon.get("room00").reconciles > before),
                timeout=1.0,
                what="a reconcile without a token",
            )
            assert time.monotonic() - started < 1.0
            # its token was given back: the line is as long as the ten reservations made it
            wait = limiter.reserve_now()  # type: ignore[attr-defined]
            assert wait == pytest.approx(10 / limiter.rate - (time.monotonic() - booked), abs=0.05)

    async def test_a_resync_due_during_the_wait_is_not_lost(
        self, tmp_path: Path, specs: Path
    ) -> None:
        rooms(specs, 1)
        emulator = create_emulator(EmulatorConfig())
        daemon = make_daemon(tmp_path, emulator, qps=4.0)
        async with running(daemon):
            await join_while_the_quota_is_booked(daemon, emulator)
            daemon.schedule_resync(0.01)  # falls due while the worker waits for its token
            await eventually(
                lambda: asyncio.sleep(0, bool(emulator.state.emulator.requests("query"))),
                what="the resync's Query",
            )
        kinds = [entry["kind"] for entry in emulator.state.emulator.requests()]
        assert kinds == ["acquire", "create", "update", "query"]

    async def test_a_failing_limiter_backs_the_session_off_and_keeps_the_worker(
        self, tmp_path: Path, specs: Path
    ) -> None:
        rooms(specs, 1)
        emulator = create_emulator(EmulatorConfig())
        daemon = make_daemon(tmp_path, emulator, qps=1000.0, concurrency=1)
        limiter = daemon.rate_limiter
        assert limiter is not None
        failures = [OSError("redis: connection refused")] * 2

        class Flaky:  # a shared limiter whose store is down for two calls
            rate = limiter.rate

            async def reserve(self) -> float:
                if failures:
                    raise failures.pop()
                return await limiter.reserve()

            async def cancel(self) -> None:
                await limiter.cancel()

        daemon.rate_limiter = Flaky()
        async with running(daemon):
            await idle(daemon)
            daemon.host_joined("room00", 101)
            await eventually(
                lambda: asyncio.sleep(0, video_uids(emulator, "room00-1") == {101}),
                what="the Create after the limiter came back",
            )
            assert not failures
            assert all(not worker.done() for worker in daemon._workers)


class TestNoTooManyRequests:
    """With the emulator's limit equal to --qps, an overload never causes a 429."""

    async def test_zero_429_over_an_overload_with_an_idle_spell(
        self, tmp_path: Path, specs: Path
    ) -> None:
        qps = 20
        names = rooms(specs, 12)
        emulator = create_emulator(EmulatorConfig(qps=qps, request_log_size=5000))
        # asked for a burst of qps: lowered to what fits in one second with the pacing
        daemon = make_daemon(tmp_path, emulator, qps=qps, burst=qps, concurrency=16)
        assert daemon.rate_limiter is not None and daemon.rate_limiter.burst == 1  # type: ignore[attr-defined]
        rng = random.Random(16)
        hosts: dict[str, set[int]] = {name: set() for name in names}
        next_uid = 100

        async def overload(seconds: float, rate: float) -> None:
            nonlocal next_uid
            began = time.monotonic()
            for k in range(int(seconds * rate)):
                await asyncio.sleep(max(0.0, began + k / rate - time.monotonic()))
                name = rng.choice(names)
                if len(hosts[name]) < 2 or rng.random() < 0.5:
                    next_uid += 1
                    hosts[name].add(next_uid)
                    daemon.host_joined(name, next_uid)
                else:
                    uid = rng.choice(sorted(hosts[name]))
                    hosts[name].discard(uid)
                    daemon.host_left(name, uid)

        async with running(daemon):
            started = time.monotonic()
            await overload(3.0, 3 * qps)  # three times what the quota serves
            await asyncio.sleep(1.5)  # an idle spell: the old bucket saved up a burst here
            await overload(3.0, 3 * qps)
            busy = time.monotonic() - started
            await idle(daemon, timeout=15.0)
        log = emulator.state.emulator.requests()
        statuses = [entry["status"] for entry in log]
        assert 429 not in statuses
        assert metric(daemon, 'layoutsync_api_calls_total{call="update",status="429"}') == 0
        assert len(log) >= 0.7 * qps * busy, "the daemon was not working at the quota"
        times = sorted(entry["time"] for entry in log)
        busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
        assert busiest <= qps, f"{busiest} requests in one second"
        for name in names:
            assert video_uids(emulator, f"{name}-1") == hosts[name]


class TestQueueGauges:
    """Real work and scheduled resyncs are told apart; the oldest change has an age."""

    async def test_changes_resyncs_and_the_oldest_change(self, tmp_path: Path, specs: Path) -> None:
        rooms(specs, 3)
        emulator = create_emulator(EmulatorConfig())
        daemon = make_daemon(tmp_path, emulator, qps=1000.0, debounce=1.0)
        change = 'layoutsync_queue_depth{kind="change"}'
        resync = 'layoutsync_queue_depth{kind="resync"}'
        oldest = "layoutsync_queue_oldest_change_seconds"
        async with running(daemon):
            await idle(daemon)
            daemon.schedule_resync(600.0)  # every session waits for its drift check
            assert (metric(daemon, change), metric(daemon, resync)) == (0.0, 3.0)
            assert metric(daemon, oldest) == 0.0
            daemon.host_joined("room01", 7)
            await asyncio.sleep(0.2)  # inside the debounce window: waiting, not applied
            assert (metric(daemon, change), metric(daemon, resync)) == (1.0, 2.0)
            assert 0.15 <= metric(daemon, oldest) < 1.0
            await eventually(
                lambda: asyncio.sleep(0, video_uids(emulator, "room01-1") == {7}),
                what="the Create",
            )
            await eventually(
                lambda: asyncio.sleep(0, metric(daemon, oldest) == 0.0), what="no pending change"
            )
            assert (metric(daemon, change), metric(daemon, resync)) == (0.0, 2.0)


async def backlog(tmp_path: Path, specs: Path) -> tuple[Daemon, Any, list[str]]:
    """A running daemon with eight sessions owed a Create each, more than a 1 s drain does."""
    names = rooms(specs, 8)
    emulator = create_emulator(EmulatorConfig())
    # each session needs an Acquire and a Create: 16 requests at 4.75/s is over 3 s
    daemon = make_daemon(
        tmp_path, emulator, qps=5.0, concurrency=2, drain_timeout=1.0, debounce=5.0
    )
    await daemon.start()
    for name in names:
        daemon.host_joined(name, 1)
    return daemon, emulator, names


class TestDrain:
    """SIGTERM with a backlog: bounded by --drain-timeout, logged as done and left."""

    async def test_the_log_says_what_was_done_and_what_was_left(
        self, tmp_path: Path, specs: Path
    ) -> None:
        daemon, emulator, names = await backlog(tmp_path, specs)
        with structlog.testing.capture_logs() as logs:
            await asyncio.wait_for(daemon.aclose(), 10.0)
        (stopped,) = [e for e in logs if e["event"] == "daemon stopped"]
        (warning,) = [e for e in logs if e["event"].startswith("drain left work undone")]
        assert stopped["queued"] == 8
        assert "drained" not in stopped
        assert 1 <= stopped["left"] < 8
        assert stopped["reconciled"] + stopped["left"] == 8
        created = {task["instanceId"] for task in emulator.state.emulator.tasks()}
        assert len(created) == stopped["reconciled"]
        assert warning["left"] == stopped["left"]
        assert warning["drain_timeout"] == 1.0
        assert sorted(warning["left_sessions"]) == sorted(
            name for name in names if f"{name}-1" not in created
        )

    async def test_what_the_drain_left_is_done_after_the_restart(
        self, tmp_path: Path, specs: Path
    ) -> None:
        daemon, emulator, names = await backlog(tmp_path, specs)
        await daemon.commit_inputs()  # what a 202 waits for
        await asyncio.wait_for(daemon.aclose(), 10.0)
        assert len(emulator.state.emulator.tasks()) < 8  # the drain left some undone
        again = make_daemon(tmp_path, emulator, qps=50.0)
        async with running(again):
            await idle(again)
        for name in names:
            assert video_uids(emulator, f"{name}-1") == {1}


class TestFlags:
    """The pacing and drain flags: defaults stated in --help and the same as the library's."""

    def test_defaults_match_the_library(self) -> None:
        from layoutsync.cli import daemon as cli
        from layoutsync.daemon import ratelimit

        assert (cli.DEFAULT_QPS, cli.DEFAULT_MARGIN, cli.DEFAULT_BURST) == (
            ratelimit.DEFAULT_QPS,
            ratelimit.DEFAULT_MARGIN,
            ratelimit.DEFAULT_BURST,
        )
        assert DaemonSettings(config=Path(".")).drain_timeout == cli.DEFAULT_DRAIN_TIMEOUT

    def test_parsed_into_the_settings(self, capsys: pytest.CaptureFixture[str]) -> None:
        from layoutsync.cli import build_parser

        parser = build_parser()
        args = parser.parse_args(["daemon", "--config", "x"])
        assert (args.qps, args.qps_margin, args.burst, args.drain_timeout) == (10.0, 0.05, 1, 20.0)
        args = parser.parse_args(
            ["daemon", "--config", "x", "--drain-timeout", "45", "--qps-margin", "0.1"]
        )
        assert (args.drain_timeout, args.qps_margin) == (45.0, 0.1)
        with pytest.raises(SystemExit):
            parser.parse_args(["daemon", "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--drain-timeout SECONDS" in text and "(default 20)" in text
        assert "(default 0.05: 9.5 requests/s at --qps 10)" in text

    def test_bad_values_are_refused(self) -> None:
        with pytest.raises(ValueError, match="drain_timeout must be >= 0"):
            DaemonSettings(config=Path("."), drain_timeout=-1)
        with pytest.raises(ValueError, match=r"qps_margin must be in \[0, 1\)"):
            DaemonSettings(config=Path("."), qps_margin=1.0)


class TestBenchQuota:
    """``layoutsync bench quota`` end to end, scaled down to a few seconds."""

    def test_a_tiny_run_measures_every_figure(self) -> None:
        from layoutsync.bench import quiet_logs, quota

        load = quota.Load(qps=40.0, overload=2.0, scenarios=(quota.Scenario(10, 4, 1.5),))
        with quiet_logs(), quota._emulator_process(load.qps) as url:
            (result,) = asyncio.run(quota._run(load, url))
        assert result["events"] == 120 and result["unserved"] == 0
        assert result["too_many_requests"] == 0
        assert result["updates"] >= 10 and result["changed_sessions"] == 10
        assert 0 < result["p50_s"] <= result["p99_s"] <= result["max_s"]
        assert result["bound_s"] == pytest.approx(10 / 38, abs=1e-3)  # N / (qps * 0.95)
        assert 1 <= result["max_sent_per_1s"] <= 40

    def test_busiest_second(self) -> None:
        from layoutsync.bench.quota import _busiest_second

        assert _busiest_second([]) == 0
        assert _busiest_second([0.0, 0.5, 0.999, 1.0, 1.5]) == 3  # [t, t + 1)
