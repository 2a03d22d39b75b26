"""README promises that no other test pinned: each test here fails when its promise breaks.

A mutation run (one small realistic bug at a time) found that each of these
could be deleted with every other test still green.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from _sessionkit import Clock, Emulated, make_spec, no_wait

from layoutsync.api.client import RetryPolicy
from layoutsync.apply import TOKEN_MAX_AGE, Session
from layoutsync.cli import build_parser, main
from layoutsync.daemon import webhooks
from layoutsync.daemon.metrics import DaemonMetrics
from layoutsync.daemon.runtime import Daemon, DaemonSettings, build_client
from layoutsync.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_CUSTOMER_KEY,
    DEFAULT_CUSTOMER_SECRET,
    EmulatorConfig,
)
from layoutsync.emulator import create_app as create_emulator
from layoutsync.logs import configure, get_logger
from layoutsync.redact import MASK, is_secret_key, mask_query, redact
from layoutsync.store import MemoryStore

INSTANCE = "room7-grid"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    import structlog

    yield
    structlog.reset_defaults()


# --- the daemon, in process ------------------------------------------------------------------


def _spec_dir(tmp_path: Path, **extra: Any) -> Path:
    directory = tmp_path / "specs"
    directory.mkdir()
    doc: dict[str, Any] = {
        "instanceId": "lobby-1",
        "input": {"channel": "room", "token": "007eJxINPUTTOKEN"},
        "output": {
            "channel": "room",
            "uid": 9000,
            "token": "007eJxOUTPUTTOKEN",
            "video": {"width": 1280, "height": 720},
        },
        "placeholderImage": "https://example.com/placeholder.png",
        **extra,
    }
    (directory / "lobby.json").write_text(json.dumps(doc), encoding="utf-8")
    return directory


def _daemon(
    config: Path,
    emulator_app: Any,
    *,
    clock: Callable[[], float] = time.monotonic,
    bucket: Any = None,
    **settings: Any,
) -> Daemon:
    options: dict[str, Any] = {
        "debounce": 0.01,
        "concurrency": 2,
        "qps": 1000.0,
        "burst": 1000,
        "watch": False,
        "backoff_cap": 5.0,
        "full_gc_interval": 0,
    }
    options.update(settings)
    daemon_settings = DaemonSettings(config=config, **options)
    metrics = DaemonMetrics(process=False)
    client = build_client(
        daemon_settings,
        metrics,
        transport=httpx.ASGITransport(app=emulator_app),
        bucket=bucket,
        base_url="http://emulator.test",
        app_id=DEFAULT_APP_ID,
        customer_key=DEFAULT_CUSTOMER_KEY,
        customer_secret=DEFAULT_CUSTOMER_SECRET,
        retry=RetryPolicy(delays=()),
    )
    daemon = Daemon(
        daemon_settings, client=client, store=MemoryStore(), metrics=metrics, clock=clock
    )
    daemon.load()
    return daemon


async def _eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.fixture
async def running() -> AsyncIterator[list[Daemon]]:
    """Daemons a test starts; stopped (bounded) when it ends."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        await asyncio.wait_for(daemon.aclose(), 10.0)


