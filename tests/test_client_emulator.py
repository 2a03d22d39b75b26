"""Both clients against the emulator: one test per service rule, and every fault.

In process: ``AsyncClient`` over ``httpx.ASGITransport`` and ``Client`` over
``SyncASGITransport``, with a ``ManualClock``; the clients' injected sleep
advances the emulator's clock, so back-offs, token expiry, rate limits and
idleTimeout all run in virtual time. One end-to-end test runs
``layoutsync emulator`` as a real process on a free loopback port.
"""

from __future__ import annotations

import inspect
import json
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from layoutsync.api.client import AsyncClient, Client, RetryPolicy
from layoutsync.api.models import Accepted, BuilderToken, Call, ResponseEvent, Task, Updated
from layoutsync.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_CUSTOMER_KEY,
    DEFAULT_CUSTOMER_SECRET,
    Emulator,
    EmulatorConfig,
    ManualClock,
    SyncASGITransport,
    create_app,
)
from layoutsync.emulator.process import run_emulator
from layoutsync.errors import (
    BadRequest,
    Forbidden,
    InstanceConflict,
    RequestTimeout,
    TaskNotFound,
    TransportError,
    Unauthorized,
    ValidationError,
)

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "examples" / "vendor"
DELAYS = (5.0, 10.0, 15.0)


def vendor(name: str) -> dict[str, Any]:
    return json.loads((VENDOR / f"{name}.json").read_text())


def transcoder(body: dict[str, Any]) -> dict[str, Any]:
    return body["services"]["cloudTranscoder"]["config"]["transcoder"]  # type: ignore[no-any-return]


def corrected_scenario1() -> dict[str, Any]:
    """Scenario 1 of the vendor page with its 100x100 watermark raised to the 120 minimum."""
    body = vendor("scenario1-audio-video-watermark")
    transcoder(body)["waterMarks"][0]["region"].update(width=120, height=120)
    return body


def audio_only(*uids: int, profile: str = "AUDIO_PROFILE_MUSIC_STANDARD") -> dict[str, Any]:
    """Scenario 2 with the given host uids (channel test01) and output audio profile."""
    body = vendor("scenario2-audio-only")
    t = transcoder(body)
    template = t["audioInputs"][0]
    t["audioInputs"] = [{"rtc": {**template["rtc"], "rtcUid": uid}} for uid in (uids or (123, 456))]
    t["outputs"][0]["audioOption"]["profileType"] = profile
    return body


