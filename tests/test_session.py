"""Session and AsyncSession against the in-process emulator: the reconcile state machine."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from _sessionkit import (
    CHANNEL,
    Clock,
    Emulated,
    each_secret,
    live_equals_desired,
    make_spec,
    no_wait,
    no_wait_async,
)
from structlog.testing import capture_logs

from layoutsync import apply as apply_module
from layoutsync.apply import (
    TOKEN_MAX_AGE,
    AsyncSession,
    ReconcileResult,
    Session,
    UnknownTaskConflict,
)
from layoutsync.errors import ServerError, SpecError
from layoutsync.store import MemoryStore, SqliteStore

INSTANCE = "room7-grid"


@pytest.fixture
def clock() -> Clock:
    return Clock()


def session(
    emulated: Emulated,
    clock: Clock,
    *,
    store: Any = None,
    retries: int = 3,
    **spec: Any,
) -> Session:
    return Session(
        make_spec(**spec),
        client=emulated.client(retries=retries),
        store=store if store is not None else MemoryStore(),
        clock=clock,
        sleep=no_wait,
    )


def desired_body(s: Session | AsyncSession) -> dict[str, Any] | None:
    """What the session last compiled for its desired state (with its stable slots)."""
    compiled = s.compiled
    assert compiled is not None and compiled.hosts == tuple(
        h for h in s.hosts if h in compiled.hosts
    )
    return compiled.body


def ok(result: ReconcileResult) -> ReconcileResult:
    return result.raise_for_error()


class TestDesiredState:
    """host_* and set_* only change desired state, in memory."""

    def test_join_leave_are_idempotent(self, emulated: Emulated, clock: Clock) -> None:
        s = session(emulated, clock)
        s.host_joined(101)
        s.host_joined(102)
        s.host_joined(101)
        s.host_left(103)
        s.host_left(101)
        assert s.hosts == (102,)
        assert emulated.mutating_calls() == 0

    def test_set_hosts_keeps_join_order(self, emulated: Emulated, clock: Clock) -> None:
        s = session(emulated, clock)
        s.set_hosts([103, 101, 102])
        s.set_hosts([101, 104, 102])
        assert s.hosts == (101, 102, 104)
        s.set_hosts([104, 102, 101])  # the same set: nothing changes
        assert s.hosts == (101, 102, 104)

    @pytest.mark.parametrize("bad", [0, -1, True, "101", 2**32])
    def test_bad_uid_is_a_spec_error(self, emulated: Emulated, clock: Clock, bad: Any) -> None:
        s = session(emulated, clock)
        with pytest.raises(SpecError, match="host"):
            s.host_joined(bad)
        with pytest.raises(SpecError, match="hosts"):
            s.set_hosts([101, bad])
        assert s.hosts == ()

    def test_plan_sends_and_writes_nothing(self, emulated: Emulated, clock: Clock) -> None:
        store = MemoryStore()
        s = session(emulated, clock, store=store)
        s.set_hosts([101, 102])
        plan = s.plan()
        assert plan.action == "create"
        assert emulated.emulator.requests() == []
        assert store.saves == 0

    def test_plan_needs_no_client(self, clock: Clock) -> None:
        s = Session(make_spec(), store=MemoryStore(), clock=clock)
        s.set_hosts([101])
        assert s.plan().action == "create"


class TestReconcile:
    """create → update → noop, one Update per batch of changes, live equals desired."""

    def test_lifecycle(self, emulated: Emulated, clock: Clock) -> None:
        s = session(emulated, clock)
        s.set_hosts([101, 102])
        created = ok(s.reconcile())
        assert (created.action, created.calls) == ("create", ("acquire", "create"))
        assert created.sequence_id is None
        assert live_equals_desired(emulated, INSTANCE, desired_body(s))
        assert created.plan is not None and created.plan.body is None  # sent: not kept twice
        assert created.plan.body_hash == s._state.applied_hash

        for uid in (103, 104, 105):
            s.host_joined(uid)
        s.host_left(101)
        s.set_speaker(104)
        updated = ok(s.reconcile())
        assert (updated.action, updated.calls) == ("update", ("update",))
        assert updated.sequence_id == 0  # a new task's first Update carries 0
        assert live_equals_desired(emulated, INSTANCE, desired_body(s))

        s.host_left(102)
        assert ok(s.reconcile()).sequence_id == 1
        before = len(emulated.emulator.requests())
        again = ok(s.reconcile())
        assert (again.action, again.calls) == ("noop", ())
        assert len(emulated.emulator.requests()) == before
        task = emulated.only_task(INSTANCE)
        assert (task["sequenceId"], task["updateCount"], task["staleUpdates"]) == (1, 2, 0)
        assert created.task_id == updated.task_id == again.task_id == task["taskId"]

    def test_change_that_compiles_to_the_same_body_sends_nothing(
        self, emulated: Emulated, clock: Clock
    ) -> None:
        s = session(emulated, clock)
        s.set_hosts([101, 102])
        ok(s.reconcile())
        s.set_speaker(102)  # a grid ignores the speaker
        result = ok(s.reconcile())
        assert (result.action, result.calls) == ("noop", ())
        assert emulated.calls("update") == 0
        # the fresh compile equals the applied body: one copy is kept, not two
        assert s.compiled is not None and s.compiled.body is s._state.applied_body

    def test_fast_path_skips_compile_diff_and_store(
        self, emulated: Emulated, clock: Clock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = MemoryStore()
        s = session(emulated, clock, store=store)
        hosts = list(range(101, 117))
        s.set_hosts(hosts)
        ok(s.reconcile())
        saves = store.saves

        def forbidden(*args: object, **kwargs: object) -> None:
            raise AssertionError("the fast path must not compile or plan")

        monkeypatch.setattr(apply_module, "compile_layout", forbidden)
        monkeypatch.setattr(apply_module, "make_plan", forbidden)
        s.set_hosts(hosts)
        result = s.reconcile()
        assert (result.action, result.calls, result.error) == ("noop", (), None)
        assert s.plan().action == "noop"
        assert store.saves == saves
        assert not s.status().pending

    def test_replace_on_non_updatable_change(self, emulated: Emulated, clock: Clock) -> None:
        s = session(emulated, clock)
        s.set_hosts([101, 102])
        first = ok(s.reconcile())
        s.replace_spec(make_spec(canvas={"color": 255}))
        plan = s.plan()
        assert plan.action == "replace"
        assert "canvas/color" in plan.replace_paths
        result = ok(s.reconcile())
        assert result.calls == ("delete", "acquire", "create")
        assert result.task_id != first.task_id
        assert result.sequence_id is None
        assert live_equals_desired(emulated, INSTANCE, desired_body(s))
        s.host_joined(103)
        assert ok(s.reconcile()).sequence_id == 0  # the new task counts from 0 again

    def test_instance_id_change_replaces(self, emulated: Emulated, clock: Clock) -> None:
        s = session(emulated, clock)
        s.set_hosts([101])
        ok(s.reconcile())
        s.replace_spec(make_spec(instanceId="room7-other"))
        result = ok(s.reconcile())
        assert result.action == "replace"
        assert emulated.tasks(INSTANCE) == []
        assert len(emulated.tasks("room7-other")) == 1

    def test_on_empty_idle_sends_nothing_then_recreates_after_idle_timeout(
        self, emulated: Emulated, clock: Clock
    ) -> None:
        s = session(emulated, clock)
        s.set_hosts([101, 102])
        first = ok(s.reconcile())
        s.set_hosts([])
        idle = ok(s.reconcile())
        assert (idle.action, idle.calls) == ("noop", ())
        assert "idleTimeout" in idle.plan.reasons[0]  # type: ignore[union-attr]
        # The hosts really left the channel; the service ends the task after idleTimeout.
        emulated.host_absent(101, 102)
        emulated.emulator.advance_clock(61)
        clock.advance(61)
        assert emulated.tasks(INSTANCE) == []
        emulated.host_present(101, 102)
        s.set_hosts([101, 102])
        back = ok(s.reconcile())
        assert back.action == "create"
        assert back.calls == ("query", "acquire", "create")
        assert back.task_id != first.task_id
        assert any("ended while no host was visible" in r for r in back.plan.reasons)  # type: ignore[union-attr]
        assert live_equals_desired(emulated, INSTANCE, desired_body(s))

    def test_blip_costs_nothing_with_idle(self, emulated: Emulated, clock: Clock) -> None:
        """A host dropping for a moment: one Query on return, no Delete, no Create."""
        s = session(emulated, clock)
        s.set_hosts([101])
        first = ok(s.reconcile())
        s.host_left(101)
        ok(s.reconcile())
        s.host_joined(101)
        back = ok(s.reconcile())
        assert back.calls == ("query",)
        assert back.task_id == first.task_id
        assert emulated.calls("create") == 1 and emulated.calls("delete") == 0

    def test_on_empty_delete(self, emulated: Emulated, clock: Clock) -> None:
        s = session(emulated, clock, onEmpty="delete")
        s.set_hosts([101])
        ok(s.reconcile())
        s.host_left(101)
        gone = ok(s.reconcile())
        assert (gone.action, gone.calls, gone.task_id) == ("delete", ("delete",), None)
        assert emulated.tasks(INSTANCE) == []
        s.host_joined(101)
        assert ok(s.reconcile()).action == "create"

    def test_task_deleted_elsewhere_is_recreated_in_the_same_reconcile(
        self, emulated: Emulated, clock: Clock
    ) -> None:
        s = session(emulated, clock)
        s.set_hosts([101])
        first = ok(s.reconcile())
        # Host 101 drops out of the channel unnoticed by us; the service idles the task out.
        emulated.host_absent(101)
        emulated.emulator.advance_clock(61)
        s.host_joined(102)
        result = ok(s.reconcile())
        assert result.action == "create"
        assert result.calls == ("update", "acquire", "create")
        assert "404 confirmed" in result.plan.reasons[0]  # type: ignore[union-attr]
        assert result.task_id != first.task_id

    def test_refresh_notices_a_gone_task(self, emulated: Emulated, clock: Clock) -> None:
        s = session(emulated, clock)
        s.set_hosts([101])
        first = ok(s.reconcile())
        task = s.refresh()
        assert task is not None and task.task_id == first.task_id
        emulated.host_absent(101)
        emulated.emulator.advance_clock(61)
        assert s.refresh() is None
        assert s.status().task_id is None and s.status().pending
        assert ok(s.reconcile()).calls == ("acquire", "create")

    def test_destroy(self, emulated: Emulated, clock: Clock, tmp_path: Path) -> None:
        store = SqliteStore(tmp_path / "state.db")
        s = session(emulated, clock, store=store)
        s.set_hosts([101])
        ok(s.reconcile())
        result = ok(s.destroy())
        assert (result.action, result.calls) == ("delete", ("delete",))
        assert emulated.tasks() == []
        assert store.names() == ()
        assert ok(s.destroy()).action == "noop"


class TestFailures:
    """Unknown outcomes keep their intent; definitive ones clear it; never a stale Update."""

    def test_lost_update_answer_is_resent_with_a_higher_sequence_id(
        self, emulated: Emulated, clock: Clock
    ) -> None:
        s = session(emulated, clock, retries=0)
        s.set_hosts([101])
        ok(s.reconcile())
        emulated.emulator.add_fault("update", "commit-500")
        s.host_joined(102)
        failed = s.reconcile()
        assert isinstance(failed.error, ServerError)
        assert failed.requeue_after is not None
        assert s.status().pending
        retried = ok(s.reconcile())
        assert (retried.action, retried.sequence_id) == ("update", 1)
        assert emulated.stale_updates() == 0
        assert live_equals_desired(emulated, INSTANCE, desired_body(s))
        assert ok(s.reconcile()).calls == ()

    def test_rejected_update_clears_its_intent(self, emulated: Emulated, clock: Clock) -> None:
        s = session(emulated, clock, retries=0)
        s.set_hosts([101])
        ok(s.reconcile())
        emulated.emulator.add_fault("update", "400")
        s.host_joined(102)
        failed = s.reconcile()
        assert failed.error is not None and failed.requeue_after is None
        assert s.status().last_error is not None
        again = ok(s.reconcile())
        assert again.sequence_id == 1  # 0 was sent (and refused): never reused

    def test_update_answered_202_is_polled(self, emulated: Emulated, clock: Clock) -> None:
        s = session(emulated, clock)
        s.set_hosts([101])
        ok(s.reconcile())
        emulated.emulator.add_fault("update", "202")
        s.host_joined(102)
        result = ok(s.reconcile())
        assert result.calls == ("update", "query")
        assert result.requeue_after is None
        assert ok(s.reconcile()).calls == ()

    def test_create_answered_202_is_polled(self, emulated: Emulated, clock: Clock) -> None:
        s = session(emulated, clock)
        s.set_hosts([101])
        emulated.emulator.add_fault("create", "202")
        result = ok(s.reconcile())
        assert result.calls == ("acquire", "create", "query")
        assert result.task_id == emulated.only_task(INSTANCE)["taskId"]

    def test_delete_answered_202_is_polled(self, emulated: Emulated, clock: Clock) -> None:
        s = session(emulated, clock, onEmpty="delete")
        s.set_hosts([101])
        ok(s.reconcile())
        emulated.emulator.add_fault("delete", "202")
        s.set_hosts([])
        result = ok(s.reconcile())
        assert result.calls == ("delete", "query")
        assert result.task_id is None

    def test_lost_create_answer_with_fresh_token_is_retried(
        self, emulated: Emulated, clock: Clock
    ) -> None:
        s = session(emulated, clock, retries=0)
        s.set_hosts([101])
        emulated.emulator.add_fault("create", "commit-503")
        failed = s.reconcile()
        assert isinstance(failed.error, ServerError) and failed.task_id is None
        clock.advance(TOKEN_MAX_AGE - 10)
        result = ok(s.reconcile())
        assert result.calls == ("create",)  # the same token: the service returns that task
        assert result.task_id == emulated.only_task(INSTANCE)["taskId"]
        assert emulated.calls("acquire") == 1

    def test_lost_create_with_expired_token_adopts_the_orphan(
        self, emulated: Emulated, clock: Clock
    ) -> None:
        s = session(emulated, clock, retries=0)
        s.set_hosts([101])
        emulated.emulator.add_fault("create", "commit-503")
        assert s.reconcile().error is not None
        clock.advance(TOKEN_MAX_AGE + 1)
        s.host_joined(102)
        result = ok(s.reconcile())
        # a new token first (409: a task exists), then the old token names it: adopted.
        assert result.calls == ("acquire", "create", "create", "update")
        assert (result.action, result.sequence_id) == ("update", 0)
        assert any("adopted" in r for r in result.plan.reasons)  # type: ignore[union-attr]
        task = emulated.only_task(INSTANCE)
        assert result.task_id == task["taskId"]
        assert live_equals_desired(emulated, INSTANCE, desired_body(s))

    def test_expired_token_whose_create_never_arrived(
        self, emulated: Emulated, clock: Clock
    ) -> None:
        s = session(emulated, clock, retries=0)
        s.set_hosts([101])
        emulated.emulator.add_fault("create", "503")  # nothing applied
        assert s.reconcile().error is not None
        clock.advance(TOKEN_MAX_AGE + 1)
        result = ok(s.reconcile())
        assert result.calls == ("acquire", "create")
        assert len(emulated.tasks(INSTANCE)) == 1

    def test_conflict_with_a_task_we_do_not_own(self, emulated: Emulated, clock: Clock) -> None:
        owner = session(emulated, clock)
        owner.set_hosts([101])
        ok(owner.reconcile())
        intruder = session(emulated, clock)  # its own (empty) store: it knows no task
        intruder.set_hosts([102])
        result = intruder.reconcile()
        assert isinstance(result.error, UnknownTaskConflict)
        assert result.requeue_after is None
        text = str(result.error)
        assert "will not create a second one" in text
        assert "the task ends by itself 60 s (its idleTimeout) after its hosts leave" in text
        assert "`layoutsync adopt SPEC --task-id TASK_ID`" in text
        assert len(emulated.tasks(INSTANCE)) == 1

    def test_conflict_names_the_other_session_of_the_same_file(
        self, emulated: Emulated, clock: Clock, tmp_path: Path
    ) -> None:
        store = SqliteStore(tmp_path / "state.db")
        owner = session(emulated, clock, store=store)
        owner.set_hosts([101])
        ok(owner.reconcile())
        twin = Session(make_spec(), client=emulated.client(), store=store, name="twin", clock=clock)
        twin.set_hosts([101])
        error = twin.reconcile().error
        assert isinstance(error, UnknownTaskConflict)
        assert "session 'room7-grid' of this state file" in str(error)
        assert "run `layoutsync state mv room7-grid twin`" in str(error)

    def test_compile_error_is_reported_not_raised(self, emulated: Emulated, clock: Clock) -> None:
        s = session(emulated, clock, input={"channel": CHANNEL, "token": "env:LS_TEST_MISSING"})
        s.set_hosts([101])
        result = s.reconcile()
        assert isinstance(result.error, SpecError)
        assert "LS_TEST_MISSING" in str(result.error)
        assert emulated.mutating_calls() == 0


class TestPersistence:
    """A new process (a new Session on the same file) knows the task and the desired state."""

    def test_restart_resumes(self, emulated: Emulated, clock: Clock, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        first = session(emulated, clock, store=SqliteStore(path))
        first.set_hosts([101, 102])
        created = ok(first.reconcile())
        first.host_joined(103)
        ok(first.reconcile())

        second = session(emulated, clock, store=SqliteStore(path))
        assert second.hosts == (101, 102, 103)
        before = emulated.mutating_calls()
        again = ok(second.reconcile())
        assert (again.action, again.calls) == ("noop", ())
        assert emulated.mutating_calls() == before
        # the body read from the file and the one compiled again are kept as one
        assert second.compiled is not None and second.compiled.body is second._state.applied_body
        second.host_left(101)
        moved = ok(second.reconcile())
        assert (moved.task_id, moved.sequence_id) == (created.task_id, 1)

    def test_slots_survive_restarts(self, emulated: Emulated, clock: Clock, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        first = session(emulated, clock, store=SqliteStore(path))
        first.set_hosts([101, 102, 103, 104])
        ok(first.reconcile())
        first.host_left(101)
        ok(first.reconcile())
        before = _slots(SqliteStore(path), INSTANCE)
        assert before.keys() == {102, 103, 104}
        second = session(emulated, clock, store=SqliteStore(path))
        second.host_joined(105)
        ok(second.reconcile())
        after = _slots(SqliteStore(path), INSTANCE)
        assert {uid: after[uid] for uid in before} == before
        assert after[105] not in before.values()


def _slots(store: SqliteStore, name: str) -> dict[int, int]:
    state = store.load(name)
    assert state is not None
    return {uid: slot for uid, slot in state.slots["pairs"]}


class TestConcurrencyAndLogs:
    def test_concurrent_reconciles_never_interleave(self, emulated: Emulated, clock: Clock) -> None:
        s = session(emulated, clock)
        s.set_hosts([101, 102])
        results: list[ReconcileResult] = []
        threads = [threading.Thread(target=lambda: results.append(s.reconcile())) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(r.error is None for r in results)
        assert sorted(r.action for r in results) == ["create"] + ["noop"] * 7
        assert emulated.calls("create") == 1 and emulated.calls("acquire") == 1

    def test_no_secret_in_logs_results_or_status(self, emulated: Emulated, clock: Clock) -> None:
        with capture_logs() as logs:
            s = session(emulated, clock, retries=0)
            s.set_hosts([101, 102])
            created = s.reconcile()
            emulated.emulator.add_fault("update", "commit-500")
            s.host_joined(103)
            failed = s.reconcile()
            s.reconcile()
            s.replace_spec(make_spec(canvas={"color": 255}))
            replaced = s.reconcile()
        assert {e["event"] for e in logs} >= {"reconcile.done", "reconcile.failed"}
        assert all(e.get("session") == INSTANCE for e in logs if e["event"].startswith("reconcile"))
        token = s._state.builder_token  # the secret itself, to look for it
        assert token
        shown = json.dumps(logs, default=str) + repr(s) + repr(s.status())
        shown += "".join(repr(r) + r.plan.render() for r in (created, failed, replaced) if r.plan)
        for secret in (token, *each_secret()):
            assert secret not in shown

    def test_reconcile_done_is_info_only_when_calls_were_sent(
        self, emulated: Emulated, clock: Clock
    ) -> None:
        s = session(emulated, clock)
        with capture_logs() as logs:
            s.set_hosts([101, 102])
            s.reconcile()
            s.set_speaker(102)  # compiled again, to the same body: a noop
            s.reconcile()
            s.host_joined(103)
            s.reconcile()
        done = [(e["log_level"], e["action"]) for e in logs if e["event"] == "reconcile.done"]
        assert done == [("info", "create"), ("debug", "noop"), ("info", "update")]


class TestAsyncSession:
    """The same core over AsyncClient."""

    @pytest.mark.anyio
    async def test_the_lock_excludes_and_exists_only_while_in_use(self) -> None:
        lock = apply_module._IdleFreeLock()
        inside = 0
        most = 0

        async def hold(seconds: float) -> None:
            nonlocal inside, most
            async with lock:
                inside += 1
                most = max(most, inside)
                await anyio.sleep(seconds)
                inside -= 1

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(hold, 0.001)
            await anyio.sleep(0)
            assert lock.locked()
            with anyio.CancelScope() as scope:
                scope.cancel()  # a waiter cancelled in the queue must not break the hand-over
                await hold(0)
        assert most == 1 and inside == 0
        assert not lock.locked() and lock._lock is None

    @pytest.mark.anyio
    async def test_lifecycle_and_idle_recreate(self, emulated: Emulated, clock: Clock) -> None:
        s = AsyncSession(
            make_spec(),
            client=emulated.async_client(),
            store=MemoryStore(),
            clock=clock,
            sleep=no_wait_async,
        )
        s.set_hosts([101, 102])
        assert (await s.plan()).action == "create"
        created = (await s.reconcile()).raise_for_error()
        assert created.calls == ("acquire", "create")
        s.host_joined(103)
        updated = (await s.reconcile()).raise_for_error()
        assert (updated.action, updated.sequence_id) == ("update", 0)
        assert live_equals_desired(emulated, INSTANCE, desired_body(s))
        assert (await s.reconcile()).calls == ()
        task = await s.refresh()
        assert task is not None and task.task_id == created.task_id
        s.set_hosts([])
        assert (await s.reconcile()).calls == ()
        emulated.host_absent(101, 102, 103)
        emulated.emulator.advance_clock(61)
        s.set_hosts([101])
        back = (await s.reconcile()).raise_for_error()
        assert back.calls == ("query", "acquire", "create")
        destroyed = (await s.destroy()).raise_for_error()
        assert destroyed.calls == ("delete",)
        assert emulated.tasks() == []

    @pytest.mark.anyio
    async def test_concurrent_reconciles_make_one_task(
        self, emulated: Emulated, clock: Clock
    ) -> None:
        s = AsyncSession(
            make_spec(), client=emulated.async_client(), store=MemoryStore(), clock=clock
        )
        s.set_hosts([101])
        results: list[ReconcileResult] = []

        async def run() -> None:
            results.append(await s.reconcile())

        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(run)
        assert sorted(r.action for r in results) == ["create"] + ["noop"] * 5
        assert emulated.calls("create") == 1

    @pytest.mark.anyio
    async def test_task_gone_on_update(self, emulated: Emulated, clock: Clock) -> None:
        s = AsyncSession(
            make_spec(), client=emulated.async_client(), store=MemoryStore(), clock=clock
        )
        s.set_hosts([101])
        await s.reconcile()
        emulated.host_absent(101)
        emulated.emulator.advance_clock(61)
        s.host_joined(102)
        result = (await s.reconcile()).raise_for_error()
        assert result.calls == ("update", "acquire", "create")


# --- the core against a scripted client (answers the emulator never gives) ----------------------


class Scripted:
    """A client whose answers are scripted per call; records what was sent."""

    def __init__(self, **answers: list[Any]) -> None:
        self.answers = {call: list(items) for call, items in answers.items()}
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    def _answer(self, call: str, *args: Any) -> Any:
        self.sent.append((call, args))
        answer = self.answers[call].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def acquire(self, instance_id: str) -> Any:
        return self._answer("acquire", instance_id)

    def create(self, token: str, body: Any) -> Any:
        return self._answer("create", token, body)

    def query(self, task_id: str, token: str, *, confirm_missing: bool = True) -> Any:
        return self._answer("query", task_id, token)

    def update(self, task_id: str, token: str, sequence_id: int, body: Any) -> Any:
        return self._answer("update", task_id, token, sequence_id, body)

    def delete(self, task_id: str, token: str, *, confirm_missing: bool = True) -> Any:
        return self._answer("delete", task_id, token)


def _token() -> Any:
    from layoutsync.api.models import BuilderToken

    return BuilderToken("scripted-SECRET-token", 1.0, INSTANCE)


def _task(sequence: int | None = 0, status: str = "STARTED") -> Any:
    from layoutsync.api.models import Task

    return Task("task-9", status, sequence, 1.0, "serviceReady")


def _accepted(call: str, task_id: str | None = None) -> Any:
    from layoutsync.api.models import Accepted, Call

    return Accepted(Call(call), "rid-202", task_id)


def _updated() -> Any:
    from layoutsync.api.models import Updated

    return Updated("rid-200")


class TestScriptedCore:
    """Paths that need answers the emulator does not give."""

    def test_create_202_without_task_id_asks_again_with_the_same_token(self, clock: Clock) -> None:
        client = Scripted(acquire=[_token()], create=[_accepted("create"), _task()])
        s = Session(make_spec(), client=client, store=MemoryStore(), clock=clock, sleep=no_wait)
        s.set_hosts([101])
        result = ok(s.reconcile())
        assert result.calls == ("acquire", "create", "create")
        assert [args[0] for call, args in client.sent if call == "create"] == [
            "scripted-SECRET-token"
        ] * 2
        assert result.task_id == "task-9"

    def test_update_202_never_confirmed_is_resent_higher(self, clock: Clock) -> None:
        """A service whose Query always says sequenceId "0" (the vendor's "reserved" field)."""
        store = MemoryStore()
        client = Scripted(
            acquire=[_token()],
            create=[_task()],
            update=[_updated(), _accepted("update"), _updated()],
            query=[_task(0)] * 4,
        )
        s = Session(make_spec(), client=client, store=store, clock=clock, sleep=no_wait)
        s.set_hosts([101])
        ok(s.reconcile())
        s.set_hosts([101, 102])
        ok(s.reconcile())  # sequenceId 0
        s.host_joined(103)
        pending = ok(s.reconcile())
        assert pending.calls == ("update", "query", "query", "query", "query")
        assert pending.requeue_after is not None and s.status().pending
        again = ok(s.reconcile())
        assert again.calls == ("update",)
        sent = [args[2] for call, args in client.sent if call == "update"]
        assert sent == [0, 1, 2]
        assert ok(s.reconcile()).calls == ()

    def test_nothing_is_sent_when_the_intent_cannot_be_written(self, clock: Clock) -> None:
        from layoutsync.errors import StateError

        class Broken(MemoryStore):
            def save(self, state: Any) -> None:
                raise StateError("disk full")

        client = Scripted(acquire=[_token()], create=[_task()])
        s = Session(make_spec(), client=client, store=Broken(), clock=clock)
        s.set_hosts([101])
        result = s.reconcile()
        assert isinstance(result.error, StateError)
        assert client.sent == []  # write-ahead: no record, no request

    def test_plan_says_a_lost_call_is_resumed_first(self, clock: Clock) -> None:
        store = MemoryStore()
        client = Scripted(acquire=[_token()], create=[ServerError(call="create", status_code=503)])
        s = Session(make_spec(), client=client, store=store, clock=clock)
        s.set_hosts([101])
        assert isinstance(s.reconcile().error, ServerError)
        again = Session(make_spec(), client=client, store=store, clock=clock)
        plan = again.plan()
        assert plan.action == "create"
        assert "resumed first" in plan.reasons[0]

    def test_status_snapshot(self, clock: Clock) -> None:
        client = Scripted(acquire=[_token()], create=[_task()])
        s = Session(make_spec(), client=client, store=MemoryStore(), clock=clock)
        s.set_hosts([101, 102])
        s.set_speaker(102)
        assert s.status().pending
        ok(s.reconcile())
        status = s.status()
        assert status.name == status.instance_id == INSTANCE
        assert (status.hosts, status.speaker, status.visible) == ((101, 102), 102, (101, 102))
        assert (status.task_id, status.sequence_id, status.last_action) == (
            "task-9",
            None,
            "create",
        )
        assert status.last_plan == "create: 2 hosts added"
        assert status.last_error is None and not status.pending
        assert "SECRET" not in repr(status) + repr(s)
