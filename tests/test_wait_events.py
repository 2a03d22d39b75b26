"""Waits are events: the retry machine and the session core say why they wait; the library
itself prints nothing, and the no-change fast path reports no wait."""

from __future__ import annotations

from typing import Any

from _sessionkit import Emulated, make_spec, no_wait

from layoutsync import MemoryStore, Session, WaitEvent
from layoutsync.api._retry import RetryMachine, RetryPolicy
from layoutsync.api.client import Client
from layoutsync.api.models import Call
from layoutsync.api.protocol import build_update
from layoutsync.emulator import DEFAULT_APP_ID, DEFAULT_CUSTOMER_KEY, DEFAULT_CUSTOMER_SECRET
from layoutsync.emulator.faults import parse_rule
from layoutsync.emulator.transport import SyncASGITransport
from layoutsync.errors import TransportError

POLICY = RetryPolicy(delays=(5.0, 10.0, 15.0), jitter=0.0)


class TestRetryMachine:
    def test_a_503_from_update_says_what_follows_and_which_wait_it_is(self) -> None:
        machine = RetryMachine(build_update("app", "task1", "tok", 3, {"a": 1}), POLICY)
        machine.start()
        step = machine.receive_response(503, {"X-Request-ID": "rid-1"}, b'{"message": "busy"}')
        assert step.wait == WaitEvent(Call.UPDATE, "503", "rid-1", 5.0, "check", 1, 3)
        assert str(step.wait) == (
            "503 from Update (request id rid-1); asking with a Query whether it took effect "
            "in 5 s, 1 of 3"
        )
        step = machine.receive_response(503, {}, b"{}")  # the check Query is busy too
        assert (step.wait.call, step.wait.number, step.wait.seconds) == (Call.QUERY, 2, 10.0)

    def test_a_404_is_confirmed_and_a_lost_connection_retried(self) -> None:
        machine = RetryMachine(build_update("app", "task1", "tok", 3, {"a": 1}), POLICY)
        machine.start()
        step = machine.receive_response(404, {}, b"{}")
        assert step.wait.then == "confirm" and step.wait.reason == "404"
        assert "confirming with a Query that the task is gone in 5 s, 1 of 3" in str(step.wait)
        error = TransportError("no response", call="acquire")
        error.__cause__ = ConnectionRefusedError()
        acquire = RetryMachine(build_update("app", "t", "tok", 1, {}), POLICY)
        acquire.start()
        assert acquire.receive_error(error).wait.reason == "no response (ConnectionRefusedError)"

    def test_the_first_send_has_no_wait(self) -> None:
        machine = RetryMachine(build_update("app", "task1", "tok", 3, {"a": 1}), POLICY)
        assert machine.start().wait is None


def _client(emulated: Emulated, events: list[WaitEvent]) -> Client:
    return Client(
        base_url="http://emulator.test",
        app_id=DEFAULT_APP_ID,
        customer_key=DEFAULT_CUSTOMER_KEY,
        customer_secret=DEFAULT_CUSTOMER_SECRET,
        transport=SyncASGITransport(emulated.app),
        retry=POLICY,
        sleep=no_wait,
        on_wait=events.append,
    )


class TestHooks:
    def test_client_back_offs_and_session_polls_reach_on_wait(self) -> None:
        faults: Any = (parse_rule("create:503"), parse_rule("update:202"))
        emulated = Emulated(faults=faults)
        events: list[WaitEvent] = []
        slept: list[float] = []
        session = Session(
            make_spec(),
            client=_client(emulated, events),
            store=MemoryStore(),
            sleep=slept.append,
            on_wait=events.append,
        )
        session.set_hosts([101])
        assert session.reconcile().ok
        session.set_hosts([101, 102])
        assert session.reconcile().ok
        assert [(e.call, e.reason, e.then) for e in events] == [
            (Call.CREATE, "503", "retry"),
            (Call.UPDATE, "202", "poll"),
        ]
        assert slept == [1.0]  # the session's own poll; the client's back-off used its sleep
        assert str(events[1]).startswith("202 (accepted, not finished) from Update (request id ")
        events.clear()
        assert session.reconcile().action == "noop"  # the fast path: no wait, no event
        assert events == []
        emulated.close()

    def test_the_library_prints_nothing(self, capsys: Any) -> None:
        emulated = Emulated(faults=(parse_rule("create:503"),))
        session = Session(make_spec(), client=_client(emulated, []), store=MemoryStore())
        session.set_hosts([101])
        assert session.reconcile().ok
        out, err = capsys.readouterr()
        assert (out, err) == ("", "")
        emulated.close()


async def _no_sleep(_seconds: float) -> None:
    return None


def test_the_async_twin_reports_its_polls_too() -> None:
    import anyio

    from layoutsync import AsyncSession

    emulated = Emulated(faults=(parse_rule("update:202"),))
    events: list[WaitEvent] = []

    async def main() -> None:
        async with emulated.async_client() as client:
            session = AsyncSession(
                make_spec(),
                client=client,
                store=MemoryStore(),
                sleep=_no_sleep,
                on_wait=events.append,
            )
            session.set_hosts([101])
            assert (await session.reconcile()).ok
            session.set_hosts([101, 102])
            assert (await session.reconcile()).ok

    anyio.run(main)
    assert [(e.call, e.reason, e.then, e.number) for e in events] == [
        (Call.UPDATE, "202", "poll", 1)
    ]