class TestDaemonClient:
    """The daemon's client takes a token from a bucket for every request; 10 req/s by default."""

    def test_the_default_rate_is_10_requests_per_second(self, tmp_path: Path) -> None:
        assert DaemonSettings(config=tmp_path).qps == 10.0
        args = build_parser().parse_args(["daemon", "--config", str(tmp_path)])
        assert args.qps == 10.0

    @pytest.mark.anyio
    async def test_every_request_takes_a_token(self, tmp_path: Path) -> None:
        class Counting:  # a RateLimiter (layoutsync.daemon.ratelimit) that counts
            rate = 1000.0

            def __init__(self) -> None:
                self.taken = 0

            async def reserve(self) -> float:
                self.taken += 1
                return 0.0

            async def cancel(self) -> None:
                self.taken -= 1

        bucket = Counting()
        emulator_app = create_emulator(EmulatorConfig(seed=1))
        daemon = _daemon(_spec_dir(tmp_path), emulator_app, bucket=bucket)
        try:
            for uid in (101, 102, 103):
                daemon.host_joined("lobby", uid)
                await daemon.reconcile_now("lobby")
        finally:
            await daemon.aclose()
        sent = emulator_app.state.emulator.requests()
        assert len(sent) == 4  # acquire, create, update, update
        assert bucket.taken == len(sent)

    @pytest.mark.anyio
    async def test_the_default_bucket_keeps_a_burst_under_the_vendor_limit(
        self, tmp_path: Path
    ) -> None:
        # The emulator allows 12/s (burst 12); 30 concurrent calls at the daemon's default
        # 10/s never see a 429. Without the bucket, or at twice the rate, some would.
        emulator_app = create_emulator(EmulatorConfig(seed=1, qps=12))
        settings = DaemonSettings(config=tmp_path)
        client = build_client(
            settings,
            DaemonMetrics(process=False),
            transport=httpx.ASGITransport(app=emulator_app),
            base_url="http://emulator.test",
            app_id=DEFAULT_APP_ID,
            customer_key=DEFAULT_CUSTOMER_KEY,
            customer_secret=DEFAULT_CUSTOMER_SECRET,
            retry=RetryPolicy(delays=()),
        )
        async with client:
            await asyncio.gather(*(client.acquire(f"burst-{n}") for n in range(30)))
        statuses = [r["status"] for r in emulator_app.state.emulator.requests("acquire")]
        assert statuses == [200] * 30


class TestDefaultBind:
    """With no address flag, the daemon and the emulator bind loopback."""

    @pytest.mark.parametrize(
        ("verb", "expected"), [("daemon", ("127.0.0.1", 8080)), ("emulator", ("127.0.0.1", 8089))]
    )
    def test_binds_127_0_0_1_by_default(
        self,
        verb: str,
        expected: tuple[str, int],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        import importlib

        bound: list[tuple[str, int]] = []

        def refuse(host: str, port: int) -> Any:
            bound.append((host, port))
            raise OSError("not binding in a test")

        monkeypatch.setattr(importlib.import_module(f"layoutsync.cli.{verb}"), "_bind", refuse)
        argv = [verb]
        if verb == "daemon":
            for name, value in [
                ("LAYOUTSYNC_API_TOKEN", "t"),
                ("LAYOUTSYNC_NCS_SECRET", "s"),
                ("LAYOUTSYNC_APP_ID", DEFAULT_APP_ID),
                ("LAYOUTSYNC_CUSTOMER_KEY", DEFAULT_CUSTOMER_KEY),
                ("LAYOUTSYNC_CUSTOMER_SECRET", DEFAULT_CUSTOMER_SECRET),
            ]:
                monkeypatch.setenv(name, value)
            argv += ["--config", str(_spec_dir(tmp_path)), "--state", str(tmp_path / "s.db")]
        assert main(argv) == 1
        assert bound == [expected]
        assert "not binding in a test" in capsys.readouterr().err


class TestDaemonLoop:
    """Backoff, resync and debounce, as the running daemon does them."""

    @pytest.mark.anyio
    async def test_a_failing_reconcile_backs_off_before_the_next_attempt(
        self, tmp_path: Path, running: list[Daemon]
    ) -> None:
        emulator_app = create_emulator(EmulatorConfig(seed=1))
        emulator = emulator_app.state.emulator
        emulator.add_fault("create", "500", 2)
        daemon = _daemon(_spec_dir(tmp_path), emulator_app, backoff_base=0.4)
        await daemon.start()
        running.append(daemon)
        daemon.host_joined("lobby", 101)
        await _eventually(lambda: bool(emulator.tasks()), "the Create after two failures")
        creates = emulator.requests("create")
        assert [r["status"] for r in creates] == [500, 500, 200]
        gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(creates)]
        # 0.4 s then 0.8 s nominal, jittered by at most 20%: each attempt waited.
        assert gaps[0] >= 0.4 * 0.8 - 0.01
        assert gaps[1] >= 0.8 * 0.8 - 0.01
        assert daemon.limiter.failures("lobby") == 0  # forgotten after the success

    @pytest.mark.anyio
    async def test_the_periodic_resync_runs_by_itself(
        self, tmp_path: Path, running: list[Daemon]
    ) -> None:
        emulator_app = create_emulator(EmulatorConfig(seed=1))
        emulator = emulator_app.state.emulator
        daemon = _daemon(_spec_dir(tmp_path), emulator_app, resync=0.3)
        await daemon.start()
        running.append(daemon)
        daemon.host_joined("lobby", 101)
        await _eventually(lambda: bool(emulator.tasks()), "the first task")
        (first,) = emulator.tasks()
        # The host leaves the channel and the service idles the task out; nobody tells the
        # daemon, and no test calls schedule_resync: the resync loop must find out.
        emulator.set_present("room", 101, False)
        emulator.advance_clock(400)
        assert emulator.tasks() == []

        def recreated() -> bool:
            tasks = emulator.tasks()
            return bool(tasks) and tasks[0]["taskId"] != first["taskId"]

        await _eventually(recreated, "the resync to notice and create the task again")
        assert len(emulator.requests("query")) >= 1

    @pytest.mark.anyio
    async def test_a_burst_within_the_debounce_window_is_one_create_and_no_update(
        self, tmp_path: Path, running: list[Daemon]
    ) -> None:
        now = [1000.0]
        emulator_app = create_emulator(EmulatorConfig(seed=1))
        emulator = emulator_app.state.emulator
        daemon = _daemon(_spec_dir(tmp_path), emulator_app, clock=lambda: now[0], debounce=0.05)
        await daemon.start()
        running.append(daemon)
        now[0] += 0.05  # the start-up reconcile of every session falls due
        await _eventually(lambda: not daemon.queue.processing and not daemon.queue, "start-up")
        for uid in range(1001, 1021):
            daemon.host_joined("lobby", uid)
            await asyncio.sleep(0.01)  # workers and timers run between the events
        assert emulator.requests() == []  # the window has not closed: nothing sent yet
        now[0] += 0.05  # the window closes
        await _eventually(lambda: bool(emulator.tasks()), "the Create")
        await _eventually(lambda: not daemon.queue.processing and not daemon.queue, "quiet")
        assert len(emulator.requests("create")) == 1
        assert len(emulator.requests("update")) == 0
        (task,) = emulator.tasks()
        uids = [v["rtc"]["rtcUid"] for v in task["config"]["transcoder"]["videoInputs"]]
        assert sorted(uids) == list(range(1001, 1021))


