"""Crash safety: kill the process right before and right after each mutating call, restart.

A child process runs one reconcile against a real ``layoutsync emulator``
process, with a transport that calls ``os._exit`` just before a request of a
given kind is sent, or just after its answer arrived (before layoutsync could
record it). A restart with the same state file must converge: exactly one
live task for the instanceId, its config equal to the desired body, exactly
as many tasks made as the trace needs, and a further run sends nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _sessionkit import EmulatorProcess, emulator_process, spec_doc

from layoutsync.compile import compile_layout
from layoutsync.emulator import config_digest
from layoutsync.redact import redact
from layoutsync.spec import load_spec
from layoutsync.store import SqliteStore

pytestmark = pytest.mark.e2e

CRASHED = 86  # the child's exit status when the injected crash fires

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import httpx
    from layoutsync.api.client import Client, RetryPolicy
    from layoutsync.apply import Session
    from layoutsync.spec import load_spec
    from layoutsync.store import SqliteStore

    when, _, kind = os.environ.get("CRASH", "").partition(":")
    kind, _, nth = kind.partition(":")  # "after:create:2": at the second Create
    nth = int(nth or 1)
    seen = {"count": 0}
    offset = float(os.environ.get("CLOCK_OFFSET", "0"))

    def kind_of(request):
        if request.method == "POST":
            return "acquire" if request.url.path.endswith("/builderTokens") else "create"
        return {"GET": "query", "PATCH": "update", "DELETE": "delete"}[request.method]

    class Crashing(httpx.HTTPTransport):
        def handle_request(self, request):
            hit = False
            if kind_of(request) == kind:
                seen["count"] += 1
                hit = seen["count"] == nth
            if hit and when == "before":
                os._exit(86)
            response = super().handle_request(request)
            if hit and when == "after":
                response.read()
                os._exit(86)
            return response

    spec_path, state, hosts = sys.argv[1], sys.argv[2], sys.argv[3]
    client = Client(transport=Crashing(), retry=RetryPolicy(delays=(0.05, 0.05), jitter=0))
    session = Session(
        load_spec(spec_path),
        client=client,
        store=SqliteStore(state),
        clock=lambda: time.time() + offset,
        sleep=lambda s: None,
    )
    if os.environ.get("ACTION") == "destroy":
        result = session.destroy()
    else:
        session.set_hosts([int(h) for h in hosts.split(",") if h])
        result = session.reconcile()
    print(json.dumps({
        "action": result.action,
        "calls": list(result.calls),
        "task_id": result.task_id,
        "error": repr(result.error) if result.error else None,
    }))
    """
)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with emulator_process() as running:
        yield running


class Child:
    """Runs the child script in ``workdir`` against ``emulator``."""

    def __init__(self, workdir: Path, emulator: EmulatorProcess, instance: str) -> None:
        self.workdir = workdir
        self.emulator = emulator
        self.instance = instance
        (workdir / "child.py").write_text(CHILD)
        self.write_spec()

    def write_spec(self, **changes: Any) -> None:
        doc = spec_doc(instanceId=self.instance, **changes)
        (self.workdir / "spec.json").write_text(json.dumps(doc))

    def run(
        self, hosts: str, *, crash: str = "", clock_offset: float = 0.0, action: str = "reconcile"
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.emulator.env, "CRASH": crash, "CLOCK_OFFSET": str(clock_offset)}
        env["ACTION"] = action
        return subprocess.run(
            [sys.executable, "child.py", "spec.json", "state.db", hosts],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, hosts: str, **kwargs: Any) -> dict[str, Any]:
        done = self.run(hosts, **kwargs)
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["error"] is None, result
        return result

    def crash(self, hosts: str, crash: str, **kwargs: Any) -> None:
        done = self.run(hosts, crash=crash, **kwargs)
        assert done.returncode == CRASHED, (done.returncode, done.stdout, done.stderr)

    def created(self) -> int:
        events = self.emulator.admin.get("/_emulator/events").json()["events"]
        return sum(
            1 for e in events if e["event"] == "created" and e["instanceId"] == self.instance
        )

    def fault(self, kind: str, action: str) -> None:
        rule = {"kind": kind, "action": action}
        assert self.emulator.admin.post("/_emulator/faults", json=rule).status_code == 200

    def calls(self, kind: str) -> int:
        return self.emulator.calls(kind)

    def stale(self) -> int:
        return sum(t["staleUpdates"] for t in self.emulator.tasks(self.instance))

    def converged(self, hosts: list[int]) -> dict[str, Any]:
        """One live task, whose config is the desired body (tokens masked)."""
        tasks = self.emulator.tasks(self.instance)
        assert len(tasks) == 1, tasks
        (task,) = tasks
        state = SqliteStore(self.workdir / "state.db").load(self.instance)
        assert state is not None and state.task_id == task["taskId"] and state.intent is None
        slots = state.slots
        assert slots is not None
        spec = load_spec(self.workdir / "spec.json")
        body = compile_layout(spec, hosts).body
        assert body is not None
        transcoder = body["services"]["cloudTranscoder"]["config"]["transcoder"]
        assert task["config"] == {"transcoder": redact(transcoder)}
        assert task["configSha256"] == config_digest(transcoder)  # the real tokens too
        return task


