"""``Client`` and ``AsyncClient`` over ``httpx.MockTransport``: configuration, the exact
request sequences of every retry path, error mapping, hooks and logs without secrets.

Every test runs against both clients (the ``flavour`` fixture). Sleeps and the
jitter's random source are injected: nothing here waits.
"""

from __future__ import annotations

import base64
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from layoutsync.api.client import (
    DEFAULT_BASE_URL,
    ENV_APP_ID,
    ENV_BASE_URL,
    ENV_CUSTOMER_KEY,
    ENV_CUSTOMER_SECRET,
    AsyncClient,
    Client,
    RetryPolicy,
)
from layoutsync.api.models import Accepted, BuilderToken, Call, ResponseEvent, Task, Updated
from layoutsync.api.protocol import MalformedResponse
from layoutsync.errors import (
    BadRequest,
    Forbidden,
    InstanceConflict,
    LayoutsyncError,
    RateLimited,
    RequestTimeout,
    ServerError,
    TaskNotFound,
    TransportError,
    Unauthorized,
)

APP = "app1"
KEY = "ck-KEY-123"
SECRET = "cs-SECRET-456"
TOKEN = "bt/SECRET+tok=="
TASK = "c0077139e34d0949c719189a393aa7c0"
BODY = {
    "services": {
        "cloudTranscoder": {
            "serviceType": "cloudTranscoderV2",
            "config": {"transcoder": {"audioInputs": [{"rtc": {"rtcToken": "rtc-SECRET-7"}}]}},
        }
    }
}
SECRETS = (
    KEY,
    SECRET,
    TOKEN,
    "rtc-SECRET-7",
    base64.b64encode(f"{KEY}:{SECRET}".encode()).decode(),
)


def task_json(status: str = "IN_PROGRESS", sequence: str = "0") -> dict[str, Any]:
    return {
        "createTs": 1661420011,
        "sequenceId": sequence,
        "services": {"cloudTranscoder": {"config": {}, "status": "serviceInProgress"}},
        "status": status,
        "taskId": TASK,
    }


def ok(body: Any = None, status: int = 200, request_id: str | None = "rid") -> httpx.Response:
    headers = {"X-Request-ID": request_id} if request_id else {}
    if body is None:
        return httpx.Response(status, content=b"", headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def fail(status: int, message: str = "nope", **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"message": message, **extra})


TASK_OK = ok(task_json())
TOKEN_OK = ok({"tokenName": TOKEN, "createTs": 1661324606, "instanceId": "inst-1"})


class Script:
    """A MockTransport handler answering from a list; records every request it gets."""

    def __init__(self, *answers: httpx.Response | BaseException) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        # A fresh response each time: templates are shared between tests and clients.
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.read())

    def calls(self) -> list[tuple[str, str]]:
        """(method, last path segment) of each request, e.g. ("GET", TASK)."""
        return [(r.method, r.url.path.rsplit("/", 1)[-1]) for r in self.requests]