@dataclass
class Env:
    """An emulator with a manual clock, and one client whose sleep advances that clock."""

    emulator: Emulator
    client: Client | AsyncClient
    flavour: str
    sleeps: list[float] = field(default_factory=list)
    events: list[ResponseEvent] = field(default_factory=list)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, method)(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    async def start(
        self, body: dict[str, Any] | None = None, instance_id: str = "inst-1"
    ) -> tuple[BuilderToken, Task]:
        """Acquire and Create; returns the token and the task."""
        token = await self.call("acquire", instance_id)
        task = await self.call("create", token, body or audio_only())
        assert isinstance(task, Task)
        return token, task

    def requests(self, kind: str | None = None) -> list[tuple[str, int | None, str]]:
        return [(r["kind"], r["status"], r["note"]) for r in self.emulator.requests(kind)]

    def live(self) -> list[dict[str, Any]]:
        return self.emulator.tasks()


def _make_client(
    flavour: str,
    app: Any,
    emulator: Emulator,
    sleeps: list[float],
    events: list[ResponseEvent],
    **kwargs: Any,
) -> Client | AsyncClient:
    options: dict[str, Any] = {
        "on_response": events.append,
        "app_id": DEFAULT_APP_ID,
        "customer_key": DEFAULT_CUSTOMER_KEY,
        "customer_secret": DEFAULT_CUSTOMER_SECRET,
        "retry": RetryPolicy(delays=DELAYS, jitter=0.0),
        **kwargs,
    }

    def advance(seconds: float) -> None:
        sleeps.append(seconds)
        emulator.advance_clock(seconds)

    if flavour == "sync":
        return Client(transport=SyncASGITransport(app), sleep=advance, **options)

    async def sleep(seconds: float) -> None:
        advance(seconds)

    # ASGITransport re-raises app errors: the emulator's injected drop (ConnectionAbortedError).
    return AsyncClient(transport=httpx.ASGITransport(app=app), sleep=sleep, **options)


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_env(flavour: str) -> AsyncIterator[Callable[..., Env]]:
    made: list[Env] = []

    def factory(config: EmulatorConfig | None = None, **client_options: Any) -> Env:
        async def timed_out(_seconds: float) -> None:
            # In process no timer runs: the "delay" fault stands for outlasting the client's
            # timeout, so it raises what httpx raises then.
            raise httpx.ReadTimeout("the emulator's delay outlasted the client timeout")

        emulator = Emulator(config, clock=ManualClock(), sleep=timed_out)
        app = create_app(emulator=emulator)
        sleeps: list[float] = []
        events: list[ResponseEvent] = []
        client = _make_client(flavour, app, emulator, sleeps, events, **client_options)
        env = Env(emulator, client, flavour, sleeps, events)
        made.append(env)
        return env

    yield factory
    for env in made:
        if isinstance(env.client, AsyncClient):
            await env.client.aclose()
        else:
            env.client.close()


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


pytestmark = pytest.mark.anyio


# --- the happy path and the vendor's examples ----------------------------------------------


class TestLifecycle:
    async def test_acquire_create_query_update_delete(self, env: Env) -> None:
        token, task = await env.start()
        assert token.instance_id == "inst-1" and token.request_id
        assert task.status == "STARTED" and task.sequence_id == 0 and task.request_id
        queried = await env.call("query", task.task_id, token)
        assert isinstance(queried, Task) and queried.status == "IN_PROGRESS"
        assert queried.raw["services"]["cloudTranscoder"]["config"] == {}
        new = audio_only(123, 456, 789)
        assert isinstance(await env.call("update", task.task_id, token, 0, new), Updated)
        live = env.emulator.live_config(task.task_id)
        assert live == transcoder(new)
        assert env.live()[0]["sequenceId"] == 0
        deleted = await env.call("delete", task.task_id, token)
        assert isinstance(deleted, Task) and deleted.task_id == task.task_id and deleted.ended
        assert env.live() == [] and env.sleeps == []

    @pytest.mark.parametrize(
        ("name", "body"),
        [
            ("scenario 1, corrected", corrected_scenario1),
            ("scenario 2", lambda: vendor("scenario2-audio-only")),
            ("scenario 3", lambda: vendor("scenario3-channel-mix")),
        ],
    )
    async def test_vendor_examples_are_accepted(
        self, env: Env, name: str, body: Callable[[], dict[str, Any]]
    ) -> None:
        _, task = await env.start(body())
        assert env.emulator.live_config(task.task_id) == transcoder(body())

    async def test_vendor_scenario1_as_published_is_400(self, env: Env) -> None:
        token = await env.call("acquire", "inst-1")
        with pytest.raises(BadRequest) as info:
            await env.call("create", token, vendor("scenario1-audio-video-watermark"))
        assert "waterMarks/0/region" in info.value.message and info.value.request_id
        assert env.requests("create") == [("create", 400, "invalid")]

    async def test_echo_config_option(self, make_env: Callable[..., Env]) -> None:
        env = make_env(EmulatorConfig(echo_config=True))
        token, task = await env.start()
        queried = await env.call("query", task.task_id, token)
        echoed = queried.raw["services"]["cloudTranscoder"]["config"]["transcoder"]
        assert echoed == transcoder(audio_only())
        assert "aab8b8f5" not in repr(queried)


# --- one test per rule ---------------------------------------------------------------------


class TestAuthAndValidation:
    async def test_wrong_credentials_401(self, make_env: Callable[..., Env]) -> None:
        env = make_env(customer_secret="wrong")
        with pytest.raises(Unauthorized):
            await env.call("acquire", "inst-1")
        assert env.requests() == [("acquire", 401, "")] and env.sleeps == []

    async def test_disabled_app_id_403(self, make_env: Callable[..., Env]) -> None:
        env = make_env(EmulatorConfig(disabled_app_ids=("off-app",)), app_id="off-app")
        with pytest.raises(Forbidden):
            await env.call("acquire", "inst-1")
        assert env.sleeps == []

    async def test_invalid_body_400_names_the_field(self, env: Env) -> None:
        body = audio_only()
        del transcoder(body)["canvas"]["width"]
        token = await env.call("acquire", "inst-1")
        with pytest.raises(BadRequest) as info:
            await env.call("create", token, body)
        assert "canvas" in info.value.message and "width" in info.value.message
        assert len(env.requests("create")) == 1 and env.live() == []

    async def test_instance_id_is_checked_before_sending(self, env: Env) -> None:
        with pytest.raises(ValidationError) as info:
            await env.call("acquire", "no spaces allowed")
        assert info.value.errors[0].pointer == "/instanceId"
        assert env.requests() == []


class TestBuilderTokens:
    async def test_valid_for_five_minutes(self, env: Env) -> None:
        token = await env.call("acquire", "inst-1")
        env.emulator.advance_clock(301)
        with pytest.raises(BadRequest) as info:
            await env.call("create", token, audio_only())
        assert "builderToken" in info.value.message
        assert env.live() == []

    async def test_one_token_one_task(self, env: Env) -> None:
        token, task = await env.start()
        await env.call("delete", task.task_id, token)
        with pytest.raises(BadRequest):
            await env.call("create", token, audio_only())
        assert env.live() == []

    async def test_calls_need_the_tasks_own_token(self, env: Env) -> None:
        _, task = await env.start()
        other = await env.call("acquire", "inst-1")
        with pytest.raises(BadRequest):
            await env.call("query", task.task_id, other)

    async def test_second_live_task_for_an_instance_is_409(self, env: Env) -> None:
        _, task = await env.start()
        other = await env.call("acquire", "inst-1")
        with pytest.raises(InstanceConflict) as info:
            await env.call("create", other, audio_only())
        assert info.value.body == {"message": info.value.message}  # no taskId: not adopted
        assert [t["taskId"] for t in env.live()] == [task.task_id]
        assert env.sleeps == []


class TestRetriedCreate:
    """A Create whose answer is lost is re-sent with the same token: never a second task."""

    @pytest.mark.parametrize("answer", [200, 201, 409])
    @pytest.mark.parametrize("fault", ["commit-500", "commit-503", "commit-drop"])
    async def test_every_answer_yields_the_one_task(
        self, make_env: Callable[..., Env], answer: int, fault: str
    ) -> None:
        env = make_env(EmulatorConfig(retried_create=answer))
        token = await env.call("acquire", "inst-1")
        env.emulator.add_fault("create", fault)
        task = await env.call("create", token, audio_only())
        assert isinstance(task, Task)
        assert [t["taskId"] for t in env.live()] == [task.task_id]
        kinds = [kind for kind, _, _ in env.requests()]
        expected = ["acquire", "create", "create"] + (["query"] if answer == 409 else [])
        assert kinds == expected
        assert env.sleeps == [5.0]

    @pytest.mark.parametrize("fault", ["429", "500", "503", "504", "drop"])
    async def test_nothing_applied_then_created_once(
        self, make_env: Callable[..., Env], fault: str
    ) -> None:
        env = make_env()
        token = await env.call("acquire", "inst-1")
        env.emulator.add_fault("create", fault)
        task = await env.call("create", token, audio_only())
        assert isinstance(task, Task) and len(env.live()) == 1
        assert env.requests("create")[-1] == ("create", 200, "created")

    async def test_202_then_poll(self, env: Env) -> None:
        token = await env.call("acquire", "inst-1")
        env.emulator.add_fault("create", "202")
        accepted = await env.call("create", token, audio_only())
        assert isinstance(accepted, Accepted) and accepted.call is Call.CREATE
        assert accepted.task_id == env.live()[0]["taskId"]
        task = await env.call("query", accepted.task_id, token)
        assert isinstance(task, Task)


class TestUpdateRules:
    async def test_update_mask_and_sequence_are_sent(self, env: Env) -> None:
        token, task = await env.start()
        await env.call("update", task.task_id, token, 0, audio_only(123))
        query = env.emulator.requests("update")[0]["query"]
        assert query == {
            "builderToken": "***",
            "sequenceId": "0",
            "updateMask": "services.cloudTranscoder.config",
        }

    async def test_sequence_id_must_be_non_negative(self, env: Env) -> None:
        token, task = await env.start()
        with pytest.raises(ValidationError):
            await env.call("update", task.task_id, token, -1, audio_only(123))
        assert env.requests("update") == []

    @pytest.mark.parametrize("stale", [0, 1])
    async def test_stale_sequence_is_accepted_not_applied(self, env: Env, stale: int) -> None:
        token, task = await env.start()
        applied = audio_only(123, 789)
        await env.call("update", task.task_id, token, 1, applied)
        result = await env.call("update", task.task_id, token, stale, audio_only(999))
        assert isinstance(result, Updated)
        assert env.emulator.live_config(task.task_id) == transcoder(applied)
        assert env.live()[0]["staleUpdates"] == 1 and env.live()[0]["sequenceId"] == 1

    async def test_updatable_fields_change(self, env: Env) -> None:
        token, task = await env.start(corrected_scenario1())
        body = corrected_scenario1()
        t = transcoder(body)
        t["videoInputs"][1]["region"]["x"] = 400
        t["outputs"][0]["videoOption"]["bitrate"] = 1200
        t["outputs"][0]["audioOption"]["profileType"] = "AUDIO_PROFILE_SPEECH_STANDARD"
        await env.call("update", task.task_id, token, 0, body)
        assert env.emulator.live_config(task.task_id) == t

    @pytest.mark.parametrize(
        ("change", "pointer"),
        [
            (lambda t: t["canvas"].update(color=255), "/canvas"),
            (lambda t: t.update(idleTimeout=60), "/idleTimeout"),
            (lambda t: t["outputs"][0]["rtc"].update(rtcUid=2000), "/outputs/0/rtc"),
        ],
    )
    async def test_other_fields_are_400(
        self, env: Env, change: Callable[[dict[str, Any]], None], pointer: str
    ) -> None:
        token, task = await env.start()
        body = audio_only()
        change(transcoder(body))
        with pytest.raises(BadRequest) as info:
            await env.call("update", task.task_id, token, 0, body)
        assert pointer in info.value.message
        assert len(env.requests("update")) == 1 and env.sleeps == []

    async def test_scenario_change_is_400(self, env: Env) -> None:
        token, task = await env.start()  # audio only
        body = corrected_scenario1()
        t = transcoder(body)
        t.update(idleTimeout=180, canvas=transcoder(audio_only())["canvas"])
        t["outputs"][0]["rtc"] = transcoder(audio_only())["outputs"][0]["rtc"]
        del t["waterMarks"]
        with pytest.raises(BadRequest) as info:
            await env.call("update", task.task_id, token, 0, body)
        message = info.value.message
        assert message.startswith("/services/cloudTranscoder/config/transcoder/videoInputs: ")
        assert "/services/cloudTranscoder/config/transcoder/outputs/0/videoOption: " in message
        assert env.emulator.live_config(task.task_id) == transcoder(audio_only())


class TestMissingTasks:
    async def test_deleted_task_404_is_confirmed(self, env: Env) -> None:
        token, task = await env.start()
        await env.call("delete", task.task_id, token)
        with pytest.raises(TaskNotFound):
            await env.call("query", task.task_id, token)
        assert env.sleeps == list(DELAYS)
        assert [s for _, s, _ in env.requests("query")] == [404] * 4

    async def test_unknown_task_without_confirmation(self, env: Env) -> None:
        token, _ = await env.start()
        with pytest.raises(TaskNotFound):
            await env.call("update", "f" * 32, token, 0, audio_only(), confirm_missing=False)
        assert env.sleeps == []

    async def test_idle_timeout_destroys_the_task(self, env: Env) -> None:
        body = audio_only(123, 456)
        transcoder(body)["idleTimeout"] = 60
        token, task = await env.start(body)
        env.emulator.set_present("test01", 123, False)
        env.emulator.set_present("test01", 456, False)
        env.emulator.advance_clock(59)
        assert isinstance(await env.call("query", task.task_id, token), Task)
        env.emulator.advance_clock(2)
        with pytest.raises(TaskNotFound):
            await env.call("query", task.task_id, token, confirm_missing=False)
        with pytest.raises(TaskNotFound):
            await env.call("update", task.task_id, token, 0, audio_only(123))
        assert env.sleeps == list(DELAYS)

    async def test_a_present_host_keeps_the_task(self, env: Env) -> None:
        body = audio_only(123, 456)
        transcoder(body)["idleTimeout"] = 60
        token, task = await env.start(body)
        env.emulator.set_present("test01", 123, False)
        env.emulator.advance_clock(3600)
        assert isinstance(await env.call("query", task.task_id, token), Task)


class TestRateLimit:
    async def test_429_backs_off_in_virtual_time(self, make_env: Callable[..., Env]) -> None:
        env = make_env(EmulatorConfig(qps=1))
        token = await env.call("acquire", "inst-1")
        task = await env.call("create", token, audio_only())  # 429, back off 5 s, created
        assert isinstance(task, Task)
        assert env.requests() == [
            ("acquire", 200, "acquired"),
            ("create", 429, "rate-limited"),
            ("create", 200, "created"),
        ]
        assert env.sleeps == [5.0]


class TestFaults:
    @pytest.mark.parametrize("fault", ["429", "500", "503", "504", "drop", "delay"])
    async def test_update_not_applied_is_resent(self, env: Env, fault: str) -> None:
        token, task = await env.start()
        env.emulator.add_fault("update", fault)
        new = audio_only(123, 789)
        assert isinstance(await env.call("update", task.task_id, token, 0, new), Updated)
        assert env.emulator.live_config(task.task_id) == transcoder(new)
        assert env.live()[0]["updateCount"] == 1 and env.live()[0]["staleUpdates"] == 0
        assert [(e.call, e.phase) for e in env.events][-3:] == [
            (Call.UPDATE, "send"),
            (Call.QUERY, "check"),
            (Call.UPDATE, "send"),
        ]
        assert env.sleeps == [5.0]

    @pytest.mark.parametrize("fault", ["commit-500", "commit-504", "commit-drop"])
    async def test_update_applied_then_failed_is_resent_as_stale(
        self, env: Env, fault: str
    ) -> None:
        token, task = await env.start()
        env.emulator.add_fault("update", fault)
        new = audio_only(123, 789)
        assert isinstance(await env.call("update", task.task_id, token, 0, new), Updated)
        assert env.emulator.live_config(task.task_id) == transcoder(new)
        assert env.live()[0]["updateCount"] == 1 and env.live()[0]["staleUpdates"] == 1

    async def test_update_202(self, env: Env) -> None:
        token, task = await env.start()
        env.emulator.add_fault("update", "202")
        result = await env.call("update", task.task_id, token, 0, audio_only(123))
        assert result == Accepted(Call.UPDATE, result.request_id, None)
        assert env.emulator.live_config(task.task_id) == transcoder(audio_only(123))

    async def test_update_fails_every_time(self, env: Env) -> None:
        token, task = await env.start()
        env.emulator.add_fault("update", "503", count=4)
        with pytest.raises(Exception) as info:
            await env.call("update", task.task_id, token, 0, audio_only(123))
        assert getattr(info.value, "status_code", None) == 503
        assert env.sleeps == list(DELAYS)
        assert len(env.requests("update")) == 4 and len(env.requests("query")) == 3

    @pytest.mark.parametrize("fault", ["commit-500", "commit-drop"])
    async def test_delete_applied_then_failed_is_gone(self, env: Env, fault: str) -> None:
        token, task = await env.start()
        env.emulator.add_fault("delete", fault)
        with pytest.raises(TaskNotFound):
            await env.call("delete", task.task_id, token)
        assert env.live() == [] and env.sleeps == [5.0]

    @pytest.mark.parametrize("fault", ["503", "drop", "delay"])
    async def test_delete_not_applied_is_resent(self, env: Env, fault: str) -> None:
        token, task = await env.start()
        env.emulator.add_fault("delete", fault)
        deleted = await env.call("delete", task.task_id, token)
        assert isinstance(deleted, Task) and deleted.ended and env.live() == []

    @pytest.mark.parametrize("kind", ["acquire", "query"])
    @pytest.mark.parametrize("fault", ["429", "500", "drop"])
    async def test_reads_retry(self, env: Env, kind: str, fault: str) -> None:
        token, task = await env.start()
        env.emulator.add_fault(kind, fault)
        if kind == "acquire":
            assert isinstance(await env.call("acquire", "inst-2"), BuilderToken)
        else:
            assert isinstance(await env.call("query", task.task_id, token), Task)
        assert env.sleeps == [5.0]

    async def test_acquire_202_carries_the_token(self, env: Env) -> None:
        env.emulator.add_fault("acquire", "202")
        token = await env.call("acquire", "inst-1")
        assert isinstance(token, BuilderToken) and env.sleeps == []
        assert isinstance(await env.call("create", token, audio_only()), Task)

    async def test_timeouts_and_drops_map_to_our_errors(self, env: Env) -> None:
        token, task = await env.start()
        env.emulator.add_fault("query", "drop", count=4)
        with pytest.raises(TransportError) as dropped:
            await env.call("query", task.task_id, token)
        assert isinstance(dropped.value.__cause__, ConnectionAbortedError)

    async def test_random_faults_converge(self, make_env: Callable[..., Env]) -> None:
        """Seeded random faults of every kind: each Update lands exactly once, one task."""
        env = make_env()
        token, task = await env.start(instance_id="chaos")
        env.emulator.set_random_faults(0.3, seed=11, kinds=("update", "query"))
        for sequence in range(12):
            body = audio_only(123, 1000 + sequence)
            result = await env.call("update", task.task_id, token, sequence, body)
            assert isinstance(result, Updated | Accepted)
            assert env.emulator.live_config(task.task_id) == transcoder(body)
        assert len(env.live()) == 1 and env.live()[0]["sequenceId"] == 11
        assert env.emulator.faults.fired > 0 and env.sleeps


# --- end to end: a real emulator process ---------------------------------------------------


@dataclass
class Process:
    proc: subprocess.Popen[str]
    base_url: str


@pytest.fixture
def emulator_process() -> Iterator[Process]:
    """``layoutsync emulator`` on a free loopback port (``--port 0``), stopped afterwards."""
    flags = [
        "--host", "127.0.0.1",
        "--app-id", "e2e-app", "--customer-key", "e2e-key", "--customer-secret", "e2e-secret",
        "--fault", "create:commit-drop:1", "--fault", "update:503:1", "--fault", "query:delay:1",
        "--fault-delay", "4",
    ]  # fmt: skip
    with run_emulator(*flags, cwd=ROOT, ready_timeout=20) as running:
        yield Process(running.process, running.base_url)


@pytest.mark.e2e
def test_end_to_end_against_a_real_emulator(emulator_process: Process) -> None:
    """Sockets and uvicorn: a dropped Create, a 503 Update and a real client timeout."""
    sleeps: list[float] = []
    events: list[ResponseEvent] = []
    client = Client(
        base_url=emulator_process.base_url,
        on_response=events.append,
        app_id="e2e-app",
        customer_key="e2e-key",
        customer_secret="e2e-secret",
        timeout=httpx.Timeout(2.0),
        retry=RetryPolicy(jitter=0.0),
        sleep=sleeps.append,
    )
    admin = httpx.Client(base_url=emulator_process.base_url, timeout=5.0)
    with client, admin:
        token = client.acquire("e2e-1")
        task = client.create(token, audio_only())  # commit then drop: re-sent, same token
        assert isinstance(task, Task)
        queried = client.query(task.task_id, token)  # 4 s delay vs 2 s timeout: asked again
        assert isinstance(queried, Task) and queried.task_id == task.task_id
        new = audio_only(123, 789)
        assert isinstance(client.update(task.task_id, token, 0, new), Updated)
        live = admin.get("/_emulator/tasks").json()["tasks"]
        assert [(t["taskId"], t["sequenceId"]) for t in live] == [(task.task_id, 0)]
        assert {r["rtc"]["rtcUid"] for r in live[0]["config"]["transcoder"]["audioInputs"]} == {
            123,
            789,
        }
        deleted = client.delete(task.task_id, token)
        assert isinstance(deleted, Task) and deleted.ended
        log = admin.get("/_emulator/requests").json()["requests"]
        creates = [r for r in log if r["kind"] == "create"]
        assert len(creates) == 2
        assert all(r["query"]["builderToken"] == "***" for r in creates)
        assert admin.get("/_emulator/tasks").json()["tasks"] == []
    assert sleeps == [5.0, 5.0, 5.0]
    failures = [(event.call, event.error) for event in events if event.status_code != 200]
    assert failures == [
        (Call.CREATE, TransportError.__name__),  # the body was cut short
        (Call.QUERY, RequestTimeout.__name__),  # a real timeout on a real socket
        (Call.UPDATE, None),  # 503
    ]
