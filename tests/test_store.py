"""The state stores: round trips, atomic rows, 0600 files, clear errors on damage."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from layoutsync.errors import StateError
from layoutsync.store import Inputs, Intent, MemoryStore, SessionState, SqliteStore, StateStore

TOKEN = "builder-SECRET-token"
BODY = {"services": {"cloudTranscoder": {"config": {"transcoder": {"rtcToken": "rtc-SECRET"}}}}}


def full_state(name: str = "demo") -> SessionState:
    inputs = Inputs((101, 102), 101, "spec-fp")
    return SessionState(
        name=name,
        instance_id="demo-instance",
        builder_token=TOKEN,
        token_acquired_at=1_700_000_000.5,
        task_id="task-1",
        sequence_id=7,
        applied_body=BODY,
        applied_hash="abc",
        applied_inputs=inputs,
        hosts=(101, 102, 103),
        speaker=102,
        slots={"template": "grid", "pairs": [[101, 0], [102, 1]]},
        idle_since=1_700_000_100.0,
        intent=Intent(
            "update",
            at=5.0,
            task_id="task-1",
            sequence_id=8,
            body=BODY,
            body_hash="def",
            inputs=inputs,
            slots={"template": "grid", "pairs": []},
        ),
        orphan=Intent(
            "create",
            at=1.0,
            body=BODY,
            body_hash="ghi",
            inputs=inputs,
            token="old-SECRET",
            token_acquired_at=0.5,
        ),
        updated_at=9.0,
    )


def saved_then_altered(path: Path, sql: str) -> Path:
    """A state file holding ``full_state()``, then changed behind the store's back."""
    with SqliteStore(path) as store:
        store.save(full_state())
    with sqlite3.connect(path) as db:
        db.execute(sql)
    return path


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    if request.param == "memory":
        return MemoryStore()
    return SqliteStore(tmp_path / "state.db")


class TestContract:
    """Both stores keep the same contract."""

    def test_is_a_state_store(self, store: StateStore) -> None:
        assert isinstance(store, StateStore)

    def test_missing_row_is_none(self, store: StateStore) -> None:
        assert store.load("nope") is None

    def test_round_trip(self, store: StateStore) -> None:
        state = full_state()
        store.save(state)
        assert store.load("demo") == state

    def test_minimal_round_trip(self, store: StateStore) -> None:
        state = SessionState(name="bare", instance_id="bare")
        store.save(state)
        assert store.load("bare") == state

    def test_save_replaces_the_row(self, store: StateStore) -> None:
        store.save(full_state())
        cleared = SessionState(name="demo", instance_id="demo-instance", hosts=(5,))
        store.save(cleared)
        assert store.load("demo") == cleared
        assert store.names() == ("demo",)

    def test_names_and_delete(self, store: StateStore) -> None:
        for name in ("b", "a", "c"):
            store.save(SessionState(name=name, instance_id=name))
        assert store.names() == ("a", "b", "c")
        store.delete("b")
        store.delete("never-there")
        assert store.names() == ("a", "c")
        assert store.load("b") is None