# --- the library Session ---------------------------------------------------------------------


class TestSession:
    def test_the_builder_token_cutoff_is_270_seconds(self, emulated: Emulated) -> None:
        assert TOKEN_MAX_AGE == 270.0
        for age, calls in ((269.0, ("create",)), (271.0, ("acquire", "create"))):
            clock = Clock()
            s = Session(
                make_spec(instanceId=f"cut{int(age)}"),
                client=emulated.client(retries=0),
                store=MemoryStore(),
                clock=clock,
                sleep=no_wait,
            )
            s.set_hosts([101])
            emulated.emulator.add_fault("create", "503")  # nothing applied; the token is kept
            assert s.reconcile().error is not None
            clock.advance(age)
            result = s.reconcile()
            result.raise_for_error()
            assert result.calls == calls, age

    def test_a_404_is_believed_only_after_a_confirming_query(self, emulated: Emulated) -> None:
        s = Session(
            make_spec(), client=emulated.client(), store=MemoryStore(), clock=Clock(), sleep=no_wait
        )
        s.set_hosts([101])
        s.reconcile().raise_for_error()
        (task,) = emulated.tasks(INSTANCE)
        emulated.emulator.clear_requests()
        emulated.emulator.add_fault("query", "404")  # one spurious 404
        s.refresh()
        assert [(r["kind"], r["status"]) for r in emulated.emulator.requests()] == [
            ("query", 404),
            ("query", 200),
        ]
        assert s.status().task_id == task["taskId"]
        emulated.emulator.add_fault("update", "404")
        s.host_joined(102)
        result = s.reconcile()
        result.raise_for_error()
        assert result.task_id == task["taskId"]
        kinds = [(r["kind"], r["status"]) for r in emulated.emulator.requests()][2:]
        assert kinds == [("update", 404), ("query", 200), ("update", 200)]
        assert len(emulated.tasks(INSTANCE)) == 1


# --- redaction -------------------------------------------------------------------------------


