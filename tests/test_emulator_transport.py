"""SyncASGITransport: sync httpx clients served in-process by the emulator app."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from emulator_helpers import AUTH, BASE, av_transcoder, body, update_params

from layoutsync.emulator import EmulatorConfig, SyncASGITransport, create_app


def _portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "SyncASGITransport" and t.is_alive()]


@pytest.fixture
def app():
    return create_app(EmulatorConfig(seed=1))


@pytest.fixture
def client(app) -> Iterator[httpx.Client]:
    with httpx.Client(
        transport=SyncASGITransport(app),
        base_url="http://emulator",
        headers={"Authorization": AUTH},
    ) as c:
        yield c


def test_a_sync_client_runs_the_whole_lifecycle(client: httpx.Client, app) -> None:
    acquired = client.post(f"{BASE}/builderTokens", json={"instanceId": "sync"})
    assert acquired.status_code == 200
    token = acquired.json()["tokenName"]
    created = client.post(
        f"{BASE}/tasks", params={"builderToken": token}, json=body(av_transcoder())
    )
    assert created.status_code == 200
    task_id = created.json()["taskId"]
    changed = av_transcoder((101, 102, 103))
    updated = client.patch(
        f"{BASE}/tasks/{task_id}", params=update_params(token, 0), json=body(changed)
    )
    assert (updated.status_code, updated.content) == (200, b"")
    assert client.get(f"{BASE}/tasks/{task_id}", params={"builderToken": token}).status_code == 200
    deleted = client.delete(f"{BASE}/tasks/{task_id}", params={"builderToken": token})
    assert deleted.json()["taskId"] == task_id
    assert deleted.headers["X-Request-ID"]
    assert app.state.emulator.tasks() == []


def test_concurrent_calls_from_several_threads(client: httpx.Client, app) -> None:
    def acquire(n: int) -> str:
        response = client.post(f"{BASE}/builderTokens", json={"instanceId": f"i{n}"})
        assert response.status_code == 200
        return str(response.json()["tokenName"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        tokens = list(pool.map(acquire, range(80)))
    assert len(set(tokens)) == 80
    assert len(app.state.emulator.requests("acquire")) == 80


def test_app_exceptions_propagate_as_is(client: httpx.Client, app) -> None:
    app.state.emulator.add_fault("acquire", "commit-drop")
    with pytest.raises(ConnectionAbortedError):
        client.post(f"{BASE}/builderTokens", json={"instanceId": "x"})
    # The transport keeps working after an exception.
    assert client.post(f"{BASE}/builderTokens", json={"instanceId": "x"}).status_code == 200


def test_streamed_request_bodies_are_read(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"instance'
        yield b'Id": "streamed"}'

    response = client.post(
        f"{BASE}/builderTokens", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["instanceId"] == "streamed"


def test_close_stops_the_loop_and_a_later_request_restarts_it(app) -> None:
    before = len(_portal_threads())
    transport = SyncASGITransport(app)
    with transport:
        assert len(_portal_threads()) == before + 1
        with httpx.Client(transport=transport, base_url="http://emulator") as c:
            assert c.get("/_emulator/health").status_code == 200
    assert len(_portal_threads()) == before
    transport.close()  # idempotent
    restarted = httpx.Client(transport=transport, base_url="http://emulator")
    assert restarted.get("/_emulator/health").status_code == 200
    restarted.close()
    assert len(_portal_threads()) == before