class TestClientSeqRecords:
    """The daemon's webhook ordering records, kept across a clean restart."""

    ROWS = [("room", 7, 12, None), ("room", 8, 3, 4.5), ("hall", 7, 1, None)]

    def test_round_trip_in_order_with_leaves_aged(self, store: SqliteStore | MemoryStore) -> None:
        store.save_client_seqs(self.ROWS, now=1000.0)
        loaded = store.load_client_seqs(now=1010.0)
        assert loaded == [("room", 7, 12, None), ("room", 8, 3, 14.5), ("hall", 7, 1, None)]

    def test_a_save_replaces_the_last(self, store: SqliteStore | MemoryStore) -> None:
        store.save_client_seqs(self.ROWS, now=0.0)
        store.save_client_seqs([("room", 9, 1, None)], now=0.0)
        assert store.load_client_seqs(now=0.0) == [("room", 9, 1, None)]

    def test_nothing_saved_is_empty(self, store: SqliteStore | MemoryStore) -> None:
        assert store.load_client_seqs() == []

    def test_a_clock_set_back_ages_nothing(self, store: SqliteStore | MemoryStore) -> None:
        store.save_client_seqs(self.ROWS, now=1000.0)
        assert store.load_client_seqs(now=900.0)[1] == ("room", 8, 3, 4.5)

    def test_survive_reopen_and_leave_sessions_alone(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        with SqliteStore(path) as first:
            first.save(full_state())
            first.save_client_seqs(self.ROWS, now=0.0)
        with SqliteStore(path) as second:
            assert second.load_client_seqs(now=0.0) == self.ROWS
            assert second.names() == ("demo",)

    def test_a_file_from_before_the_table_gains_it(self, tmp_path: Path) -> None:
        path = saved_then_altered(tmp_path / "state.db", "DROP TABLE client_seqs")
        with SqliteStore(path) as reopened:
            assert reopened.load_client_seqs() == []
            reopened.save_client_seqs(self.ROWS, now=0.0)
            assert reopened.load_client_seqs(now=0.0) == self.ROWS
            assert reopened.load("demo") == full_state()

    def test_a_closed_file_is_a_state_error(self, tmp_path: Path) -> None:
        store = SqliteStore(tmp_path / "state.db")
        store.close()
        with pytest.raises(StateError, match="cannot save the webhook clientSeq records"):
            store.save_client_seqs(self.ROWS)


class TestSqlite:
    def test_survives_reopen(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        with SqliteStore(path) as first:
            first.save(full_state())
        with SqliteStore(path) as second:
            assert second.load("demo") == full_state()

    def test_wal_mode(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        SqliteStore(path).close()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    def test_new_file_is_private(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        store = SqliteStore(path)
        store.save(full_state())
        for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if candidate.exists():
                assert stat.S_IMODE(candidate.stat().st_mode) == 0o600, candidate
        store.close()

    def test_existing_file_mode_is_left_alone(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        path.touch(mode=0o640)
        os.chmod(path, 0o640)
        SqliteStore(path).close()
        assert stat.S_IMODE(path.stat().st_mode) == 0o640

    def test_secrets_not_in_repr(self, tmp_path: Path) -> None:
        store = SqliteStore(tmp_path / "state.db")
        state = full_state()
        text = repr(store) + repr(state) + repr(state.intent) + repr(state.orphan)
        assert "SECRET" not in text

    def test_damaged_row_is_a_state_error(self, tmp_path: Path) -> None:
        path = saved_then_altered(
            tmp_path / "state.db", "UPDATE sessions SET intent = '{not json' WHERE name = 'demo'"
        )
        with SqliteStore(path) as store, pytest.raises(StateError, match="damaged") as info:
            store.load("demo")
        assert "SECRET" not in str(info.value)

    def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        SqliteStore(path).close()
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA user_version = 99")
        with pytest.raises(StateError, match="newer"):
            SqliteStore(path)

    def test_unwritable_location_is_a_state_error(self, tmp_path: Path) -> None:
        with pytest.raises(StateError, match="cannot"):
            SqliteStore(tmp_path / "missing-dir" / "state.db")

    def test_not_a_database(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        path.write_bytes(b"this is not sqlite" * 100)
        with pytest.raises(StateError, match="state file"):
            SqliteStore(path)

    def test_bad_synchronous_setting(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="synchronous"):
            SqliteStore(tmp_path / "x.db", synchronous="SOMETIMES")

    def test_concurrent_writers_never_tear_a_row(self, tmp_path: Path) -> None:
        store = SqliteStore(tmp_path / "state.db", synchronous="NORMAL")

        def writer(n: int) -> None:
            for i in range(50):
                store.save(
                    SessionState(name="shared", instance_id="x", hosts=(n, i), sequence_id=i)
                )

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        final = store.load("shared")
        assert final is not None and final.hosts[1] == final.sequence_id == 49
        store.close()

    def test_two_connections_see_each_others_writes(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        with SqliteStore(path) as one, SqliteStore(path) as two:
            one.save(full_state())
            assert two.load("demo") == full_state()
            assert two.check() is None