@dataclass
class Harness:
    """One client (sync or async) plus what it slept; ``await h.call(name, ...)`` for both."""

    client: Client | AsyncClient
    script: Script
    sleeps: list[float] = field(default_factory=list)
    events: list[ResponseEvent] = field(default_factory=list)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, method)(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    async def close(self) -> None:
        if isinstance(self.client, AsyncClient):
            await self.client.aclose()
        else:
            self.client.close()


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(flavour: str) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(*answers: httpx.Response | BaseException, **kwargs: Any) -> Harness:
        script = Script(*answers)
        sleeps: list[float] = []
        events: list[ResponseEvent] = []
        options: dict[str, Any] = {
            "app_id": APP,
            "customer_key": KEY,
            "customer_secret": SECRET,
            "retry": RetryPolicy(random=lambda: 0.5),  # jitter factor exactly 1
            "transport": httpx.MockTransport(script),
            "on_response": events.append,
            **kwargs,
        }
        if flavour == "sync":
            client: Client | AsyncClient = Client(sleep=sleeps.append, **options)
        else:

            async def sleep(seconds: float) -> None:
                sleeps.append(seconds)

            client = AsyncClient(sleep=sleep, **options)
        harness = Harness(client, script, sleeps, events)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        if isinstance(harness.client, Client):
            harness.client.close()


pytestmark = pytest.mark.anyio


# --- configuration ------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (ENV_BASE_URL, ENV_APP_ID, ENV_CUSTOMER_KEY, ENV_CUSTOMER_SECRET):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class TestConfiguration:
    @pytest.mark.parametrize("cls", [Client, AsyncClient])
    @pytest.mark.parametrize(
        ("missing", "what"),
        [(ENV_APP_ID, "app id"), (ENV_CUSTOMER_KEY, "customer key"),
         (ENV_CUSTOMER_SECRET, "customer secret")],
    )  # fmt: skip
    def test_missing_setting_names_the_variable(
        self, clean_env: pytest.MonkeyPatch, cls: type, missing: str, what: str
    ) -> None:
        for name, value in (
            (ENV_APP_ID, APP),
            (ENV_CUSTOMER_KEY, KEY),
            (ENV_CUSTOMER_SECRET, SECRET),
        ):
            if name != missing:
                clean_env.setenv(name, value)
        clean_env.setenv(missing, "")
        with pytest.raises(LayoutsyncError) as info:
            cls()
        assert missing in str(info.value) and what in str(info.value)

    async def test_environment_is_the_default(self, clean_env: pytest.MonkeyPatch) -> None:
        clean_env.setenv(ENV_APP_ID, "env-app")
        clean_env.setenv(ENV_CUSTOMER_KEY, KEY)
        clean_env.setenv(ENV_CUSTOMER_SECRET, SECRET)
        script = Script(TASK_OK)
        with Client(transport=httpx.MockTransport(script)) as client:
            assert str(client.base_url) == DEFAULT_BASE_URL
            client.query(TASK, TOKEN)
        request = script.requests[0]
        assert str(request.url).startswith(
            f"https://api.sd-rtn.com/v1/projects/env-app/rtsc/cloud-transcoder/tasks/{TASK}?"
        )

    def test_arguments_win_over_the_environment(self, clean_env: pytest.MonkeyPatch) -> None:
        clean_env.setenv(ENV_APP_ID, "env-app")
        clean_env.setenv(ENV_BASE_URL, "http://env.invalid")
        client = Client(base_url="http://127.0.0.1:1/prefix", app_id="arg-app", customer_key=KEY,
                        customer_secret=SECRET)  # fmt: skip
        assert client.app_id == "arg-app"
        assert str(client.base_url) == "http://127.0.0.1:1/prefix"
        client.close()

    @pytest.mark.parametrize("url", ["ftp://x", "not a url", "http://", "//host/x"])
    def test_bad_base_url(self, clean_env: pytest.MonkeyPatch, url: str) -> None:
        with pytest.raises(LayoutsyncError, match=ENV_BASE_URL):
            Client(base_url=url, app_id=APP, customer_key=KEY, customer_secret=SECRET)

    async def test_headers_and_base_path(self, make: Callable[..., Harness]) -> None:
        h = make(TASK_OK, base_url="http://emu.local:8089/prefix")
        await h.call("query", TASK, TOKEN)
        request = h.script.requests[0]
        expected = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
        assert request.headers["authorization"] == expected
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == "layoutsync"
        assert request.url.path == f"/prefix/v1/projects/{APP}/rtsc/cloud-transcoder/tasks/{TASK}"
        assert request.url.params["builderToken"] == TOKEN  # encoded on the wire, decoded here
        assert b"%2F" in request.url.query and b"%2B" in request.url.query

    def test_repr_has_no_secret(self) -> None:
        client = Client(app_id=APP, customer_key=KEY, customer_secret=SECRET)
        text = repr(client)
        assert APP in text and not any(secret in text for secret in SECRETS)
        client.close()

    async def test_closed_client_refuses(self, make: Callable[..., Harness]) -> None:
        h = make(TASK_OK)
        await h.close()
        await h.close()  # idempotent
        with pytest.raises(LayoutsyncError, match="closed"):
            await h.call("query", TASK, TOKEN)
        assert h.script.requests == []

    async def test_async_context_manager(self) -> None:
        script = Script(TASK_OK)
        client = AsyncClient(app_id=APP, customer_key=KEY, customer_secret=SECRET,
                             transport=httpx.MockTransport(script))  # fmt: skip
        async with client as entered:
            assert entered is client
            assert isinstance(await client.query(TASK, TOKEN), Task)
        with pytest.raises(LayoutsyncError):
            await client.query(TASK, TOKEN)


# --- the five calls ----------------------------------------------------------------


class TestCalls:
    async def test_each_call_on_the_wire(self, make: Callable[..., Harness]) -> None:
        h = make(TOKEN_OK, TASK_OK, TASK_OK, ok(), ok(task_json("STOPPED")))
        token = await h.call("acquire", "inst-1")
        assert token == BuilderToken(TOKEN, 1661324606.0, "inst-1")
        assert isinstance(await h.call("create", token, BODY), Task)
        assert isinstance(await h.call("query", TASK, token), Task)
        assert await h.call("update", TASK, TOKEN, 4, BODY) == Updated("rid")
        deleted = await h.call("delete", TASK, TOKEN)
        assert isinstance(deleted, Task) and deleted.ended
        wire = [(r.method, r.url.path, dict(r.url.params), r.content) for r in h.script.requests]
        base = f"/v1/projects/{APP}/rtsc/cloud-transcoder"
        body = orjson.dumps(BODY)
        assert wire == [
            ("POST", f"{base}/builderTokens", {}, b'{"instanceId":"inst-1"}'),
            ("POST", f"{base}/tasks", {"builderToken": TOKEN}, body),
            ("GET", f"{base}/tasks/{TASK}", {"builderToken": TOKEN}, b""),
            ("PATCH", f"{base}/tasks/{TASK}",
             {"builderToken": TOKEN, "sequenceId": "4",
              "updateMask": "services.cloudTranscoder.config"}, body),
            ("DELETE", f"{base}/tasks/{TASK}", {"builderToken": TOKEN}, b""),
        ]  # fmt: skip
        assert h.sleeps == []

    async def test_202_is_returned_as_accepted(self, make: Callable[..., Harness]) -> None:
        h = make(ok({"taskId": TASK}, status=202), ok(None, status=202))
        assert await h.call("create", TOKEN, BODY) == Accepted(Call.CREATE, "rid", TASK)
        assert await h.call("update", TASK, TOKEN, 0, BODY) == Accepted(Call.UPDATE, "rid", None)

    async def test_201_on_create_is_the_task(self, make: Callable[..., Harness]) -> None:
        h = make(ok(task_json("STARTED"), status=201))
        task = await h.call("create", TOKEN, BODY)
        assert isinstance(task, Task) and task.task_id == TASK

    async def test_no_cookie_is_kept_or_sent_back(self, make: Callable[..., Harness]) -> None:
        # The API sets none; a stray Set-Cookie (a proxy's, a load balancer's) is ignored.
        cookie = httpx.Response(200, json=task_json(), headers={"Set-Cookie": "lb=node-7; Path=/"})
        h = make(cookie, TASK_OK)
        await h.call("query", TASK, TOKEN)
        await h.call("query", TASK, TOKEN)
        assert [r.headers.get("cookie") for r in h.script.requests] == [None, None]
        assert not h.client._http.cookies


# --- retries --------------------------------------------------------------------------


class TestRetries:
    async def test_update_after_503_queries_then_resends_the_same_request(
        self, make: Callable[..., Harness]
    ) -> None:
        h = make(fail(503), TASK_OK, ok())
        assert isinstance(await h.call("update", TASK, TOKEN, 9, BODY), Updated)
        assert h.script.calls() == [("PATCH", TASK), ("GET", TASK), ("PATCH", TASK)]
        first, _, again = h.script.requests
        assert again.url == first.url and again.content == first.content
        assert again.url.params["sequenceId"] == "9"
        assert h.sleeps == [5.0]

    @pytest.mark.parametrize(
        "failure",
        [fail(429), fail(500), fail(504), httpx.ReadTimeout("slow"), httpx.ConnectError("refused"),
         ConnectionAbortedError("dropped"), httpx.RemoteProtocolError("cut short")],
    )  # fmt: skip
    async def test_transient_failures_back_off(
        self, make: Callable[..., Harness], failure: Any
    ) -> None:
        h = make(failure, TASK_OK, ok())
        assert isinstance(await h.call("update", TASK, TOKEN, 1, BODY), Updated)
        assert h.sleeps == [5.0]

    async def test_jitter_comes_from_the_policy(self, make: Callable[..., Harness]) -> None:
        h = make(fail(503), fail(503), TASK_OK, retry=RetryPolicy(random=lambda: 0.0))
        await h.call("query", TASK, TOKEN)
        assert h.sleeps == [pytest.approx(4.0), pytest.approx(8.0)]

    async def test_delays_run_out_then_the_last_error(self, make: Callable[..., Harness]) -> None:
        h = make(fail(503), TASK_OK, fail(500), TASK_OK, fail(429), TASK_OK, fail(504))
        with pytest.raises(ServerError) as info:
            await h.call("update", TASK, TOKEN, 1, BODY)
        assert info.value.status_code == 504 and info.value.call == "update"
        assert h.sleeps == [5.0, 10.0, 15.0]
        assert [m for m, _ in h.script.calls()] == ["PATCH", "GET"] * 3 + ["PATCH"]

    async def test_custom_delays(self, make: Callable[..., Harness]) -> None:
        h = make(fail(429), fail(429), retry=RetryPolicy(delays=(0.25,), jitter=0))
        with pytest.raises(RateLimited):
            await h.call("acquire", "inst-1")
        assert h.sleeps == [0.25]

    @pytest.mark.parametrize(
        ("status", "error"), [(400, BadRequest), (401, Unauthorized), (403, Forbidden)]
    )
    async def test_never_retried(
        self, make: Callable[..., Harness], status: int, error: type[Exception]
    ) -> None:
        h = make(fail(status))
        with pytest.raises(error):
            await h.call("update", TASK, TOKEN, 1, BODY)
        assert len(h.script.requests) == 1 and h.sleeps == []

    async def test_timeouts_map_to_request_timeout(self, make: Callable[..., Harness]) -> None:
        h = make(*[httpx.ReadTimeout("read timed out")] * 4, retry=RetryPolicy(jitter=0))
        with pytest.raises(RequestTimeout) as info:
            await h.call("acquire", "inst-1")
        assert isinstance(info.value.__cause__, httpx.ReadTimeout)
        assert info.value.call == "acquire"
        assert len(h.script.requests) == 4 and h.sleeps == [5.0, 10.0, 15.0]

    @pytest.mark.parametrize(
        "error",
        [httpx.ConnectError("refused"), ConnectionAbortedError("dropped"), OSError(5, "io")],
    )
    async def test_transport_errors_map(self, make: Callable[..., Harness], error: Any) -> None:
        h = make(error, retry=RetryPolicy(delays=()))
        with pytest.raises(TransportError) as info:
            await h.call("query", TASK, TOKEN)
        assert type(info.value) is TransportError
        assert info.value.__cause__ is error

    async def test_transport_error_text_has_no_token(self, make: Callable[..., Harness]) -> None:
        h = make(httpx.ConnectError(f"failed for ?builderToken={TOKEN}"), retry=RetryPolicy(()))
        with pytest.raises(TransportError) as info:
            await h.call("query", TASK, TOKEN)
        assert TOKEN not in str(info.value)

    async def test_app_errors_are_not_swallowed(self, make: Callable[..., Harness]) -> None:
        h = make(RuntimeError("bug in the transport"))
        with pytest.raises(RuntimeError):
            await h.call("query", TASK, TOKEN)

    async def test_malformed_success_is_raised_at_once(self, make: Callable[..., Harness]) -> None:
        h = make(httpx.Response(200, content=b"<html>"))
        with pytest.raises(MalformedResponse):
            await h.call("query", TASK, TOKEN)
        assert h.sleeps == []


class TestCreateRetries:
    @pytest.mark.parametrize("status", [200, 201])
    async def test_retried_create_reuses_the_token(
        self, make: Callable[..., Harness], status: int
    ) -> None:
        h = make(ConnectionAbortedError("dropped"), ok(task_json("STARTED"), status=status))
        task = await h.call("create", TOKEN, BODY)
        assert isinstance(task, Task) and task.task_id == TASK
        first, again = h.script.requests
        assert first.url == again.url and first.content == again.content
        assert again.url.params["builderToken"] == TOKEN
        assert h.sleeps == [5.0]

    async def test_409_naming_the_task_is_adopted(self, make: Callable[..., Harness]) -> None:
        h = make(fail(503), fail(409, "exists", taskId=TASK), TASK_OK)
        task = await h.call("create", TOKEN, BODY)
        assert isinstance(task, Task) and task.task_id == TASK
        assert h.script.calls() == [("POST", "tasks"), ("POST", "tasks"), ("GET", TASK)]
        assert h.script.requests[2].url.params["builderToken"] == TOKEN
        assert [e.phase for e in h.events] == ["send", "send", "adopt"]

    async def test_409_of_another_token_raises(self, make: Callable[..., Harness]) -> None:
        h = make(fail(409, "exists", taskId=TASK), fail(400, "not this task's token"))
        with pytest.raises(InstanceConflict) as info:
            await h.call("create", TOKEN, BODY)
        assert isinstance(info.value.__cause__, BadRequest)
        assert info.value.body == {"message": "exists", "taskId": TASK}

    async def test_409_without_task_raises(self, make: Callable[..., Harness]) -> None:
        h = make(fail(409, "exists"))
        with pytest.raises(InstanceConflict):
            await h.call("create", TOKEN, BODY)
        assert len(h.script.requests) == 1


class TestMissingTasks:
    async def test_404_is_confirmed_with_queries(self, make: Callable[..., Harness]) -> None:
        h = make(fail(404), fail(404), fail(404), fail(404))
        with pytest.raises(TaskNotFound):
            await h.call("update", TASK, TOKEN, 2, BODY)
        assert h.script.calls() == [("PATCH", TASK)] + [("GET", TASK)] * 3
        assert h.sleeps == [5.0, 10.0, 15.0]

    async def test_404_that_was_wrong(self, make: Callable[..., Harness]) -> None:
        h = make(fail(404), TASK_OK, ok())
        assert isinstance(await h.call("update", TASK, TOKEN, 2, BODY), Updated)
        assert h.script.calls() == [("PATCH", TASK), ("GET", TASK), ("PATCH", TASK)]

    @pytest.mark.parametrize("method", ["query", "delete"])
    async def test_confirm_missing_false(self, make: Callable[..., Harness], method: str) -> None:
        h = make(fail(404))
        with pytest.raises(TaskNotFound):
            await h.call(method, TASK, TOKEN, confirm_missing=False)
        assert len(h.script.requests) == 1 and h.sleeps == []

    async def test_delete_answer_lost_then_gone(self, make: Callable[..., Harness]) -> None:
        h = make(httpx.ReadTimeout("slow"), fail(404))
        with pytest.raises(TaskNotFound):
            await h.call("delete", TASK, TOKEN)
        assert h.sleeps == [5.0]

    async def test_delete_answer_lost_then_stopped(self, make: Callable[..., Harness]) -> None:
        h = make(fail(503), ok(task_json("STOPPED")))
        task = await h.call("delete", TASK, TOKEN)
        assert isinstance(task, Task) and task.ended
        assert h.script.calls() == [("DELETE", TASK), ("GET", TASK)]


# --- observability without secrets -------------------------------------------------------


class TestObservability:
    async def test_on_response_sees_every_exchange(self, make: Callable[..., Harness]) -> None:
        h = make(httpx.ReadTimeout("slow"), TASK_OK, ok(request_id="r-9"))
        await h.call("update", TASK, TOKEN, 3, BODY)
        seen = [(e.call, e.phase, e.status_code, e.error, e.attempt) for e in h.events]
        assert seen == [
            (Call.UPDATE, "send", None, "RequestTimeout", 1),
            (Call.QUERY, "check", 200, None, 2),
            (Call.UPDATE, "send", 200, None, 3),
        ]
        assert h.events[-1].request_id == "r-9"
        assert all(e.elapsed >= 0 for e in h.events)
        assert not any(secret in repr(h.events) for secret in SECRETS)

    async def test_logs_carry_no_secret(self, make: Callable[..., Harness]) -> None:
        echo = f"bad token {TOKEN} and rtc-SECRET-7"
        h = make(TOKEN_OK, fail(503, echo), fail(409, echo, taskId=TASK), TASK_OK, fail(400, echo))
        with capture_logs() as logs:
            token = await h.call("acquire", "inst-1")
            await h.call("create", token, BODY)
            with pytest.raises(BadRequest) as info:
                await h.call("update", TASK, token, 1, BODY)
        text = repr(logs) + str(info.value) + repr(info.value) + repr(token)
        assert not any(secret in text for secret in SECRETS)
        responses = [e for e in logs if e["event"] == "api.response"]
        assert [e["status"] for e in responses] == [200, 503, 409, 200, 400]
        assert responses[1]["query"] == {"builderToken": "***"}
        assert {e["log_level"] for e in responses} == {"debug"}
        backoffs = [e for e in logs if e["event"] == "api.backoff"]
        assert [(e["call"], e["delay_s"]) for e in backoffs] == [("create", 5.0)]
