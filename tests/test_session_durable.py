"""The library Session: a change that returned is on disk; no rtcToken at rest.

A second ``Session`` on the same state file stands for a process started
after the first was killed (nothing of the first runs again).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _sessionkit import GRID, IN_TOKEN, OUT_TOKEN, Clock, Emulated, make_spec, no_wait
from test_session import clock as clock  # the fixtures

from layoutsync.apply import TOKEN_MAX_AGE, Session
from layoutsync.errors import ServerError, StateError
from layoutsync.store import DesiredInputs, MemoryStore, SqliteStore, has_fingerprints

INSTANCE = GRID["instanceId"]
ENV_TOKENS = {
    "input": {"channel": GRID["input"]["channel"], "token": "env:LS_TEST_IN_TOKEN"},
    "output": {**GRID["output"], "token": "env:LS_TEST_OUT_TOKEN"},
}


@pytest.fixture
def env_tokens(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("LS_TEST_IN_TOKEN", IN_TOKEN)
    monkeypatch.setenv("LS_TEST_OUT_TOKEN", OUT_TOKEN)
    return monkeypatch


def new_session(
    emulated: Emulated, clock: Clock, store: Any, *, retries: int = 3, **options: Any
) -> Session:
    spec = make_spec(**ENV_TOKENS)
    return Session(
        spec,
        client=emulated.client(retries=retries),
        store=store,
        clock=clock,
        sleep=no_wait,
        **options,
    )


def live_tokens(emulated: Emulated) -> set[str]:
    task = emulated.only_task(INSTANCE)
    config = emulated.emulator.live_config(task["taskId"])
    assert config is not None
    found = {item["rtc"]["rtcToken"] for item in config.get("videoInputs", [])}
    found |= {item["rtc"]["rtcToken"] for item in config.get("audioInputs", [])}
    return found | {config["outputs"][0]["rtc"]["rtcToken"]}


class TestDurableDesiredState:
    def test_each_change_is_on_disk_when_it_returns(
        self, emulated: Emulated, clock: Clock, tmp_path: Path, env_tokens: Any
    ) -> None:
        path = tmp_path / "state.db"
        first = new_session(emulated, clock, SqliteStore(path))
        first.host_joined(101)
        first.set_hosts([101, 102, 103])
        first.host_left(102)
        first.set_speaker(103)
        # killed here: no reconcile ever ran
        second = new_session(emulated, clock, SqliteStore(path))
        assert (second.hosts, second.speaker) == ((101, 103), 103)
        result = second.reconcile().raise_for_error()
        assert result.action == "create"

    def test_a_change_the_store_refuses_changes_nothing(
        self, emulated: Emulated, clock: Clock, env_tokens: Any
    ) -> None:
        store = MemoryStore()
        session = new_session(emulated, clock, store)
        session.host_joined(101)

        def refuse(*_: Any) -> None:
            raise StateError("disk full")

        store.save_desired = refuse  # type: ignore[method-assign]
        with pytest.raises(StateError, match="disk full"):
            session.host_joined(102)
        with pytest.raises(StateError):
            session.set_speaker(101)
        assert (session.hosts, session.speaker) == ((101,), None)

    def test_a_change_that_changes_nothing_writes_nothing(
        self, emulated: Emulated, clock: Clock, env_tokens: Any
    ) -> None:
        store = MemoryStore()
        session = new_session(emulated, clock, store)
        session.set_hosts([101, 102])
        writes = store.input_writes
        session.host_joined(101)
        session.host_left(999)
        session.set_hosts([102, 101])
        session.set_speaker(None)
        assert store.input_writes == writes

    def test_durable_inputs_off_writes_on_demand(
        self, emulated: Emulated, clock: Clock, env_tokens: Any
    ) -> None:
        store = MemoryStore()
        session = new_session(emulated, clock, store, durable_inputs=False)
        session.set_hosts([101, 102])
        assert store.load_desired(INSTANCE) is None
        session.save_desired()
        assert store.load_desired(INSTANCE) == DesiredInputs((101, 102), None, clock())


class TestNoTokenAtRest:
    def test_the_file_never_holds_a_token_and_a_restart_sends_nothing(
        self, emulated: Emulated, clock: Clock, tmp_path: Path, env_tokens: Any
    ) -> None:
        path = tmp_path / "state.db"
        first = new_session(emulated, clock, SqliteStore(path))
        first.set_hosts([101, 102])
        first.reconcile().raise_for_error()
        data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
        assert IN_TOKEN.encode() not in data and OUT_TOKEN.encode() not in data

        second = new_session(emulated, clock, SqliteStore(path))
        assert not has_fingerprints(second._state.applied_body)  # put back from the spec
        before = emulated.mutating_calls()
        assert second.reconcile().raise_for_error().action == "noop"
        assert emulated.mutating_calls() == before
        assert live_tokens(emulated) == {IN_TOKEN, OUT_TOKEN}

    def test_a_token_changed_while_stopped_is_updated(
        self, emulated: Emulated, clock: Clock, tmp_path: Path, env_tokens: Any
    ) -> None:
        path = tmp_path / "state.db"
        first = new_session(emulated, clock, SqliteStore(path))
        first.set_hosts([101])
        first.reconcile().raise_for_error()
        env_tokens.setenv("LS_TEST_IN_TOKEN", "rotated-input-token")
        second = new_session(emulated, clock, SqliteStore(path))
        plan = second.plan()
        assert plan.action == "update"
        assert "rotated" not in plan.render() and "hmac" not in plan.render()
        second.reconcile().raise_for_error()
        assert live_tokens(emulated) == {"rotated-input-token", OUT_TOKEN}

    def test_a_resumed_create_refused_before_it_leaves_keeps_its_token(
        self, emulated: Emulated, clock: Clock, tmp_path: Path, env_tokens: Any
    ) -> None:
        """The Create made its task and its answer was lost; its re-send is refused before
        it leaves (a replica that cannot confirm its lease, a shared rate limit out of
        reach). The intent and its builderToken stay, so the next re-send finds that task
        instead of a fresh token meeting it as somebody else's (409)."""
        session = new_session(emulated, clock, SqliteStore(tmp_path / "state.db"), retries=0)
        session.set_hosts([101])
        emulated.emulator.add_fault("create", "commit-503")
        assert isinstance(session.reconcile().error, ServerError)
        transport = emulated._transports[-1]
        send = transport.handle_request

        def refuse(request: Any) -> Any:
            raise StateError("Redis: cannot confirm the lease")

        transport.handle_request = refuse  # type: ignore[method-assign]
        assert isinstance(session.reconcile().error, StateError)
        transport.handle_request = send  # type: ignore[method-assign]
        session.reconcile().raise_for_error()
        assert len(emulated.tasks(INSTANCE)) == 1
        assert emulated.calls("acquire") == 1

    def test_a_lost_create_resumed_after_a_token_change_sends_real_tokens(
        self, emulated: Emulated, clock: Clock, tmp_path: Path, env_tokens: Any
    ) -> None:
        """The Create was applied, its answer lost, then the process died; the token was
        rotated before the restart. The resumed Create needs a body with real tokens."""
        path = tmp_path / "state.db"
        first = new_session(emulated, clock, SqliteStore(path), retries=0)
        first.set_hosts([101])
        emulated.emulator.add_fault("create", "commit-503")
        assert isinstance(first.reconcile().error, ServerError)
        env_tokens.setenv("LS_TEST_IN_TOKEN", "rotated-input-token")
        clock.advance(TOKEN_MAX_AGE / 2)
        second = new_session(emulated, clock, SqliteStore(path))
        second.reconcile().raise_for_error()
        second.reconcile().raise_for_error()
        assert len(emulated.tasks(INSTANCE)) == 1
        assert emulated.calls("acquire") == 1
        assert live_tokens(emulated) == {"rotated-input-token", OUT_TOKEN}
        assert "rotated-input-token" not in repr(second) + repr(second._state)