@pytest.fixture
def child(tmp_path: Path, emulator: EmulatorProcess) -> Child:
    instance = f"crash-{tmp_path.name[-24:]}".replace(".", "-")
    return Child(tmp_path, emulator, instance)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("kind", ["acquire", "create"])
def test_crash_around_the_first_create(child: Child, kind: str, when: str) -> None:
    child.crash("101,102", f"{when}:{kind}")
    sent = when == "after" and kind == "create"
    assert len(child.emulator.tasks(child.instance)) == int(sent)
    result = child.ok("101,102")
    # A Create intent was stored with a fresh token: it is re-sent with that token.
    assert result["calls"] == (["create"] if kind == "create" else ["acquire", "create"])
    child.converged([101, 102])
    assert child.created() == 1
    assert child.ok("101,102")["calls"] == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_around_an_update(child: Child, when: str) -> None:
    child.ok("101,102")
    child.crash("101,102,103", f"{when}:update")
    result = child.ok("101,102,103")
    assert result["calls"] == ["update"]  # re-sent with the next sequenceId
    task = child.converged([101, 102, 103])
    assert task["sequenceId"] == 1  # 0 was recorded as sent before the crash
    assert child.stale() == 0
    assert child.created() == 1
    assert child.ok("101,102,103")["calls"] == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_around_the_delete_of_a_replace(child: Child, when: str) -> None:
    child.ok("101")
    child.write_spec(canvas={"color": 255})
    child.crash("101", f"{when}:delete")
    result = child.ok("101")
    assert result["calls"][-2:] == ["acquire", "create"]
    child.converged([101])
    assert child.created() == 2  # the original and its replacement, never a third


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_around_the_create_of_a_replace(child: Child, when: str) -> None:
    child.ok("101")
    child.write_spec(canvas={"color": 255})
    child.crash("101", f"{when}:create")
    child.ok("101")
    child.converged([101])
    assert child.created() == 2


def test_crash_after_create_then_restart_past_the_token_lifetime(child: Child) -> None:
    """The token is too old to Create with: a new one gets 409, the old one names the task."""
    child.crash("101,102", "after:create")
    result = child.ok("101,102,103", clock_offset=300)
    assert result["calls"] == ["acquire", "create", "create", "update"]
    child.converged([101, 102, 103])
    assert child.created() == 1


def test_crash_before_create_then_restart_past_the_token_lifetime(child: Child) -> None:
    child.crash("101", "before:create")
    result = child.ok("101", clock_offset=300)
    assert result["calls"] == ["acquire", "create"]
    child.converged([101])
    assert child.created() == 1


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_around_the_query_when_hosts_return_from_idle(child: Child, when: str) -> None:
    child.ok("101")
    assert child.ok("")["calls"] == []  # nobody left: nothing sent, the session is idle
    child.crash("102", f"{when}:query")
    result = child.ok("102")
    assert result["calls"] == ["query", "update"]  # asks again, then sends the new hosts
    child.converged([102])
    assert child.created() == 1
    assert child.ok("102")["calls"] == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_around_the_query_that_polls_a_202(child: Child, when: str) -> None:
    child.fault("create", "202")  # applied, answered 202: the session polls with Query
    child.crash("101", f"{when}:query")
    result = child.ok("101")
    assert "acquire" not in result["calls"]
    child.converged([101])
    assert child.created() == 1
    assert child.ok("101")["calls"] == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_around_the_create_that_adopts_an_orphan(child: Child, when: str) -> None:
    """The token expired after a lost Create: a new one gets 409 and the old one is sent
    again to adopt the task. A crash around that second Create still adopts, never makes
    a second task."""
    child.crash("101,102", "after:create")
    child.crash("101,102,103", f"{when}:create:2", clock_offset=300)
    child.ok("101,102,103", clock_offset=300)
    child.converged([101, 102, 103])
    assert child.created() == 1
    assert child.ok("101,102,103", clock_offset=300)["calls"] == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_around_the_delete_of_on_empty_delete(child: Child, when: str) -> None:
    child.write_spec(onEmpty="delete")
    child.ok("101")
    child.crash("", f"{when}:delete")
    child.ok("")
    assert child.emulator.tasks(child.instance) == []
    assert child.ok("")["calls"] == []
    child.ok("102")  # a host again: a new task
    child.converged([102])
    assert child.created() == 2


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_around_the_delete_of_destroy(child: Child, when: str) -> None:
    child.ok("101,102")
    child.crash("", f"{when}:delete", action="destroy")
    child.ok("", action="destroy")
    assert child.emulator.tasks(child.instance) == []
    assert SqliteStore(child.workdir / "state.db").load(child.instance) is None
    deletes = child.calls("delete")
    assert child.ok("", action="destroy")["calls"] == []  # nothing left to destroy
    assert child.calls("delete") == deletes
    assert child.created() == 1
