"""Churn traces against the emulator: live always equals desired, with the fewest Updates.

After every reconcile: the emulator's live config (tokens masked) equals the
desired body, masked; each reconcile sends at most one Update, and exactly one
when the desired body changed in an updatable way; no stale sequenceId ever
reaches the service; sequenceIds per task increase strictly.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from _sessionkit import Clock, Emulated, live_equals_desired, make_spec, no_wait, no_wait_async

from layoutsync.apply import AsyncSession, ReconcileResult, Session
from layoutsync.store import MemoryStore

SPEAKER_LAYOUT = {
    "template": "speaker",
    "position": "right",
    "stripFraction": 0.25,
    "stripTiles": 4,
    "gap": 8,
    "padding": 8,
    "aspect": "16:9",
}
INSTANCE = "room7-grid"


class Ledger:
    """Follows a session through a trace and checks every reconcile against the emulator."""

    def __init__(self, emulated: Emulated, session: Session | AsyncSession) -> None:
        self.emulated = emulated
        self.session = session
        self.expected_updates = 0
        self.applied_hash: str | None = None
        self.task_id: str | None = None

    def check(self, result: ReconcileResult) -> ReconcileResult:
        result.raise_for_error()
        compiled = self.session.compiled
        assert compiled is not None
        updates = result.calls.count("update")
        assert updates <= 1, result.calls
        if compiled.body is None:
            assert "update" not in result.calls and "create" not in result.calls
        else:
            kept = result.task_id == self.task_id and "create" not in result.calls
            changed = compiled.body_hash != self.applied_hash
            if kept:
                assert updates == int(changed), (result.action, result.calls)
            self.expected_updates += updates
            self.applied_hash = compiled.body_hash
            self.task_id = result.task_id
            assert live_equals_desired(self.emulated, INSTANCE, compiled.body)
        assert self.emulated.calls("update") == self.expected_updates
        assert self.emulated.stale_updates() == 0
        if self.task_id is not None and compiled.body is not None:
            assert len(self.emulated.tasks(INSTANCE)) == 1
        return result

    def sequence_ids_increase(self) -> None:
        per_task: dict[str, list[int]] = {}
        for event in self.emulated.emulator.events():
            if event["event"] == "updated":
                per_task.setdefault(event["taskId"], []).append(event["sequenceId"])
        for sequence in per_task.values():
            assert sequence == sorted(set(sequence)), sequence
            assert sequence[0] == 0


def test_scripted_trace(emulated: Emulated) -> None:
    clock = Clock()
    s = Session(
        make_spec(layout=SPEAKER_LAYOUT),
        client=emulated.client(),
        store=MemoryStore(),
        clock=clock,
        sleep=no_wait,
    )
    ledger = Ledger(emulated, s)

    s.host_joined(101)
    s.host_joined(102)
    assert ledger.check(s.reconcile()).calls == ("acquire", "create")
    s.host_joined(103)
    assert ledger.check(s.reconcile()).calls == ("update",)
    s.set_speaker(102)  # the speaker moves to the big tile
    assert ledger.check(s.reconcile()).calls == ("update",)
    s.host_left(101)
    assert ledger.check(s.reconcile()).calls == ("update",)
    for uid in (104, 105, 106):  # a burst of joins and a speaker change: one Update
        s.host_joined(uid)
    s.set_speaker(105)
    assert ledger.check(s.reconcile()).calls == ("update",)
    s.host_joined(101)  # rejoin
    assert ledger.check(s.reconcile()).calls == ("update",)
    s.set_hosts([106, 105, 104, 103, 102, 101])  # the same set
    assert ledger.check(s.reconcile()).calls == ()
    s.host_left(104)
    s.host_joined(104)  # left and came back between two reconciles
    assert ledger.check(s.reconcile()).calls in ((), ("update",))

    task = s.status().task_id
    s.replace_spec(make_spec(layout=SPEAKER_LAYOUT, canvas={"color": 0xFF0000}))
    replaced = ledger.check(s.reconcile())
    assert replaced.calls == ("delete", "acquire", "create")
    assert replaced.task_id != task
    s.set_speaker(101)
    assert ledger.check(s.reconcile()).sequence_id == 0  # the new task starts over at 0

    # Everybody leaves: nothing is sent; the service idles the task out.
    s.set_hosts([])
    assert ledger.check(s.reconcile()).calls == ()
    emulated.host_absent(101, 102, 103, 104, 105, 106)
    emulated.emulator.advance_clock(61)
    clock.advance(61)
    assert emulated.tasks(INSTANCE) == []
    emulated.host_present(102)
    s.host_joined(102)
    back = ledger.check(s.reconcile())
    assert back.calls == ("query", "acquire", "create")
    ledger.sequence_ids_increase()


def _events(seed: int, count: int) -> list[tuple[str, Any]]:
    rng = random.Random(seed)
    events: list[tuple[str, Any]] = []
    present: list[int] = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.45 or not present:
            uid = rng.randint(101, 130)
            events.append(("join", uid))
            present.append(uid)
        elif roll < 0.8:
            uid = rng.choice(present)
            events.append(("leave", uid))
            present.remove(uid)
        elif roll < 0.95:
            events.append(("speaker", rng.choice(present)))
        else:
            events.append(("reconcile", None))
        if rng.random() < 0.4:
            events.append(("reconcile", None))
    events.append(("reconcile", None))
    return events


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_churn(emulated: Emulated, seed: int) -> None:
    s = Session(
        make_spec(layout=SPEAKER_LAYOUT, onEmpty="delete"),
        client=emulated.client(),
        store=MemoryStore(),
        clock=Clock(),
        sleep=no_wait,
    )
    ledger = Ledger(emulated, s)
    reconciles = 0
    for kind, uid in _events(seed, 150):
        if kind == "join":
            s.host_joined(uid)
        elif kind == "leave":
            s.host_left(uid)
        elif kind == "speaker":
            s.set_speaker(uid)
        else:
            ledger.check(s.reconcile())
            reconciles += 1
    assert reconciles > 40
    assert ledger.expected_updates > 10
    ledger.sequence_ids_increase()


@pytest.mark.anyio
async def test_async_churn(emulated: Emulated) -> None:
    s = AsyncSession(
        make_spec(layout=SPEAKER_LAYOUT),
        client=emulated.async_client(),
        store=MemoryStore(),
        clock=Clock(),
        sleep=no_wait_async,
    )
    ledger = Ledger(emulated, s)
    for kind, uid in _events(7, 80):
        if kind == "join":
            s.host_joined(uid)
        elif kind == "leave":
            s.host_left(uid)
        elif kind == "speaker":
            s.set_speaker(uid)
        else:
            ledger.check(await s.reconcile())
    ledger.sequence_ids_increase()
