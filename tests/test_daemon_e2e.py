"""End to end: ``layoutsync emulator`` and ``layoutsync daemon`` as real processes on loopback.

Both pick a free port themselves (``--port 0`` / ``--listen 127.0.0.1:0``) and
print it; every wait polls with a deadline, and every child is killed in
``finally``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from layoutsync.daemon.webhooks import SIGNATURE_V2_HEADER, sign
from layoutsync.emulator import DEFAULT_APP_ID, DEFAULT_CUSTOMER_KEY, DEFAULT_CUSTOMER_SECRET

pytestmark = pytest.mark.e2e

API_TOKEN = "e2e-api-token-3b9d"
NCS_SECRET = "e2e-ncs-secret-81fa"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
START_TIMEOUT = 30.0
WAIT = 15.0


def wait_until(check: Callable[[], Any], *, timeout: float = WAIT, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Child:
    """A child process whose output goes to a file we can poll."""

    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(f"{self.log.name}: did not exit within {timeout} s") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def spawn(args: list[str], log: Path, env: dict[str, str], url_pattern: str) -> Child:
    """Start ``layoutsync ARGS``; wait until its output names the URL it listens on."""
    handle = log.open("ab")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "layoutsync", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    finally:
        handle.close()
    child = Child(process, log)
    offset = log.stat().st_size if log.exists() else 0
    try:

        def listening() -> str | None:
            if process.poll() is not None:
                raise AssertionError(
                    f"{' '.join(args[:1])} exited {process.returncode}:\n{child.output()}"
                )
            found = re.findall(url_pattern, child.output()[offset:])
            return found[-1] if found else None

        child.url = wait_until(listening, timeout=START_TIMEOUT, what=f"{args[0]} to listen")
    except BaseException:
        child.kill()
        raise
    return child


def spec_doc(instance_id: str, channel: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "instanceId": instance_id,
        "input": {"channel": channel, "token": "007eJxE2EINPUT"},
        "output": {
            "channel": f"{channel}-live",
            "uid": 9000,
            "token": "007eJxE2EOUTPUT",
            "video": {"width": 1280, "height": 720},
        },
        "placeholderImage": "https://example.com/placeholder.png",
    }
    doc.update(extra)
    return doc


@dataclass
class World:
    tmp: Path
    emulator: Child
    env: dict[str, str]
    specs: Path
    state: Path
    daemons: list[Child]

    def start_daemon(self, *extra: str) -> Child:
        child = spawn(
            [
                "daemon",
                "--config",
                str(self.specs),
                "--listen",
                "127.0.0.1:0",
                "--state",
                str(self.state),
                "--debounce",
                "0.5",
                "--qps",
                "200",
                "--burst",
                "50",
                *extra,
            ],
            self.tmp / "daemon.log",
            self.env,
            r'"url": "(http://127\.0\.0\.1:\d+)"',
        )
        self.daemons.append(child)

        def ready() -> bool:
            try:
                return httpx.get(f"{child.url}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, what="the daemon to be ready")
        return child

    def emu(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.emulator.url}{path}", params=params, timeout=5)
        response.raise_for_status()
        return response.json()

    def creates(self) -> int:
        return len(self.emu("/_emulator/requests", kind="create")["requests"])

    def updates(self) -> int:
        return len(self.emu("/_emulator/requests", kind="update")["requests"])

    def task(self, instance_id: str) -> dict[str, Any] | None:
        for task in self.emu("/_emulator/tasks")["tasks"]:
            if task["instanceId"] == instance_id:
                return task  # type: ignore[no-any-return]
        return None

    def video_uids(self, instance_id: str) -> list[int]:
        task = self.task(instance_id)
        if task is None:
            return []
        inputs = task["config"]["transcoder"].get("videoInputs", [])
        return sorted(item["rtc"]["rtcUid"] for item in inputs)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("LAYOUTSYNC_") and key != "PYTHONWARNINGS"
    }
    emulator = spawn(
        [
            "emulator",
            "--port",
            "0",
            "--customer-key",
            DEFAULT_CUSTOMER_KEY,
            "--customer-secret",
            DEFAULT_CUSTOMER_SECRET,
        ],
        tmp_path / "emulator.log",
        env,
        r"listening on (http://127\.0\.0\.1:\d+)",
    )
    env.update(
        LAYOUTSYNC_BASE_URL=emulator.url,
        LAYOUTSYNC_APP_ID=DEFAULT_APP_ID,
        LAYOUTSYNC_CUSTOMER_KEY=DEFAULT_CUSTOMER_KEY,
        LAYOUTSYNC_CUSTOMER_SECRET=DEFAULT_CUSTOMER_SECRET,
        LAYOUTSYNC_API_TOKEN=API_TOKEN,
        LAYOUTSYNC_NCS_SECRET=NCS_SECRET,
    )
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "hall.json").write_text(json.dumps(spec_doc("hall-1", "hall")))
    world = World(tmp_path, emulator, env, specs, tmp_path / "state.db", [])
    try:
        yield world
    finally:
        for child in world.daemons:
            child.kill()
        emulator.kill()


def session(daemon: Child, name: str) -> dict[str, Any]:
    response = httpx.get(f"{daemon.url}/v1/sessions/{name}", headers=AUTH, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def settled(daemon: Child, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = session(daemon, name)
        pending = status["pending"]
        busy = pending["changes"] or pending["queued"] or pending["running"]
        return None if busy else status

    return wait_until(check, what=f"session {name} to settle")  # type: ignore[no-any-return]


def webhook(
    daemon: Child,
    event_type: int,
    uid: int,
    seq: int,
    *,
    secret: str = NCS_SECRET,
    channel: str = "hall",
) -> httpx.Response:
    body = json.dumps(
        {
            "noticeId": f"e2e:{seq}:{event_type}",
            "productId": 1,
            "eventType": event_type,
            "notifyMs": int(time.time() * 1000),
            "payload": {
                "channelName": channel,
                "uid": uid,
                "clientSeq": seq,
                "ts": int(time.time()),
            },
        }
    ).encode()
    return httpx.post(
        f"{daemon.url}/v1/webhooks/agora",
        content=body,
        headers={"Content-Type": "application/json", SIGNATURE_V2_HEADER: sign(secret, body)},
        timeout=5,
    )


def test_fifty_joins_make_one_create(world: World) -> None:
    daemon = world.start_daemon()
    uids = list(range(2001, 2051))
    with (
        httpx.Client(base_url=daemon.url, headers=AUTH, timeout=10) as api,
        ThreadPoolExecutor(max_workers=10) as pool,
    ):
        statuses = list(pool.map(lambda uid: api.put(f"/v1/sessions/hall/hosts/{uid}"), uids))
    assert {response.status_code for response in statuses} == {202}
    status = settled(daemon, "hall")
    assert world.creates() == 1
    assert world.updates() <= 1
    assert sorted(status["hosts"]) == uids
    # grid 1280x720, 16:9, no gap: 36 tiles; the 14 others are heard, not seen
    assert len(status["visible"]) == 36
    assert len(status["overflowed"]) == 14
    assert world.video_uids("hall-1") == sorted(status["visible"])
    task = world.task("hall-1")
    assert task is not None
    audio = sorted(item["rtc"]["rtcUid"] for item in task["config"]["transcoder"]["audioInputs"])
    assert audio == uids
    metrics = httpx.get(f"{daemon.url}/metrics", timeout=5).text
    assert 'layoutsync_api_calls_total{call="create",status="200"} 1.0' in metrics
    assert daemon.stop() == 0


def test_signed_webhooks_drive_joins_and_leaves(world: World) -> None:
    daemon = world.start_daemon()
    assert webhook(daemon, 103, 3001, 10).json()["sessions"] == ["hall"]
    settled(daemon, "hall")
    assert world.video_uids("hall-1") == [3001]

    assert webhook(daemon, 103, 3002, 5).status_code == 200
    settled(daemon, "hall")
    assert world.video_uids("hall-1") == [3001, 3002]

    wrong = webhook(daemon, 104, 3001, 11, secret="not-the-secret")
    assert wrong.status_code == 401
    # An accepted leave changes the desired hosts before it is answered: nothing changed.
    rejected = session(daemon, "hall")
    assert rejected["hosts"] == [3001, 3002]
    assert rejected["pending"]["changes"] is False
    assert world.video_uids("hall-1") == [3001, 3002]

    stale = webhook(daemon, 104, 3002, 4)  # a leave older than the join already applied
    assert stale.status_code == 200
    assert stale.json()["ignored"] == "clientSeq not above the last seen"
    assert session(daemon, "hall")["hosts"] == [3001, 3002]

    assert webhook(daemon, 104, 3001, 11).json()["sessions"] == ["hall"]
    settled(daemon, "hall")
    assert world.video_uids("hall-1") == [3002]
    assert world.creates() == 1
    assert daemon.stop() == 0


def test_sigterm_drains_and_a_restart_sends_no_create(world: World) -> None:
    daemon = world.start_daemon()
    with httpx.Client(base_url=daemon.url, headers=AUTH, timeout=10) as api:
        assert api.put("/v1/sessions/hall/hosts", json={"hosts": [4001, 4002]}).status_code == 202
        settled(daemon, "hall")
        task = world.task("hall-1")
        assert task is not None
        # accepted, then SIGTERM inside the debounce window: the drain must still send it
        assert api.put("/v1/sessions/hall/hosts/4003").status_code == 202
    assert daemon.stop() == 0
    assert world.video_uids("hall-1") == [4001, 4002, 4003]
    assert world.creates() == 1
    updates = world.updates()

    again = world.start_daemon()
    status = settled(again, "hall")
    assert status["taskId"] == task["taskId"]
    assert status["hosts"] == [4001, 4002, 4003]
    assert world.creates() == 1
    assert world.updates() == updates  # the start-up reconcile found nothing to send
    with httpx.Client(base_url=again.url, headers=AUTH, timeout=10) as api:
        assert api.delete("/v1/sessions/hall/hosts/4001").status_code == 202
    status = settled(again, "hall")
    assert world.video_uids("hall-1") == [4002, 4003]
    assert world.creates() == 1
    assert status["sequenceId"] is not None
    assert again.stop() == 0


def test_webhook_ordering_survives_a_restart(world: World) -> None:
    daemon = world.start_daemon()
    assert webhook(daemon, 103, 6001, 20).json()["sessions"] == ["hall"]
    assert webhook(daemon, 103, 6002, 30).json()["sessions"] == ["hall"]
    settled(daemon, "hall")
    assert webhook(daemon, 104, 6001, 21).json()["sessions"] == ["hall"]
    settled(daemon, "hall")
    assert world.video_uids("hall-1") == [6002]
    assert daemon.stop() == 0

    again = world.start_daemon()
    settled(again, "hall")
    # Agora retries the join late, after the leave and after the restart.
    late = webhook(again, 103, 6001, 20)
    assert late.json()["ignored"] == "clientSeq not above the last seen"
    assert session(again, "hall")["hosts"] == [6002]
    assert webhook(again, 104, 6002, 29).json()["ignored"] == "clientSeq not above the last seen"
    assert webhook(again, 104, 6002, 31).json()["sessions"] == ["hall"]
    assert again.stop() == 0


def test_a_new_spec_file_adds_a_session(world: World) -> None:
    daemon = world.start_daemon()
    (world.specs / "annex.json").write_text(json.dumps(spec_doc("annex-1", "annex")))

    def listed() -> bool:
        response = httpx.get(f"{daemon.url}/v1/sessions", headers=AUTH, timeout=5)
        return "annex" in [item["name"] for item in response.json()["sessions"]]

    wait_until(listed, what="the new session")
    response = httpx.put(f"{daemon.url}/v1/sessions/annex/hosts/5001", headers=AUTH, timeout=5)
    assert response.status_code == 202
    settled(daemon, "annex")
    assert world.video_uids("annex-1") == [5001]
    assert daemon.stop() == 0


def test_refuses_to_start_without_secrets_or_with_a_bad_spec(world: World) -> None:
    env = {k: v for k, v in world.env.items() if k != "LAYOUTSYNC_NCS_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "layoutsync", "daemon", "--config", str(world.specs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "LAYOUTSYNC_NCS_SECRET not set" in result.stderr
    assert "Traceback" not in result.stderr

    (world.specs / "broken.json").write_text('{"instanceId": "b", "input": {}}')
    result = subprocess.run(
        [sys.executable, "-m", "layoutsync", "daemon", "--config", str(world.specs)],
        env=world.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "broken.json: /input/channel" in result.stderr
    assert "Traceback" not in result.stderr

    (world.specs / "broken.json").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "layoutsync", "daemon", "--config", str(world.specs),
         "--full-gc-interval", "-5"],
        env=world.env,
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--full-gc-interval: '-5' is not allowed: give a number 0 or more" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_with_a_backlog_stops_at_the_drain_timeout_and_says_what_it_left(
    world: World,
) -> None:
    # still in its debounce window at the SIGTERM; at --qps 1 the Create waits about a
    # second for its token, after the Acquire: more than the drain allows
    daemon = world.start_daemon("--qps", "1", "--debounce", "5", "--drain-timeout", "0.3")
    with httpx.Client(base_url=daemon.url, headers=AUTH, timeout=10) as api:
        assert api.put("/v1/sessions/hall/hosts", json={"hosts": [4001]}).status_code == 202
    assert daemon.stop() == 0
    lines = [json.loads(line) for line in daemon.output().splitlines() if line.startswith("{")]
    (stopped,) = [line for line in lines if line["event"] == "daemon stopped"]
    assert (stopped["queued"], stopped["reconciled"], stopped["left"]) == (1, 0, 1)
    (warning,) = [line for line in lines if line["event"].startswith("drain left work undone")]
    assert warning["left_sessions"] == ["hall"]
    assert warning["drain_timeout"] == 0.3
    assert world.creates() == 0