class TestRedaction:
    """``redact``, its key rules, and the processor in the logging chain the CLI configures."""

    @pytest.mark.parametrize(
        "key",
        [
            "tokenName",
            "authorization",
            "Authorization",
            "rtcToken",
            "builderToken",
            "token",
            "apiToken",
            "customerSecret",
            "webhook_secret",
            "ncsSecret",
            "password",
            "customer_key",
        ],
    )
    def test_secret_keys(self, key: str) -> None:
        assert is_secret_key(key)
        assert redact({key: "v", "keep": "w"}) == {key: MASK, "keep": "w"}

    @pytest.mark.parametrize("key", ["tokens", "tokenCount", "secretary", "channel", "uid", 7])
    def test_other_keys_are_kept(self, key: Any) -> None:
        assert not is_secret_key(key)
        assert redact({key: "v"}) == {key: "v"}

    def test_redact_walks_nested_values_and_keeps_none(self) -> None:
        value = {
            "a": [{"rtc": {"rtcToken": "s1", "rtcUid": 5}}, ("x", {"builderToken": "s2"})],
            "token": None,
        }
        assert redact(value) == {
            "a": [{"rtc": {"rtcToken": MASK, "rtcUid": 5}}, ("x", {"builderToken": MASK})],
            "token": None,
        }
        assert value["a"][0]["rtc"]["rtcToken"] == "s1"  # a copy: the input is untouched

    def test_mask_query(self) -> None:
        query = {"builderToken": "s", "sequenceId": "3"}
        assert mask_query(query) == {"builderToken": MASK, "sequenceId": "3"}

    @pytest.mark.parametrize("as_json", [True, False])
    def test_the_configured_chain_masks_secrets(self, as_json: bool) -> None:
        out = io.StringIO()
        configure(json=as_json, level="debug", stream=out)
        get_logger(session="s").info(
            "event", rtcToken="secret-1", authorization="Bearer secret-2", uid=7
        )
        line = out.getvalue()
        assert "secret-1" not in line and "secret-2" not in line
        if as_json:
            logged = json.loads(line)
            assert (logged["rtcToken"], logged["authorization"]) == (MASK, MASK)
            assert logged["uid"] == 7
        else:
            assert f"rtcToken='{MASK}'" in line and "uid=7" in line

    def test_a_logger_follows_each_new_configuration(self) -> None:
        """The library's loggers are cached per configuration, never past a new one."""
        log = get_logger(session="s")
        first, second = io.StringIO(), io.StringIO()
        configure(json=True, level="info", stream=first)
        log.info("one")
        log.debug("dropped at info")
        configure(json=False, level="debug", stream=second)
        log.debug("two")
        structlog.reset_defaults()
        log.info("three")  # unconfigured: the NullHandler'd stdlib logger, nowhere
        assert [json.loads(line)["event"] for line in first.getvalue().splitlines()] == ["one"]
        assert "event='two'" in second.getvalue() and "session='s'" in second.getvalue()
        assert "three" not in first.getvalue() + second.getvalue()


# --- webhooks --------------------------------------------------------------------------------


def test_webhook_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", recording)
    body = b'{"eventType": 103}'
    good = webhooks.sign("secret", body)
    headers = httpx.Headers({webhooks.SIGNATURE_V2_HEADER: good})
    assert webhooks.verify_signature("secret", body, headers) is webhooks.SignatureCheck.VALID
    assert compared == [(good.encode(), good.encode())]
    bad = httpx.Headers({webhooks.SIGNATURE_V2_HEADER: "0" * 64})
    assert webhooks.verify_signature("secret", body, bad) is webhooks.SignatureCheck.MISMATCH
    assert len(compared) == 2


# --- log lines -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_json_log_lines_carry_instance_task_sequence_and_request_ids(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    configure(json=True, level="info", stream=out)
    emulator_app = create_emulator(EmulatorConfig(seed=1))
    emulator = emulator_app.state.emulator
    daemon = _daemon(_spec_dir(tmp_path), emulator_app)
    try:
        daemon.host_joined("lobby", 101)
        await daemon.reconcile_now("lobby")
        daemon.host_joined("lobby", 102)
        await daemon.reconcile_now("lobby")
    finally:
        await daemon.aclose()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    done = [line for line in lines if line["event"] == "reconcile.done"]
    assert [line["action"] for line in done] == ["create", "update"]
    (task,) = emulator.tasks()
    sent = emulator.requests()
    for line, sequence, kinds in zip(
        done, (None, 0), (("acquire", "create"), ("update",)), strict=True
    ):
        assert line["instanceId"] == "lobby-1"
        assert line["taskId"] == task["taskId"]
        assert line["sequenceId"] == sequence
        ids = [r["requestId"] for r in sent if r["kind"] in kinds]
        assert line["request_ids"] == ids


