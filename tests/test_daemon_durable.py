"""Nothing the daemon acknowledges is lost: desired inputs are in the store before 202/200.

In process (the daemon's app and the emulator over ``httpx.ASGITransport``);
the real-process SIGKILL runs are in ``test_daemon_crash.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_daemon_app import (
    API_TOKEN,
    AUTH,
    NCS_SECRET,
    Harness,
    eventually,
    make_daemon,
)
from test_daemon_app import config_dir as config_dir  # the fixtures
from test_daemon_app import emulator_app as emulator_app
from test_daemon_app import harness as harness

from layoutsync.daemon.app import create_app
from layoutsync.errors import StateError
from layoutsync.store import DesiredInputs, SqliteStore

pytestmark = pytest.mark.anyio


def on_disk(state: Path, name: str) -> DesiredInputs | None:
    """What another process reading the file now (a restart after SIGKILL) would find."""
    with SqliteStore(state) as store:
        return store.load_desired(name)


class TestAcknowledgedIsDurable:
    """Read back from ``desired_inputs``, which only the journal writes (never a reconcile)."""

    async def test_a_202_join_is_on_disk_before_any_reconcile(self, harness: Harness) -> None:
        response = await harness.api.put("/v1/sessions/lobby/hosts/41", headers=AUTH)
        assert response.status_code == 202
        desired = on_disk(harness.state, "lobby")
        assert desired is not None and desired.hosts == (41,)

    async def test_speaker_and_host_sets_too(self, harness: Harness) -> None:
        hosts = await harness.api.put(
            "/v1/sessions/mirror/hosts", json={"hosts": [5, 6]}, headers=AUTH
        )
        speaker = await harness.api.put(
            "/v1/sessions/mirror/speaker", json={"uid": 6}, headers=AUTH
        )
        assert (hosts.status_code, speaker.status_code) == (202, 202)
        assert on_disk(harness.state, "mirror") == DesiredInputs(
            (5, 6), 6, pytest.approx(0, abs=1e10)
        )  # type: ignore[arg-type]

    async def test_a_200_webhook_and_its_client_seq_are_on_disk(self, harness: Harness) -> None:
        response = await harness.webhook(103, 77, 12)
        assert response.json()["sessions"] == ["lobby", "mirror"]
        for name in ("lobby", "mirror"):
            desired = on_disk(harness.state, name)
            assert desired is not None and desired.hosts == (77,)
        with SqliteStore(harness.state) as store:
            assert [row[:4] for row in store.load_client_seqs()] == [("room", 77, 12, None)]

    async def test_events_that_arrive_together_share_a_transaction(self, harness: Harness) -> None:
        journal = harness.daemon.journal
        before = journal.stats.batches
        responses = await asyncio.gather(
            *(
                harness.api.put(f"/v1/sessions/lobby/hosts/{uid}", headers=AUTH)
                for uid in range(100, 150)
            )
        )
        assert {r.status_code for r in responses} == {202}
        batches = journal.stats.batches - before
        assert 1 <= batches < 25, batches  # 50 events, far fewer transactions
        desired = on_disk(harness.state, "lobby")
        assert desired is not None and set(desired.hosts) == set(range(100, 150))

    async def test_a_store_failure_answers_503_and_the_retry_is_written(
        self, harness: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store: Any = harness.daemon.store
        real = store.save_inputs
        failures = [StateError("disk full")]

        def flaky(*args: Any, **kwargs: Any) -> None:
            if failures:
                raise failures.pop()
            real(*args, **kwargs)

        monkeypatch.setattr(store, "save_inputs", flaky)
        first = await harness.webhook(103, 88, 5)
        assert first.status_code == 503 and "not acknowledged" in first.json()["error"]
        assert on_disk(harness.state, "lobby") is None
        # NCS sends it again: its clientSeq is known in memory, yet it is written now
        again = await harness.webhook(103, 88, 5)
        assert again.status_code == 200
        assert again.json()["ignored"] == "clientSeq not above the last seen"
        desired = on_disk(harness.state, "lobby")
        assert desired is not None and desired.hosts == (88,)
        with SqliteStore(harness.state) as reader:
            assert [row[:3] for row in reader.load_client_seqs()] == [("room", 88, 5)]


class TestRestart:
    async def test_what_a_cut_short_drain_left_undone_is_done_after_restart(
        self, config_dir: Path, tmp_path: Path, emulator_app: Any
    ) -> None:
        """SIGTERM with no time to drain (issue 16): the restart finishes the job."""
        state = tmp_path / "state.db"

        async def slow_service(scope: Any, receive: Any, send: Any) -> None:
            await asyncio.sleep(5.0)  # longer than the drain: the calls are cut off
            await emulator_app(scope, receive, send)

        first = make_daemon(config_dir, state, slow_service, debounce=3600.0, drain_timeout=0.05)
        app = create_app(first, api_token=API_TOKEN, ncs_secret=NCS_SECRET, manage_lifecycle=False)
        await first.start()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://daemon.test"
        ) as api:
            for uid in (61, 62):
                assert (
                    await api.put(f"/v1/sessions/lobby/hosts/{uid}", headers=AUTH)
                ).status_code == 202
        await asyncio.wait_for(first.aclose(), 10.0)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=emulator_app), base_url="http://emulator.test"
        ) as emu:
            tasks = (await emu.get("/_emulator/tasks")).json()["tasks"]
            assert [t for t in tasks if t["instanceId"] == "lobby-1"] == []  # nothing was sent
            second = make_daemon(config_dir, state, emulator_app)
            await second.start()
            try:
                assert second.get("lobby").session.hosts == (61, 62)

                async def created() -> bool:
                    tasks = (await emu.get("/_emulator/tasks")).json()["tasks"]
                    return any(t["instanceId"] == "lobby-1" for t in tasks)

                await eventually(created, what="the owed Create")
            finally:
                await asyncio.wait_for(second.aclose(), 10.0)
            tasks = (await emu.get("/_emulator/tasks")).json()["tasks"]
            [task] = [t for t in tasks if t["instanceId"] == "lobby-1"]
            uids = [i["rtc"]["rtcUid"] for i in task["config"]["transcoder"]["videoInputs"]]
            assert uids == [61, 62]


class TestCompaction:
    async def test_compact_keeps_only_the_live_records(self, harness: Harness) -> None:
        assert (await harness.webhook(103, 91, 3)).status_code == 200
        assert (await harness.webhook(104, 92, 4)).status_code == 200
        await harness.daemon.journal.compact([("room", 91, 3, None)])
        with SqliteStore(harness.state) as store:
            assert [row[:3] for row in store.load_client_seqs()] == [("room", 91, 3)]
