"""The daemon in process: its Starlette app over httpx.ASGITransport, the emulator behind it."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from layoutsync.api.client import RetryPolicy
from layoutsync.cli.daemon import parse_listen
from layoutsync.daemon.app import create_app
from layoutsync.daemon.metrics import DaemonMetrics
from layoutsync.daemon.runtime import Daemon, DaemonSettings, build_client
from layoutsync.daemon.webhooks import SIGNATURE_HEADER, SIGNATURE_V2_HEADER, sign
from layoutsync.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_CUSTOMER_KEY,
    DEFAULT_CUSTOMER_SECRET,
    EmulatorConfig,
)
from layoutsync.emulator import create_app as create_emulator
from layoutsync.logs import configure
from layoutsync.store import SqliteStore

API_TOKEN = "api-token-for-tests-5a1f"
NCS_SECRET = "ncs-secret-for-tests-77c2"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
OUTPUT_UID = 9000


def spec_doc(instance_id: str, channel: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "instanceId": instance_id,
        "input": {"channel": channel, "token": "007eJxINPUTTOKEN"},
        "output": {
            "channel": channel,
            "uid": OUTPUT_UID,
            "token": "007eJxOUTPUTTOKEN",
            "video": {"width": 1280, "height": 720},
        },
        "placeholderImage": "https://example.com/placeholder.png",
    }
    doc.update(extra)
    return doc


def write_spec(directory: Path, name: str, doc: dict[str, Any]) -> Path:
    path = directory / f"{name}.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Harness:
    """A running daemon, its HTTP app, and the emulator it talks to."""

    daemon: Daemon
    api: httpx.AsyncClient
    emu: httpx.AsyncClient
    config_dir: Path
    state: Path

    async def status(self, name: str) -> dict[str, Any]:
        response = await self.api.get(f"/v1/sessions/{name}", headers=AUTH)
        assert response.status_code == 200, response.text
        return response.json()

    async def tasks(self) -> list[dict[str, Any]]:
        return (await self.emu.get("/_emulator/tasks")).json()["tasks"]

    async def task_of(self, instance_id: str) -> dict[str, Any] | None:
        for task in await self.tasks():
            if task["instanceId"] == instance_id:
                return task
        return None

    async def calls(self, kind: str) -> int:
        return len(
            (await self.emu.get("/_emulator/requests", params={"kind": kind})).json()["requests"]
        )

    async def video_uids(self, instance_id: str) -> list[int]:
        task = await self.task_of(instance_id)
        if task is None:
            return []
        transcoder = task["config"]["transcoder"]
        return [item["rtc"]["rtcUid"] for item in transcoder.get("videoInputs", [])]

    async def quiet(self) -> None:
        """Nothing queued, nothing running (e.g. after the start-up reconcile of every session)."""

        async def idle() -> bool:
            return len(self.daemon.queue) == 0 and not self.daemon.queue.processing

        await eventually(idle, what="an idle queue")

    async def settled(self, name: str) -> None:
        async def idle() -> bool:
            pending = (await self.status(name))["pending"]
            return not (pending["queued"] or pending["running"] or pending["changes"])

        await eventually(idle, what=f"session {name} to settle")

    async def webhook(
        self, event_type: int, uid: int, seq: int, *, channel: str = "room", **headers: str
    ) -> httpx.Response:
        body = json.dumps(
            {
                "noticeId": f"n-{seq}",
                "productId": 1,
                "eventType": event_type,
                "notifyMs": 1_700_000_000_000 + seq,
                "payload": {"channelName": channel, "uid": uid, "clientSeq": seq, "ts": 1},
            }
        ).encode()
        signed = headers or {SIGNATURE_V2_HEADER: sign(NCS_SECRET, body)}
        return await self.api.post(
            "/v1/webhooks/agora",
            content=body,
            headers={"Content-Type": "application/json", **signed},
        )


def make_daemon(
    config_dir: Path,
    state: Path,
    emulator_app: Any,
    *,
    debounce: float = 0.01,
    backoff_base: float = 0.01,
    drain_timeout: float = 5.0,
) -> Daemon:
    settings = DaemonSettings(
        config=config_dir,
        state=state,
        debounce=debounce,
        concurrency=4,
        qps=1000.0,
        burst=1000,
        watch=False,
        backoff_base=backoff_base,
        backoff_cap=0.05,
        drain_timeout=drain_timeout,
    )
    metrics = DaemonMetrics(process=False)
    client = build_client(
        settings,
        metrics,
        transport=httpx.ASGITransport(app=emulator_app),
        base_url="http://emulator.test",
        app_id=DEFAULT_APP_ID,
        customer_key=DEFAULT_CUSTOMER_KEY,
        customer_secret=DEFAULT_CUSTOMER_SECRET,
        retry=RetryPolicy(delays=()),
    )
    store = SqliteStore(state, synchronous="NORMAL")
    daemon = Daemon(settings, client=client, store=store, metrics=metrics)
    daemon.load()
    return daemon


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "specs"
    directory.mkdir()
    write_spec(directory, "lobby", spec_doc("lobby-1", "room"))
    write_spec(directory, "mirror", spec_doc("mirror-1", "room", layout={"template": "speaker"}))
    write_spec(directory, "stage", spec_doc("stage-1", "stage", onEmpty="delete"))
    return directory


@pytest.fixture
def emulator_app() -> Any:
    return create_emulator(EmulatorConfig(seed=7))


@pytest.fixture
async def harness(
    config_dir: Path, tmp_path: Path, emulator_app: Any, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    debounce = getattr(request, "param", 0.01)
    daemon = make_daemon(config_dir, tmp_path / "state.db", emulator_app, debounce=debounce)
    app = create_app(daemon, api_token=API_TOKEN, ncs_secret=NCS_SECRET)
    await daemon.start()
    try:
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://daemon.test"
            ) as api,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=emulator_app), base_url="http://emulator.test"
            ) as emu,
        ):
            harness = Harness(daemon, api, emu, config_dir, tmp_path / "state.db")
            await harness.quiet()
            yield harness
    finally:
        await asyncio.wait_for(daemon.aclose(), 10.0)


pytestmark = pytest.mark.anyio


class TestProbes:
    """Health, readiness and metrics need no token."""

    async def test_healthz(self, harness: Harness) -> None:
        response = await harness.api.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response.headers["x-request-id"]

    async def test_readyz(self, harness: Harness) -> None:
        response = await harness.api.get("/readyz")
        assert response.status_code == 200
        assert response.json() == {
            "ready": True,
            "checks": {"specsLoaded": True, "running": True, "store": True},
        }

    async def test_readyz_fails_when_the_store_is_gone(self, harness: Harness) -> None:
        harness.daemon.store.close()  # type: ignore[attr-defined]
        response = await harness.api.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["store"] is False

    async def test_request_id_is_echoed(self, harness: Harness) -> None:
        response = await harness.api.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"

    async def test_metrics_are_exposed(self, harness: Harness) -> None:
        await harness.api.put("/v1/sessions/lobby/hosts/101", headers=AUTH)
        await eventually(
            lambda: _async(harness.daemon.get("lobby").session.status().task_id is not None),
            what="a task",
        )
        text = (await harness.api.get("/metrics")).text
        assert 'layoutsync_events_total{source="api",type="join"} 1.0' in text
        assert 'layoutsync_api_calls_total{call="create",status="200"} 1.0' in text
        assert 'layoutsync_reconciles_total{action="create"} 1.0' in text
        assert "layoutsync_reconcile_duration_seconds_bucket" in text
        assert "layoutsync_sessions 3.0" in text
        assert "layoutsync_queue_depth" in text


async def _async(value: bool) -> bool:
    return value


ROUTES = [
    ("GET", "/v1/sessions", None),
    ("GET", "/v1/sessions/lobby", None),
    ("PUT", "/v1/sessions/lobby/hosts/101", None),
    ("DELETE", "/v1/sessions/lobby/hosts/101", None),
    ("PUT", "/v1/sessions/lobby/hosts", {"hosts": [101]}),
    ("PUT", "/v1/sessions/lobby/speaker", {"uid": 101}),
    ("POST", "/v1/sessions/lobby/reconcile", None),
]


class TestAuth:
    """Every /v1 route but the webhook needs the bearer token; a refusal changes nothing."""

    @pytest.mark.parametrize(("method", "path", "body"), ROUTES)
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": API_TOKEN},
            {"Authorization": f"bearer {API_TOKEN}x"},
            {"Authorization": "Bearer \xe9".encode("latin-1")},
        ],
    )
    async def test_401(
        self, harness: Harness, method: str, path: str, body: Any, headers: dict[str, Any]
    ) -> None:
        response = await harness.api.request(method, path, json=body, headers=headers)
        assert response.status_code == 401
        assert "bearer token" in response.json()["error"]
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert harness.daemon.get("lobby").session.hosts == ()
        assert "lobby" not in harness.daemon.queue

    async def test_the_token_never_appears_in_logs(self, harness: Harness) -> None:
        out = io.StringIO()
        configure(json=True, level="debug", stream=out)
        await harness.api.get("/v1/sessions", headers={"Authorization": "Bearer wrong"})
        await harness.api.put("/v1/sessions/lobby/hosts/101", headers=AUTH)
        await harness.webhook(103, 555, 1, **{SIGNATURE_V2_HEADER: "0" * 64})
        await harness.webhook(103, 556, 2)
        await harness.settled("lobby")
        logged = out.getvalue()
        assert "unauthorized" in logged
        assert "webhook signature rejected" in logged
        for secret in (API_TOKEN, NCS_SECRET, DEFAULT_CUSTOMER_SECRET, "007eJx"):
            assert secret not in logged


class TestDesiredState:
    """Desired-state routes answer 202 at once; the queue then converges the live task."""

    async def test_join_creates_the_task(self, harness: Harness) -> None:
        response = await harness.api.put("/v1/sessions/lobby/hosts/101", headers=AUTH)
        assert response.status_code == 202
        assert response.json() == {
            "session": "lobby",
            "accepted": True,
            "uid": 101,
            "change": "join",
        }
        await harness.settled("lobby")
        assert await harness.video_uids("lobby-1") == [101]
        status = await harness.status("lobby")
        assert status["hosts"] == [101]
        assert status["visible"] == [101]
        assert status["taskId"] == (await harness.task_of("lobby-1"))["taskId"]  # type: ignore[index]
        assert status["lastAction"] == "create"
        assert status["lastError"] is None
        assert status["pending"] == {
            "changes": False,
            "queued": False,
            "running": False,
            "failures": 0,
            "refreshDue": False,
        }

    async def test_join_then_leave_updates(self, harness: Harness) -> None:
        for uid in (101, 102):
            await harness.api.put(f"/v1/sessions/lobby/hosts/{uid}", headers=AUTH)
        await harness.settled("lobby")
        response = await harness.api.delete("/v1/sessions/lobby/hosts/101", headers=AUTH)
        assert response.status_code == 202
        await harness.settled("lobby")
        assert await harness.video_uids("lobby-1") == [102]
        assert (await harness.status("lobby"))["sequenceId"] is not None

    async def test_put_hosts_and_speaker(self, harness: Harness) -> None:
        response = await harness.api.put(
            "/v1/sessions/mirror/hosts", json={"hosts": [201, 202, 203]}, headers=AUTH
        )
        assert response.status_code == 202
        response = await harness.api.put(
            "/v1/sessions/mirror/speaker", json={"uid": 202}, headers=AUTH
        )
        assert response.status_code == 202
        await harness.settled("mirror")
        status = await harness.status("mirror")
        assert status["hosts"] == [201, 202, 203]
        assert status["speaker"] == 202
        assert sorted(await harness.video_uids("mirror-1")) == [201, 202, 203]
        response = await harness.api.put(
            "/v1/sessions/mirror/speaker", json={"uid": None}, headers=AUTH
        )
        assert response.status_code == 202
        assert (await harness.status("mirror"))["speaker"] is None

    @pytest.mark.parametrize("harness", [0.3], indirect=True)
    async def test_a_burst_of_joins_is_one_create(self, harness: Harness) -> None:
        responses = await asyncio.gather(
            *(
                harness.api.put(f"/v1/sessions/lobby/hosts/{uid}", headers=AUTH)
                for uid in range(1001, 1051)
            )
        )
        assert {response.status_code for response in responses} == {202}
        await harness.settled("lobby")
        assert await harness.calls("create") == 1
        assert await harness.calls("update") <= 1
        status = await harness.status("lobby")
        assert len(status["hosts"]) == 50
        # 36 tiles fit 1280x720 (16:9, no gap); the 14 others are heard, not seen
        assert len(status["visible"]) == 36
        assert len(status["overflowed"]) == 14
        assert sorted(await harness.video_uids("lobby-1")) == sorted(status["visible"])
        task = await harness.task_of("lobby-1")
        assert task is not None
        audio = [item["rtc"]["rtcUid"] for item in task["config"]["transcoder"]["audioInputs"]]
        assert sorted(audio) == list(range(1001, 1051))

    async def test_reconcile_now(self, harness: Harness) -> None:
        harness.daemon.get("stage").session.host_joined(301)  # behind the queue's back
        response = await harness.api.post("/v1/sessions/stage/reconcile", headers=AUTH)
        assert response.status_code == 200
        body = response.json()
        assert body["session"] == "stage"
        assert body["action"] == "create"
        assert body["calls"] == ["acquire", "create"]
        assert body["error"] is None
        assert body["taskId"]
        again = (await harness.api.post("/v1/sessions/stage/reconcile", headers=AUTH)).json()
        assert again["action"] == "noop"
        assert again["calls"] == []

    async def test_list_sessions(self, harness: Harness) -> None:
        response = await harness.api.get("/v1/sessions", headers=AUTH)
        assert response.status_code == 200
        body = response.json()
        assert [item["name"] for item in body["sessions"]] == ["lobby", "mirror", "stage"]
        assert body["configErrors"] == {}
        assert body["total"] == 3
        assert "007eJx" not in response.text

    async def test_list_sessions_by_page(self, harness: Harness) -> None:
        async def page(query: str) -> tuple[list[str], int]:
            body = (await harness.api.get(f"/v1/sessions?{query}", headers=AUTH)).json()
            return [item["name"] for item in body["sessions"]], body["total"]

        assert await page("limit=2") == (["lobby", "mirror"], 3)
        assert await page("offset=2&limit=2") == (["stage"], 3)
        assert await page("offset=1") == (["mirror", "stage"], 3)
        assert await page("offset=5") == ([], 3)
        assert await page("limit=0") == ([], 3)


BAD_REQUESTS = [
    ("GET", "/v1/sessions?limit=-1", None, "limit: '-1' is not a count; give an integer from 0"),
    ("GET", "/v1/sessions?offset=two", None, "offset: 'two' is not a count"),
    ("GET", "/v1/sessions?limit=%D9%A3", None, "limit:"),  # an Arabic-Indic 3
    ("PUT", "/v1/sessions/lobby/hosts/0", None, "uid: 0 is outside 1..4294967295"),
    ("PUT", "/v1/sessions/lobby/hosts/4294967296", None, "outside"),
    ("PUT", "/v1/sessions/lobby/hosts/-5", None, "not an integer uid"),
    ("PUT", "/v1/sessions/lobby/hosts/abc", None, "not an integer uid"),
    ("PUT", "/v1/sessions/lobby/hosts/1.5", None, "not an integer uid"),
    ("PUT", "/v1/sessions/lobby/hosts/%D9%A3", None, "not an integer uid"),  # Arabic-Indic 3
    ("PUT", f"/v1/sessions/lobby/hosts/{OUTPUT_UID}", None, "own output uid"),
    ("DELETE", "/v1/sessions/lobby/hosts/0", None, "outside"),
    ("PUT", "/v1/sessions/lobby/hosts", b"{not json", "malformed JSON"),
    ("PUT", "/v1/sessions/lobby/hosts", b"", "empty body"),
    ("PUT", "/v1/sessions/lobby/hosts", b"[101]", "expected a JSON object"),
    ("PUT", "/v1/sessions/lobby/hosts", {"hosts": 101}, "hosts: required, a JSON array"),
    ("PUT", "/v1/sessions/lobby/hosts", {"host": [101]}, "hosts: required"),
    ("PUT", "/v1/sessions/lobby/hosts", {"hosts": [101, "102"]}, "hosts[1]"),
    ("PUT", "/v1/sessions/lobby/hosts", {"hosts": [101, True]}, "hosts[1]"),
    ("PUT", "/v1/sessions/lobby/hosts", {"hosts": [101, 0]}, "hosts[1]: 0 is outside"),
    ("PUT", "/v1/sessions/lobby/hosts", {"hosts": [101, 101]}, "listed twice"),
    ("PUT", "/v1/sessions/lobby/hosts", {"hosts": [101, OUTPUT_UID]}, "own output uid"),
    ("PUT", "/v1/sessions/lobby/hosts", {"hosts": [101], "x": 1}, "unknown key(s) 'x'"),
    ("PUT", "/v1/sessions/lobby/speaker", {}, "uid: required"),
    ("PUT", "/v1/sessions/lobby/speaker", {"uid": "101"}, "not an integer uid"),
    ("PUT", "/v1/sessions/lobby/speaker", {"uid": 1.0}, "not an integer uid"),
    ("PUT", "/v1/sessions/lobby/speaker", b"{", "malformed JSON"),
]


class TestRejected:
    """400 and 404 answers name the problem, and leave desired state as it was."""

    @pytest.fixture
    async def seeded(self, harness: Harness) -> Harness:
        await harness.api.put("/v1/sessions/lobby/hosts", json={"hosts": [7, 8]}, headers=AUTH)
        await harness.api.put("/v1/sessions/lobby/speaker", json={"uid": 8}, headers=AUTH)
        await harness.settled("lobby")
        return harness

    @pytest.mark.parametrize(("method", "path", "body", "message"), BAD_REQUESTS)
    async def test_400(
        self, seeded: Harness, method: str, path: str, body: Any, message: str
    ) -> None:
        before = await seeded.status("lobby")
        kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
        response = await seeded.api.request(method, path, headers=AUTH, **kwargs)
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]
        after = await seeded.status("lobby")
        assert (
            (after["hosts"], after["speaker"])
            == (before["hosts"], before["speaker"])
            == (
                [7, 8],
                8,
            )
        )
        assert not after["pending"]["queued"]

    @pytest.mark.parametrize(("method", "path", "body"), ROUTES[1:])
    async def test_unknown_session_is_404(
        self, seeded: Harness, method: str, path: str, body: Any
    ) -> None:
        response = await seeded.api.request(
            method, path.replace("/lobby", "/nope"), json=body, headers=AUTH
        )
        assert response.status_code == 404
        assert response.json()["error"] == "no session named 'nope'"

    async def test_unknown_route_and_method(self, seeded: Harness) -> None:
        response = await seeded.api.get("/v2/nothing", headers=AUTH)
        assert response.status_code == 404
        assert response.json()["error"]
        response = await seeded.api.post("/v1/sessions/lobby/hosts/5", headers=AUTH)
        assert response.status_code == 405

    async def test_body_too_large(self, seeded: Harness) -> None:
        response = await seeded.api.put(
            "/v1/sessions/lobby/hosts", content=b"{" + b" " * (1 << 21) + b"}", headers=AUTH
        )
        assert response.status_code == 413


class TestWebhooks:
    """Signed NCS events drive joins and leaves of every session on the channel."""

    async def test_join_and_leave(self, harness: Harness) -> None:
        response = await harness.webhook(103, 501, 10)
        assert response.status_code == 200
        assert response.json() == {"ok": True, "eventType": 103, "sessions": ["lobby", "mirror"]}
        await harness.settled("lobby")
        await harness.settled("mirror")
        assert await harness.video_uids("lobby-1") == [501]
        assert await harness.video_uids("mirror-1") == [501]
        assert (await harness.webhook(104, 501, 11)).status_code == 200
        await harness.settled("lobby")
        assert (await harness.status("lobby"))["hosts"] == []

    @pytest.mark.parametrize(
        ("event_type", "joined"), [(107, True), (111, True), (108, False), (112, False)]
    )
    async def test_other_host_events(self, harness: Harness, event_type: int, joined: bool) -> None:
        harness.daemon.get("lobby").session.host_joined(600)
        response = await harness.webhook(event_type, 601 if joined else 600, 3)
        assert response.json()["sessions"] == ["lobby", "mirror"]
        lobby = harness.daemon.get("lobby").session.hosts
        mirror = harness.daemon.get("mirror").session.hosts
        if joined:
            assert (lobby, mirror) == ((600, 601), (601,))
        else:
            assert (lobby, mirror) == ((), ())

    async def test_out_of_order_client_seq_is_ignored(self, harness: Harness) -> None:
        await harness.webhook(103, 502, 20)
        response = await harness.webhook(104, 502, 19)  # a leave from before the join
        assert response.json() == {
            "ok": True,
            "eventType": 104,
            "ignored": "clientSeq not above the last seen",
        }
        duplicate = await harness.webhook(103, 502, 20)  # a resend
        assert duplicate.json()["ignored"] == "clientSeq not above the last seen"
        assert harness.daemon.get("lobby").session.hosts == (502,)

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {SIGNATURE_V2_HEADER: "0" * 64},
            {SIGNATURE_HEADER: "0" * 40},
            {SIGNATURE_V2_HEADER: sign("another-secret", b"x")},
        ],
    )
    async def test_bad_signatures_are_401_and_change_nothing(
        self, harness: Harness, headers: dict[str, str]
    ) -> None:
        response = await harness.webhook(103, 503, 30, **(headers or {"X-None": "1"}))
        assert response.status_code == 401
        assert "signature" in response.json()["error"]
        assert harness.daemon.get("lobby").session.hosts == ()
        assert harness.daemon.seqs.last_seq("room", 503) is None
        # the genuine event still applies afterwards
        assert (await harness.webhook(103, 503, 30)).json()["sessions"] == ["lobby", "mirror"]

    async def test_sha1_signature_alone_is_accepted(self, harness: Harness) -> None:
        body = json.dumps(
            {
                "noticeId": "x",
                "productId": 1,
                "eventType": 103,
                "payload": {"channelName": "stage", "uid": 7, "clientSeq": 1},
            }
        ).encode()
        response = await harness.api.post(
            "/v1/webhooks/agora",
            content=body,
            headers={SIGNATURE_HEADER: sign(NCS_SECRET, body, header=SIGNATURE_HEADER).upper()},
        )
        assert response.status_code == 200
        assert response.json()["sessions"] == ["stage"]

    async def test_ignored_events(self, harness: Harness) -> None:
        response = await harness.webhook(105, 504, 1)  # audience join
        assert response.json()["ignored"] == "event type not handled"
        response = await harness.webhook(103, 504, 1, channel="elsewhere")
        assert response.json()["ignored"] == "no session for this channel"
        response = await harness.webhook(103, OUTPUT_UID, 1)  # the transcoder's own stream
        assert response.json()["ignored"] == "the transcoder's own output uid"
        assert harness.daemon.get("lobby").session.hosts == ()

    async def test_malformed_signed_body_is_400(self, harness: Harness) -> None:
        body = b'{"productId": 1, "eventType": 103, "payload": {"channelName": "room"}}'
        response = await harness.api.post(
            "/v1/webhooks/agora",
            content=body,
            headers={SIGNATURE_V2_HEADER: sign(NCS_SECRET, body)},
        )
        assert response.status_code == 400
        assert "payload.uid" in response.json()["error"]

    async def test_metrics_count_verified_events_and_rejections(self, harness: Harness) -> None:
        await harness.webhook(103, 505, 1)
        await harness.webhook(103, 505, 1, **{SIGNATURE_V2_HEADER: "bad"})
        text = (await harness.api.get("/metrics")).text
        # an unverified body is never parsed, so only its rejection is counted
        assert 'layoutsync_events_total{source="webhook",type="103"} 1.0' in text
        assert 'layoutsync_events_ignored_total{reason="signature mismatch"} 1.0' in text


class TestReload:
    """Spec files added, edited and removed while running."""

    async def test_a_new_file_adds_a_session(self, harness: Harness) -> None:
        write_spec(harness.config_dir, "annex", spec_doc("annex-1", "annex"))
        changes = await harness.daemon.reload()
        assert [loaded.name for loaded in changes.added] == ["annex"]
        assert (
            await harness.api.put("/v1/sessions/annex/hosts/11", headers=AUTH)
        ).status_code == 202
        await harness.settled("annex")
        assert await harness.video_uids("annex-1") == [11]

    async def test_an_invalid_edit_keeps_the_previous_spec(self, harness: Harness) -> None:
        await harness.api.put("/v1/sessions/lobby/hosts/12", headers=AUTH)
        await harness.settled("lobby")
        path = harness.config_dir / "lobby.json"
        path.write_text('{"instanceId": "lobby-1", "input": 5}')
        await harness.daemon.reload()
        status = await harness.status("lobby")
        assert "/input" in status["configError"]
        listing = (await harness.api.get("/v1/sessions", headers=AUTH)).json()
        assert "lobby" in listing["configErrors"]
        # still managed with the previous spec
        assert (
            await harness.api.put("/v1/sessions/lobby/hosts/13", headers=AUTH)
        ).status_code == 202
        await harness.settled("lobby")
        assert await harness.video_uids("lobby-1") == [12, 13]

    async def test_an_edit_is_applied(self, harness: Harness) -> None:
        await harness.api.put("/v1/sessions/lobby/hosts/14", headers=AUTH)
        await harness.settled("lobby")
        write_spec(harness.config_dir, "lobby", spec_doc("lobby-1", "room", idleTimeout=60))
        changes = await harness.daemon.reload()
        assert [loaded.name for loaded in changes.changed] == ["lobby"]
        await harness.settled("lobby")
        task = await harness.task_of("lobby-1")
        assert task is not None
        assert task["config"]["transcoder"]["idleTimeout"] == 60

    async def test_removing_an_on_empty_delete_spec_deletes_its_task(
        self, harness: Harness
    ) -> None:
        await harness.api.put("/v1/sessions/stage/hosts/21", headers=AUTH)
        await harness.settled("stage")
        assert await harness.task_of("stage-1") is not None
        (harness.config_dir / "stage.json").unlink()
        await harness.daemon.reload()
        assert (await harness.api.get("/v1/sessions/stage", headers=AUTH)).status_code == 404

        async def gone() -> bool:
            return await harness.task_of("stage-1") is None

        await eventually(gone, what="the task to be deleted")

    async def test_removing_an_on_empty_idle_spec_leaves_its_task(self, harness: Harness) -> None:
        await harness.api.put("/v1/sessions/lobby/hosts/22", headers=AUTH)
        await harness.settled("lobby")
        (harness.config_dir / "lobby.json").unlink()
        await harness.daemon.reload()
        await eventually(lambda: _async("lobby" not in harness.daemon._retiring), what="retirement")
        assert (await harness.api.get("/v1/sessions/lobby", headers=AUTH)).status_code == 404
        assert await harness.task_of("lobby-1") is not None
        assert await harness.calls("delete") == 0


class TestLifecycle:
    """Stopping drains what was accepted; a restart resumes from the state file."""

    async def test_stop_drains_and_restart_sends_no_create(
        self, config_dir: Path, tmp_path: Path, emulator_app: Any
    ) -> None:
        state = tmp_path / "state.db"
        first = make_daemon(config_dir, state, emulator_app, debounce=3600.0)
        await first.start()
        first.host_joined("lobby", 31)
        first.host_joined("lobby", 32)
        # the debounce window is an hour: only the drain can send this
        await asyncio.wait_for(first.aclose(), 10.0)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=emulator_app), base_url="http://emulator.test"
        ) as emu:
            tasks = (await emu.get("/_emulator/tasks")).json()["tasks"]
            [task] = [t for t in tasks if t["instanceId"] == "lobby-1"]
            second = make_daemon(config_dir, state, emulator_app)
            await second.start()
            try:
                managed = second.get("lobby")
                assert managed.session.hosts == (31, 32)
                assert managed.session.status().task_id == task["taskId"]
                second.host_joined("lobby", 33)
                await eventually(
                    lambda: _async(managed.last_result is not None and not second.queue),
                    what="a reconcile",
                )
                assert managed.last_result is not None
                assert managed.last_result.action == "update"
            finally:
                await asyncio.wait_for(second.aclose(), 10.0)
            creates = (await emu.get("/_emulator/requests", params={"kind": "create"})).json()
            assert len(creates["requests"]) == 1

    async def test_resync_notices_an_idle_destroyed_task_and_recreates_it(
        self, harness: Harness
    ) -> None:
        await harness.api.put("/v1/sessions/lobby/hosts/51", headers=AUTH)
        await harness.settled("lobby")
        first = await harness.task_of("lobby-1")
        assert first is not None
        # the host leaves the emulated channel: past idleTimeout the service ends the task
        await harness.emu.delete("/_emulator/channels/room/hosts/51")
        await harness.emu.post("/_emulator/clock", json={"advance": 301})
        assert await harness.task_of("lobby-1") is None
        harness.daemon.schedule_resync(0.0)

        async def recreated() -> bool:
            task = await harness.task_of("lobby-1")
            return task is not None and task["taskId"] != first["taskId"]

        await eventually(recreated, what="the task to be created again")
        await harness.quiet()
        assert await harness.calls("create") == 2
        assert await harness.video_uids("lobby-1") == [51]

    async def test_failures_back_off_then_converge(self, harness: Harness) -> None:
        faults = {"kind": "create", "action": "500", "count": 2}
        assert (await harness.emu.post("/_emulator/faults", json=faults)).status_code == 200
        await harness.api.put("/v1/sessions/lobby/hosts/41", headers=AUTH)

        async def created() -> bool:
            return await harness.task_of("lobby-1") is not None

        await eventually(created, what="the task after two failures")
        await harness.settled("lobby")
        text = (await harness.api.get("/metrics")).text
        assert 'layoutsync_reconciles_total{action="error"}' in text
        assert (await harness.status("lobby"))["pending"]["failures"] == 0


class TestListen:
    """--listen HOST:PORT, IPv6 in brackets; anything else is refused with the reason."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("127.0.0.1:8080", ("127.0.0.1", 8080)),
            ("localhost:0", ("localhost", 0)),
            ("[::1]:9000", ("::1", 9000)),
            ("0.0.0.0:80", ("0.0.0.0", 80)),
        ],
    )
    def test_valid(self, text: str, expected: tuple[str, int]) -> None:
        assert parse_listen(text) == expected

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("8080", "expected HOST:PORT"),
            (":8080", "expected HOST:PORT"),
            ("127.0.0.1:http", "port must be a number"),
            ("127.0.0.1:65536", "port must be a number"),
        ],
    )
    def test_invalid(self, text: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            parse_listen(text)
