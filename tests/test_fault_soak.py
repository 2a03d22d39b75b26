"""Sessions against an emulator that fails the ways a network does.

"late" applies a call after the client has timed out (before or after the
client's retry reaches the service), "disconnect" and "commit-disconnect" send
no byte of the response, whether or not the call was applied. Whatever the
order, every session ends with one task per instanceId whose live config is
the desired body with its real tokens, and the next change is applied (the
session's sequenceId is not behind the service's).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator

import pytest
from _sessionkit import GRID, Clock, Emulated, live_equals_desired, make_spec

from layoutsync.api.client import Client
from layoutsync.apply import Session
from layoutsync.emulator.faults import DEFAULT_RANDOM_ACTIONS, NETWORK_ACTIONS
from layoutsync.store import MemoryStore

INSTANCE = GRID["instanceId"]


@pytest.fixture
def emulated() -> Iterator[Emulated]:
    emulated = Emulated(fault_delay=0.05)
    yield emulated
    emulated.close()


def _short_sleep(seconds: float) -> None:
    time.sleep(min(seconds, 0.03))  # a Retry-After of 1 s is honoured, shortened


def _client(
    emulated: Emulated, backoff: float, sleep: Callable[[float], None] = _short_sleep
) -> Client:
    return emulated.client(backoff=backoff, sleep=sleep)


def _late_calls_done(emulated: Emulated) -> None:
    deadline = time.monotonic() + 10
    while emulated.app.state.late_calls:
        assert time.monotonic() < deadline, "a late call was never applied"
        time.sleep(0.01)


def _applied_sequence_ids(emulated: Emulated, task_id: str) -> list[int]:
    return [
        e["sequenceId"]
        for e in emulated.emulator.events()
        if e["event"] == "updated" and e["taskId"] == task_id
    ]


def _converges(emulated: Emulated, session: Session, instance: str = INSTANCE) -> None:
    """Live equals desired with real tokens, one task, and a further change is applied."""
    _late_calls_done(emulated)
    session.reconcile().raise_for_error()  # whatever a late call changed is put right
    assert session.compiled is not None
    assert live_equals_desired(emulated, instance, session.compiled.body)
    (task,) = emulated.tasks(instance)
    sequences = _applied_sequence_ids(emulated, task["taskId"])
    assert sequences == sorted(set(sequences))  # no sequenceId applied twice or backwards
    before = emulated.emulator.task(task["taskId"])
    assert before is not None
    session.host_joined(150)
    after = session.reconcile()
    after.raise_for_error()
    assert after.calls == ("update",)
    assert live_equals_desired(emulated, instance, session.compiled.body)
    assert emulated.emulator.task(task["taskId"])["staleUpdates"] == before["staleUpdates"]
    session.host_left(150)
    session.reconcile().raise_for_error()


ORDERS = ("late-before-retry", "late-after-retry")


def _ordered(emulated: Emulated, kind: str, order: str) -> Client:
    """A client, and an emulator, that put the late call before or after the client's retry
    by waiting for each other (bounded), not for time."""
    if order == "late-before-retry":

        def back_off(_seconds: float) -> None:  # the retry waits for the late call
            deadline = time.monotonic() + 10
            while emulated.app.state.late_calls and time.monotonic() < deadline:
                time.sleep(0.005)

        return _client(emulated, 0.01, sleep=back_off)

    async def hold(_seconds: float) -> None:  # the late call waits for the retry
        deadline = time.monotonic() + 10
        while not emulated.emulator.requests(kind) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    emulated.emulator.sleep = hold
    return _client(emulated, 0.0)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", ["acquire", "create", "update"])
def test_a_late_call_still_converges(emulated: Emulated, kind: str, order: str) -> None:
    session = Session(
        make_spec(),
        client=_ordered(emulated, kind, order),
        store=MemoryStore(),
        clock=Clock(),
        sleep=_short_sleep,
    )
    if kind == "update":
        session.host_joined(101)
        session.reconcile().raise_for_error()
    emulated.emulator.add_fault(kind, "late", delay=0.01)
    session.host_joined(102)
    result = session.reconcile()
    result.raise_for_error()
    assert emulated.emulator.faults.fired == 1
    _late_calls_done(emulated)
    late = [e for e in emulated.emulator.requests(kind) if e["note"].endswith("+late")]
    assert len(late) == 1
    if kind == "update":
        # Before the retry it is applied and the retry is stale; after it, it is stale.
        assert late[0]["note"] == ("applied+late" if order == "late-before-retry" else "stale+late")
    if kind == "create":
        assert late[0]["note"] == (
            "created+late" if order == "late-before-retry" else "retried-create+late"
        )
    assert len(emulated.tasks(INSTANCE)) == 1
    _converges(emulated, session)


@pytest.mark.parametrize("order", ORDERS)
def test_a_late_delete_still_converges(emulated: Emulated, order: str) -> None:
    spec = make_spec(onEmpty="delete")
    session = Session(
        spec,
        client=_ordered(emulated, "delete", order),
        store=MemoryStore(),
        clock=Clock(),
        sleep=_short_sleep,
    )
    session.host_joined(101)
    session.reconcile().raise_for_error()
    emulated.emulator.add_fault("delete", "late", delay=0.01)
    session.host_left(101)
    session.reconcile().raise_for_error()
    _late_calls_done(emulated)
    assert emulated.tasks(INSTANCE) == []
    (late,) = [e for e in emulated.emulator.requests("delete") if e["note"].endswith("+late")]
    assert late["status"] == (200 if order == "late-before-retry" else 404)
    session.host_joined(102)
    session.reconcile().raise_for_error()
    _converges(emulated, session)


@pytest.mark.parametrize("action", ["disconnect", "commit-disconnect"])
@pytest.mark.parametrize("kind", ["acquire", "create", "update", "delete"])
def test_no_byte_of_the_response_still_converges(
    emulated: Emulated, kind: str, action: str
) -> None:
    session = Session(
        make_spec(onEmpty="delete"),
        client=emulated.client(),
        store=MemoryStore(),
        clock=Clock(),
        sleep=_short_sleep,
    )
    if kind in ("update", "delete"):
        session.host_joined(101)
        session.reconcile().raise_for_error()
    emulated.emulator.add_fault(kind, action)
    if kind == "delete":
        session.host_left(101)
    else:
        session.host_joined(102)
    session.reconcile().raise_for_error()
    (cut,) = [e for e in emulated.emulator.requests(kind) if e.get("fault") == action]
    assert cut["status"] is None
    assert cut["note"].endswith("disconnected")
    if kind == "delete":
        assert emulated.tasks(INSTANCE) == []
        session.host_joined(103)
        session.reconcile().raise_for_error()
    _converges(emulated, session)


SOAK_ACTIONS = (*DEFAULT_RANDOM_ACTIONS, *NETWORK_ACTIONS)


@pytest.mark.parametrize("seed", [1, 2])
def test_fault_soak_every_session_converges(emulated: Emulated, seed: int) -> None:
    """Six sessions, 600 events, 20% of calls faulted with every action, new ones included."""
    rng = random.Random(seed)
    emulated.emulator.set_random_faults(0.2, seed=seed, actions=SOAK_ACTIONS, delay=0.02)
    sessions = [
        Session(
            make_spec(instanceId=f"soak{n}", onEmpty=rng.choice(["idle", "delete"])),
            client=_client(emulated, 0.01),
            store=MemoryStore(),
            clock=Clock(),
            sleep=_short_sleep,
        )
        for n in range(6)
    ]
    present: list[set[int]] = [set() for _ in sessions]
    for _ in range(600):
        n = rng.randrange(len(sessions))
        session, hosts = sessions[n], present[n]
        if hosts and rng.random() < 0.4:
            uid = rng.choice(sorted(hosts))
            hosts.discard(uid)
            session.host_left(uid)
        else:
            uid = rng.randint(101, 130)
            hosts.add(uid)
            session.host_joined(uid)
        if rng.random() < 0.5:
            session.reconcile()  # may end in an error under faults: retried later
    fired = emulated.emulator.faults.fired
    names = {e.get("fault") for e in emulated.emulator.requests()}
    assert fired > 80
    assert {"late", "disconnect", "commit-disconnect"} <= names
    for n, session in enumerate(sessions):
        present[n].add(140)
        session.host_joined(140)  # every session ends with a host, so a task
        for _attempt in range(10):
            if session.reconcile().error is None:
                break
        else:
            pytest.fail(f"soak{n} did not converge in 10 reconciles under faults")
    emulated.emulator.faults.clear()
    for n, session in enumerate(sessions):
        _converges(emulated, session, f"soak{n}")
        assert session.compiled is not None
        assert set(session.compiled.hosts) == present[n]
