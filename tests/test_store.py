"""The state stores: round trips, atomic rows, 0600 files, clear errors on damage."""

from __future__ import annotations

import copy
import dataclasses
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import layoutsync.store as store_module
from layoutsync.errors import StateError
from layoutsync.store import (
    DesiredInputs,
    Inputs,
    Intent,
    MemoryStore,
    SessionState,
    SqliteStore,
    StateStore,
    has_fingerprints,
    restore_tokens,
    scrub_tokens,
    scrubbed_canonical,
)

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


@pytest.fixture(params=["sqlite", "memory", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    if request.param == "memory":
        return MemoryStore()
    if request.param == "redis":  # a real redis-server (tests/_redis.py), skipped without one
        from layoutsync.redis_store import RedisStore

        return RedisStore.from_url(request.getfixturevalue("redis_server").url)
    return SqliteStore(tmp_path / "state.db")


class TestContract:
    """Both stores keep the same contract."""

    def test_is_a_state_store(self, store: StateStore) -> None:
        assert isinstance(store, StateStore)

    def test_missing_row_is_none(self, store: StateStore) -> None:
        assert store.load("nope") is None

    def test_round_trip(self, store: StateStore) -> None:
        """Equal once the fingerprinted rtcTokens are put back (see TestTokensAtRest)."""
        state = full_state()
        store.save(state)
        loaded = store.load("demo")
        assert loaded is not None
        known = {store.fingerprint("rtc-SECRET"): "rtc-SECRET"}
        assert restore_tokens(loaded.applied_body, known) == BODY
        assert loaded.intent is not None and loaded.orphan is not None
        assert restore_tokens(loaded.intent.body, known) == BODY
        assert restore_tokens(loaded.orphan.body, known) == BODY
        assert replace_bodies(loaded, BODY) == state

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


def restored(store: StateStore, name: str) -> SessionState | None:
    """``store.load(name)`` with the test rtcToken put back, as a session does on load."""
    loaded = store.load(name)
    if loaded is None:
        return None
    return replace_bodies(
        loaded, restore_tokens(loaded.applied_body, {store.fingerprint("rtc-SECRET"): "rtc-SECRET"})
    )


def replace_bodies(state: SessionState, body: object) -> SessionState:
    intent, orphan = state.intent, state.orphan
    return dataclasses.replace(
        state,
        applied_body=body,  # type: ignore[arg-type]
        intent=dataclasses.replace(intent, body=body) if intent else None,  # type: ignore[arg-type]
        orphan=dataclasses.replace(orphan, body=body) if orphan else None,  # type: ignore[arg-type]
    )


class TestDesiredInputs:
    """Desired inputs are kept apart from the reconcile row, and written in group commits."""

    def test_missing_is_none(self, store: StateStore) -> None:
        assert store.load_desired("nope") is None

    def test_round_trip(self, store: StateStore) -> None:
        desired = DesiredInputs((3, 1, 2), 1, 12.5)
        store.save_desired("demo", desired)
        assert store.load_desired("demo") == desired
        assert store.names() == ()  # no reconcile row is made by it

    def test_group_commit_upserts_desired_and_client_seqs(self, store: StateStore) -> None:
        store.save_client_seqs([("room", 7, 1, None)], now=100.0)
        store.save_inputs(
            {"a": DesiredInputs((1,)), "b": DesiredInputs((2,), 2)},
            [("room", 7, 5, 0.0), ("room", 9, 2, None)],
        )
        store.save_inputs({"a": DesiredInputs((1, 4))})
        assert store.load_desired("a") == DesiredInputs((1, 4))
        assert store.load_desired("b") == DesiredInputs((2,), 2)
        rows = store.load_client_seqs()
        assert [row[:3] for row in rows] == [("room", 7, 5), ("room", 9, 2)]
        assert rows[0][3] is not None and rows[0][3] < 5.0 and rows[1][3] is None

    def test_delete_forgets_desired_too(self, store: StateStore) -> None:
        store.save(SessionState(name="demo", instance_id="demo"))
        store.save_desired("demo", DesiredInputs((1,)))
        store.delete("demo")
        assert store.load_desired("demo") is None

    def test_a_batch_is_one_transaction(self, tmp_path: Path) -> None:
        """A failing batch leaves nothing of itself behind (atomic group commit)."""
        with SqliteStore(tmp_path / "s.db") as store:
            store.save_desired("a", DesiredInputs((1,)))
            bad_rows = [("room", 1, 1, None), ("room", 2, "x", object())]  # not bindable
            with pytest.raises((StateError, sqlite3.Error, TypeError)):
                store.save_inputs({"a": DesiredInputs((9,))}, bad_rows)  # type: ignore[list-item]
            assert store.load_desired("a") == DesiredInputs((1,))
            assert store.load_client_seqs() == []


class TestTokensAtRest:
    """No rtcToken reaches the file: fingerprints in their place, old files migrated on open."""

    def test_file_holds_fingerprints_not_tokens(self, tmp_path: Path) -> None:
        path = tmp_path / "s.db"
        with SqliteStore(path) as store:
            store.save(full_state())
            fingerprint = store.fingerprint("rtc-SECRET")
        data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
        assert b"rtc-SECRET" not in data
        assert fingerprint.encode() in data

    def test_fingerprints_are_keyed_per_file(self, tmp_path: Path) -> None:
        with SqliteStore(tmp_path / "a.db") as a, SqliteStore(tmp_path / "b.db") as b:
            assert a.fingerprint("t") != b.fingerprint("t")
            assert a.fingerprint("t") == a.fingerprint("t") != a.fingerprint("u")
        with SqliteStore(tmp_path / "a.db") as again, SqliteStore(tmp_path / "a.db") as same:
            assert again.fingerprint("t") == same.fingerprint("t")

    def test_scrub_and_restore(self) -> None:
        def fingerprint(token: str) -> str:
            return "hmac-sha256:" + token[::-1]

        body = {"a": [{"rtcToken": "x", "rtcUid": 1}], "rtcToken": "y", "token": "kept"}
        scrubbed = scrub_tokens(body, fingerprint)
        assert scrubbed == {
            "a": [{"rtcToken": "hmac-sha256:x", "rtcUid": 1}],
            "rtcToken": "hmac-sha256:y",
            "token": "kept",
        }
        assert scrub_tokens(scrubbed, fingerprint) == scrubbed  # idempotent
        assert has_fingerprints(scrubbed) and not has_fingerprints(body)
        partly = restore_tokens(scrubbed, {"hmac-sha256:x": "x"})
        assert partly["a"][0]["rtcToken"] == "x" and partly["rtcToken"] == "hmac-sha256:y"

    def test_scrubbed_canonical_is_the_walk_serialised(self) -> None:
        """The store's fast path (regex over orjson's bytes) writes what the walk does,
        whatever the strings hold: quotes, backslashes, a key that ends in rtcToken."""
        import random

        from layoutsync.canonical import canonical_bytes

        def fingerprint(token: str) -> str:
            return "hmac-sha256:" + str(len(token)) + token[::-1]

        texts = [
            "a",
            "rtcToken",
            'x"rtcToken',
            "\\",
            'to\\"k',
            "hmac-sha256:z",
            ',"rtcToken":"z"',
            "é\n",
        ]
        rng = random.Random(7)

        def document(depth: int) -> object:
            roll = rng.random()
            if depth > 3 or roll < 0.3:
                return rng.choice([rng.choice(texts), 1, None, True, 2.5])
            if roll < 0.6:
                return [document(depth + 1) for _ in range(rng.randrange(4))]
            keys = [*texts, "rtcToken", "rtcToken"]
            return {rng.choice(keys): document(depth + 1) for _ in range(rng.randrange(5))}

        for _ in range(2000):
            value = document(0)
            expected = canonical_bytes(scrub_tokens(value, fingerprint))
            assert scrubbed_canonical(value, fingerprint) == expected

    def test_version_1_file_is_migrated_on_open(self, tmp_path: Path) -> None:
        """A file written in clear by layoutsync <= 0.x loses its tokens on the first open."""
        path = tmp_path / "old.db"
        with SqliteStore(path) as store:
            store.save(full_state())
        clear = orjson_dumps(BODY)
        intent = orjson_dumps(full_state().intent.to_json())  # type: ignore[union-attr]
        with sqlite3.connect(path) as db:
            db.execute(
                "UPDATE sessions SET applied_body = ?, intent = ?, orphan = ?",
                (clear, intent, intent),
            )
            db.execute("DROP TABLE desired_inputs")
            db.execute("PRAGMA user_version = 1")
        assert b"rtc-SECRET" in b"".join(p.read_bytes() for p in tmp_path.iterdir())
        with SqliteStore(path) as store:
            loaded = store.load("demo")
            assert loaded is not None and has_fingerprints(loaded.applied_body)
            assert store.load_desired("demo") is None  # an old file: the row's hosts count
        assert b"rtc-SECRET" not in b"".join(p.read_bytes() for p in tmp_path.iterdir())
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == 3


def orjson_dumps(value: object) -> str:
    import orjson

    return orjson.dumps(value).decode()


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
            assert restored(reopened, "demo") == full_state()

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
            assert restored(second, "demo") == full_state()

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
            assert restored(two, "demo") == full_state()
            assert two.check() is None


def _body(hosts: int) -> dict[str, object]:
    """A body carrying the test rtcToken, different per ``hosts``."""
    inputs = [{"rtc": {"rtcUid": uid, "rtcToken": "rtc-SECRET"}} for uid in range(hosts)]
    return {"services": {"cloudTranscoder": {"config": {"transcoder": {"videoInputs": inputs}}}}}


def _restore_all(store: StateStore, name: str) -> SessionState | None:
    loaded = store.load(name)
    if loaded is None:
        return None
    known = {store.fingerprint("rtc-SECRET"): "rtc-SECRET"}

    def intent(value: Intent | None) -> Intent | None:
        if value is None:
            return None
        return dataclasses.replace(value, body=restore_tokens(value.body, known))

    return dataclasses.replace(
        loaded,
        applied_body=restore_tokens(loaded.applied_body, known),
        intent=intent(loaded.intent),
        orphan=intent(loaded.orphan),
    )


class TestColumnWrites:
    """A save writes only what changed since this store's last write of the row."""

    @given(steps=st.lists(st.integers(0, 7), min_size=1, max_size=25))
    @settings(max_examples=60, deadline=None)
    def test_every_save_reads_back_equal(
        self, tmp_path_factory: pytest.TempPathFactory, steps: list[int]
    ) -> None:
        path = tmp_path_factory.mktemp("columns") / "state.db"
        with SqliteStore(path) as store, SqliteStore(path) as reader:
            state = SessionState("demo", "demo-instance", applied_body=_body(1), applied_hash="h1")
            store.save(state)
            for number, step in enumerate(steps, 2):
                body = _body(number % 4 + 1)
                if step == 0:  # the intent of an Update
                    state = dataclasses.replace(
                        state,
                        sequence_id=number,
                        intent=Intent(
                            "update", at=1.0, sequence_id=number, body=body, body_hash=f"h{number}"
                        ),
                    )
                elif step == 1 and state.intent is not None:  # its outcome: the body is applied
                    state = dataclasses.replace(
                        state,
                        applied_body=state.intent.body,
                        applied_hash=state.intent.body_hash,
                        applied_inputs=Inputs((number,), None, "fp"),
                        intent=None,
                    )
                elif step == 2:  # a new body that no intent carried
                    state = dataclasses.replace(state, applied_body=body, applied_hash=f"h{number}")
                elif step == 3:
                    state = dataclasses.replace(state, hosts=(*state.hosts, number), speaker=number)
                elif step == 4:
                    orphan = Intent(
                        "create", at=2.0, body=body, token="old-builder", token_acquired_at=3.0
                    )
                    state = dataclasses.replace(
                        state, orphan=orphan if state.orphan is None else None
                    )
                elif step == 5:
                    state = dataclasses.replace(
                        state,
                        task_id=f"task-{number}",
                        builder_token=f"bt-{number}",
                        idle_since=float(number),
                    )
                elif step == 6:  # an equal copy of the body, not the same object
                    state = dataclasses.replace(
                        state, applied_body=copy.deepcopy(state.applied_body)
                    )
                else:
                    state = dataclasses.replace(
                        state, applied_body=None, applied_hash=None, tokens={"n": number}
                    )
                state = dataclasses.replace(state, updated_at=float(number))
                store.save(state)
                assert _restore_all(reader, "demo") == state

    def test_settling_an_update_moves_the_body_without_encoding_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with SqliteStore(tmp_path / "state.db") as store:
            state = SessionState("demo", "demo-instance", applied_body=_body(1), applied_hash="h1")
            store.save(state)
            intent = Intent("update", at=1.0, sequence_id=2, body=_body(2), body_hash="h2")
            state = dataclasses.replace(state, sequence_id=2, intent=intent)
            store.save(state)
            encoded: list[object] = []
            real = store_module.scrubbed_canonical
            monkeypatch.setattr(
                store_module,
                "scrubbed_canonical",
                lambda value, fp: encoded.append(value) or real(value, fp),
            )
            state = dataclasses.replace(
                state, applied_body=intent.body, applied_hash="h2", intent=None
            )
            store.save(state)
            assert encoded == []
            assert _restore_all(store, "demo") == state

    def test_a_write_by_another_connection_is_not_mixed_with_a_partial_one(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "state.db"
        with SqliteStore(path) as one, SqliteStore(path) as two:
            mine = SessionState(
                "demo", "demo-instance", task_id="mine", applied_body=_body(1), applied_hash="h1"
            )
            one.save(mine)
            two.save(
                SessionState(
                    "demo", "demo-instance", task_id="theirs", builder_token="theirs", hosts=(9,)
                )
            )
            mine = dataclasses.replace(
                mine, sequence_id=3
            )  # only this column differs from my last write
            one.save(mine)
            assert _restore_all(two, "demo") == mine

    def test_a_row_deleted_elsewhere_is_written_whole(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        with SqliteStore(path) as one:
            state = SessionState("demo", "demo-instance", applied_body=_body(1), applied_hash="h1")
            one.save(state)
            with sqlite3.connect(path) as db:
                db.execute("DELETE FROM sessions")
            state = dataclasses.replace(state, sequence_id=4)
            one.save(state)
            assert _restore_all(one, "demo") == state

    def test_a_version_2_file_gains_the_column_and_keeps_inline_intent_bodies(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "old.db"
        state = full_state()
        with SqliteStore(path) as store:
            store.save(state)
        intent = scrubbed_canonical(state.intent.to_json(), SqliteStore(path).fingerprint).decode()  # type: ignore[union-attr]
        with sqlite3.connect(path) as db:
            db.execute("UPDATE sessions SET intent = ?", (intent,))
            db.execute("CREATE TABLE s2 AS SELECT * FROM sessions")
            db.execute("DROP TABLE sessions")
            db.execute(
                "CREATE TABLE sessions AS SELECT " + ", ".join(c for c in _V2_COLUMNS) + " FROM s2"
            )
            db.execute("DROP TABLE s2")
            db.execute("PRAGMA user_version = 2")
        with SqliteStore(path) as store:
            assert restored(store, "demo") == state
        with sqlite3.connect(path) as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
            assert "intent_body" in columns
            assert db.execute("PRAGMA user_version").fetchone()[0] == 3


_V2_COLUMNS = tuple(column for column in store_module._COLUMNS if column != "intent_body")


class TestCheckpoints:
    """The WAL is copied into the database by a thread of the store's, not inside a commit."""

    def test_commits_leave_checkpoints_to_the_thread(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        with SqliteStore(path, synchronous="NORMAL") as store:
            assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 10_000
            before = path.stat().st_size
            for number in range(400):  # about 1,200 WAL pages: past SQLite's default of 1,000
                store.save(
                    SessionState(f"s{number}", "i", applied_body=_body(60), applied_hash="h")
                )
            deadline = time.monotonic() + 10
            while path.stat().st_size <= before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert path.stat().st_size > before  # the thread copied the WAL in
            thread = store._checkpointer._thread  # type: ignore[union-attr]
            assert thread.is_alive()
        assert not thread.is_alive()  # close() stops it
        with SqliteStore(path) as reopened:
            assert reopened.load("s399") is not None

    def test_a_store_only_read_starts_no_thread(self, tmp_path: Path) -> None:
        with SqliteStore(tmp_path / "state.db") as store:
            store.load("missing")
            store.names()
            assert store._checkpointer is None
