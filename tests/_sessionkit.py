"""Shared set-up for the session tests: specs, an in-process emulator, clients that never wait."""

from __future__ import annotations

import contextlib
import copy
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from layoutsync.api.client import AsyncClient, Client, RetryPolicy
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
from layoutsync.spec import LayoutSpec, load_spec

IN_TOKEN = "input-SECRET-token-0001"
OUT_TOKEN = "output-SECRET-token-0002"
CHANNEL = "room7"

GRID: dict[str, Any] = {
    "instanceId": "room7-grid",
    "input": {"channel": CHANNEL, "token": IN_TOKEN},
    "output": {
        "channel": "room7-live",
        "uid": 9000,
        "token": OUT_TOKEN,
        "video": {"width": 1280, "height": 720, "fps": 15, "codec": "H264", "bitrate": 1500},
    },
    "canvas": {"color": 0},
    "placeholderImage": "https://cdn.example.com/offline.png",
    "idleTimeout": 60,
    "layout": {"template": "grid", "gap": 8, "padding": 16, "aspect": "16:9", "maxTiles": 16},
}


def spec_doc(**changes: Any) -> dict[str, Any]:
    """The grid spec with top-level keys replaced (``canvas={"color": 255}``...)."""
    doc = copy.deepcopy(GRID)
    doc.update(changes)
    return doc


def make_spec(**changes: Any) -> LayoutSpec:
    return load_spec(spec_doc(**changes))


class Clock:
    """The session's wall clock, moved by hand (token ages, idle spells)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def no_wait(_seconds: float) -> None:
    return None


async def no_wait_async(_seconds: float) -> None:
    return None


class Emulated:
    """An in-process emulator with its own manual clock, and clients wired to it."""

    def __init__(self, **config: Any) -> None:
        self.emulator = Emulator(EmulatorConfig(**config), clock=ManualClock())
        self.app = create_app(emulator=self.emulator)
        self._transports: list[SyncASGITransport] = []

    def client(
        self,
        *,
        retries: int = 3,
        backoff: float = 0.0,
        sleep: Callable[[float], None] = no_wait,
    ) -> Client:
        """A client on its own transport, backing off ``backoff`` seconds through ``sleep``."""
        transport = SyncASGITransport(self.app)
        self._transports.append(transport)
        return Client(
            base_url="http://emulator.test",
            app_id=DEFAULT_APP_ID,
            customer_key=DEFAULT_CUSTOMER_KEY,
            customer_secret=DEFAULT_CUSTOMER_SECRET,
            transport=transport,
            retry=RetryPolicy(delays=(backoff,) * retries, jitter=0.0),
            sleep=sleep,
        )

    def async_client(self, *, retries: int = 3) -> AsyncClient:
        return AsyncClient(
            base_url="http://emulator.test",
            app_id=DEFAULT_APP_ID,
            customer_key=DEFAULT_CUSTOMER_KEY,
            customer_secret=DEFAULT_CUSTOMER_SECRET,
            transport=httpx.ASGITransport(app=self.app),
            retry=RetryPolicy(delays=(0.0,) * retries, jitter=0.0),
            sleep=no_wait_async,
        )

    def close(self) -> None:
        for transport in self._transports:
            transport.close()

    # --- what the service holds -----------------------------------------------------------------

    def tasks(self, instance_id: str | None = None) -> list[dict[str, Any]]:
        return [
            t
            for t in self.emulator.tasks()
            if instance_id is None or t["instanceId"] == instance_id
        ]

    def only_task(self, instance_id: str) -> dict[str, Any]:
        tasks = self.tasks(instance_id)
        assert len(tasks) == 1, f"expected one task for {instance_id}, found {len(tasks)}"
        return tasks[0]

    def calls(self, kind: str) -> int:
        """How many requests of ``kind`` reached the service (any status)."""
        return len(self.emulator.requests(kind))

    def mutating_calls(self) -> int:
        return sum(self.calls(kind) for kind in ("acquire", "create", "update", "delete"))

    def stale_updates(self) -> int:
        return sum(t["staleUpdates"] for t in self.tasks())

    def host_absent(self, *uids: int, channel: str = CHANNEL) -> None:
        for uid in uids:
            self.emulator.set_present(channel, uid, False)

    def host_present(self, *uids: int, channel: str = CHANNEL) -> None:
        for uid in uids:
            self.emulator.set_present(channel, uid, True)


def live_equals_desired(emulated: Emulated, instance_id: str, body: dict[str, Any] | None) -> bool:
    """The task's last applied config equals the desired body's, real tokens included (a
    swapped or stale token is a difference, as it is for the service)."""
    task = emulated.only_task(instance_id)
    assert body is not None
    wanted = body["services"]["cloudTranscoder"]["config"]["transcoder"]
    return bool(emulated.emulator.live_config(task["taskId"]) == wanted)


def each_secret() -> Iterator[str]:
    yield IN_TOKEN
    yield OUT_TOKEN


# --- a real `layoutsync emulator` process -------------------------------------------------------


class EmulatorProcess:
    """``layoutsync emulator --port 0`` as a child process, with its admin API at hand."""

    def __init__(self, base_url: str, process: subprocess.Popen[str]) -> None:
        self.base_url = base_url
        self.process = process
        self.admin = httpx.Client(base_url=base_url, timeout=10)

    @property
    def env(self) -> dict[str, str]:
        """The client's environment for this emulator (what `layoutsync apply` reads)."""
        return {
            "LAYOUTSYNC_BASE_URL": self.base_url,
            "LAYOUTSYNC_APP_ID": DEFAULT_APP_ID,
            "LAYOUTSYNC_CUSTOMER_KEY": DEFAULT_CUSTOMER_KEY,
            "LAYOUTSYNC_CUSTOMER_SECRET": DEFAULT_CUSTOMER_SECRET,
        }

    def tasks(self, instance_id: str | None = None) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = self.admin.get("/_emulator/tasks").json()["tasks"]
        return [t for t in tasks if instance_id is None or t["instanceId"] == instance_id]

    def requests(self) -> list[dict[str, Any]]:
        return list(self.admin.get("/_emulator/requests").json()["requests"])

    def mutating_calls(self) -> int:
        kinds = ("acquire", "create", "update", "delete")
        return sum(1 for r in self.requests() if r["kind"] in kinds)

    def calls(self, kind: str) -> int:
        return sum(1 for r in self.requests() if r["kind"] == kind)


@contextlib.contextmanager
def emulator_process(*flags: str) -> Iterator[EmulatorProcess]:
    """Start the emulator on a free loopback port; stop it (SIGTERM) afterwards."""
    with run_emulator(*flags) as started:
        running = EmulatorProcess(started.base_url, started.process)
        try:
            yield running
        finally:
            running.admin.close()