# --- edges the mutation run found unguarded ----------------------------------------------------


class TestEdgesFoundByMutation:
    """Boundaries a mutant moved by one with every other test still green."""

    def test_uid_bounds_are_inclusive(self) -> None:
        from layoutsync.daemon.runtime import check_uid
        from layoutsync.validate import MAX_UID

        assert check_uid(1) == 1
        assert check_uid(MAX_UID) == MAX_UID
        assert check_uid("1", text=True) == 1
        for bad in (0, MAX_UID + 1):
            with pytest.raises(ValueError, match="outside"):
                check_uid(bad)

    def test_a_backoff_cap_equal_to_its_base_is_allowed(self) -> None:
        from layoutsync.daemon.queue import BackoffLimiter

        limiter: BackoffLimiter[str] = BackoffLimiter(base=1.0, cap=1.0, jitter=0.0)
        assert [limiter.when("k") for _ in range(3)] == [1.0, 1.0, 1.0]
        with pytest.raises(ValueError, match="base <= cap"):
            BackoffLimiter(base=1.0, cap=0.5)

    @pytest.mark.anyio
    async def test_a_failed_reconcile_is_described_and_a_stopping_daemon_is_not_ready(
        self, tmp_path: Path
    ) -> None:
        emulator_app = create_emulator(EmulatorConfig(seed=1))
        emulator_app.state.emulator.add_fault("create", "503")
        daemon = _daemon(_spec_dir(tmp_path), emulator_app)
        await daemon.start()
        try:
            assert daemon.ready()[0] is True
            daemon.host_joined("lobby", 101)
            await daemon.reconcile_now("lobby")
            error = daemon.get("lobby").last_error
            assert error is not None and "503" in error
        finally:
            await daemon.stop()
            ready, checks = daemon.ready()
            await daemon.aclose()
        assert (ready, checks["running"]) == (False, False)


class _EndsOnce:
    """A client whose first Create answers a task that has already ended (a task that dies
    at birth), or, with ``via_query``, a 202 whose confirming Query finds it ended."""

    def __init__(self, client: Any, *, via_query: bool) -> None:
        self._client = client
        self._via_query = via_query
        self._pending = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        from layoutsync.api.models import Accepted, Call, Task

        answer = self._client.create(*args, **kwargs)
        if not self._pending:
            return answer
        if self._via_query:
            return Accepted(Call.CREATE, answer.request_id, answer.task_id)
        self._pending = False
        self._client.delete(answer.task_id, args[0])  # it really is gone
        return Task(answer.task_id, "STOPPED", None, None, None)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        from layoutsync.api.models import Task

        answer = self._client.query(*args, **kwargs)
        if self._via_query and self._pending:
            self._pending = False
            self._client.delete(*args)  # it really is gone
            return Task(answer.task_id, "STOPPED", None, None, None)
        return answer


@pytest.mark.parametrize("via_query", [False, True])
def test_a_task_that_ends_as_it_is_created_is_made_again(
    emulated: Emulated, via_query: bool
) -> None:
    s = Session(
        make_spec(),
        client=_EndsOnce(emulated.client(), via_query=via_query),
        store=MemoryStore(),
        clock=Clock(),
        sleep=no_wait,
    )
    s.set_hosts([101])
    result = s.reconcile()
    result.raise_for_error()
    first = ("acquire", "create", "query") if via_query else ("acquire", "create")
    assert result.calls == (*first, "acquire", "create")
    assert result.plan is not None
    reason = "ended right after Create answered 202" if via_query else "had already ended"
    assert any(reason in r for r in result.plan.reasons), result.plan.reasons
    live = [t["taskId"] for t in emulated.tasks(INSTANCE)]
    assert result.task_id in live
