"""Crash-safe session state: what layoutsync knows of each transcoder, one row per session.

Query does not echo a task's config, so the last body the service accepted
lives here, with the task id, its builderToken and the last sequenceId sent.
The reconciler writes ahead: an ``Intent`` is stored before every mutating
call (Acquire, Create, Update, Delete) and settled after it, so a process
killed at any point finds, on restart, exactly which call may or may not
have taken effect (see ``layoutsync.apply`` for how each is resumed).

``SqliteStore`` keeps the rows in one SQLite file (WAL; ``synchronous=FULL``
by default so a settled call survives a power cut, not only a crash). The
file holds builderTokens and the input/output rtcTokens of the applied
bodies, so it is created with mode 0600. ``MemoryStore`` is the same
contract in a dict, for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import orjson

from .canonical import canonical_bytes
from .errors import StateError

__all__ = [
    "ClientSeqRow",
    "Inputs",
    "Intent",
    "MemoryStore",
    "SessionState",
    "SqliteStore",
    "StateStore",
]

Call = Literal["acquire", "create", "update", "delete"]

#: A webhook ordering record the daemon keeps across a restart: (channel, uid, last applied
#: clientSeq, seconds since that user left, or None while a host). See ``ClientSeqTracker``.
ClientSeqRow = tuple[str, int, int, float | None]


class Inputs(NamedTuple):
    """What the compiler's output depends on: equal inputs, equal body (no need to compile)."""

    hosts: tuple[int, ...]
    speaker: int | None
    spec: str  #: the spec's fingerprint


@dataclass(frozen=True, slots=True)
class Intent:
    """A mutating call that was (or is about to be) sent and is not settled yet.

    ``body``/``body_hash``/``inputs`` are what a Create or Update carries;
    ``sequence_id`` the Update's; ``task_id`` the target of Update/Delete;
    ``slots`` the compiler's slot assignment for ``body``.
    ``token``/``token_acquired_at`` are set only on an *orphan*: a Create whose
    outcome was lost and whose builderToken is too old to retry it with.
    """

    call: Call
    at: float
    task_id: str | None = None
    sequence_id: int | None = None
    body: Mapping[str, Any] | None = field(default=None, repr=False)
    body_hash: str | None = None
    inputs: Inputs | None = None
    slots: Any = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    token_acquired_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "call": self.call,
            "at": self.at,
            "task_id": self.task_id,
            "sequence_id": self.sequence_id,
            "body": self.body,
            "body_hash": self.body_hash,
            "inputs": _inputs_json(self.inputs),
            "slots": self.slots,
            "token": self.token,
            "token_acquired_at": self.token_acquired_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Intent:
        return cls(
            call=data["call"],
            at=float(data["at"]),
            task_id=data.get("task_id"),
            sequence_id=data.get("sequence_id"),
            body=data.get("body"),
            body_hash=data.get("body_hash"),
            inputs=_inputs_of(data.get("inputs")),
            slots=data.get("slots"),
            token=data.get("token"),
            token_acquired_at=data.get("token_acquired_at"),
        )


@dataclass(frozen=True, slots=True)
class SessionState:
    """One session's row. Secrets (tokens, bodies holding rtcTokens) stay out of ``repr``.

    ``builder_token`` belongs to ``task_id`` for the task's whole life; with
    no task it is a token acquired for the pending Create. ``sequence_id`` is
    the last sequenceId *sent* to the task (None: no Update yet).
    ``applied_*`` describe the last body the service accepted, ``slots`` its
    slot assignment (passed back to the compiler so positions survive
    restarts); ``hosts`` and ``speaker`` are the desired state. ``idle_since``
    is when the task was last left without a visible host (onEmpty=idle): it
    may have been ended by idleTimeout since, so it is Queried before use.
    """

    name: str
    instance_id: str
    builder_token: str | None = field(default=None, repr=False)
    token_acquired_at: float | None = None
    task_id: str | None = None
    sequence_id: int | None = None
    applied_body: Mapping[str, Any] | None = field(default=None, repr=False)
    applied_hash: str | None = None
    applied_inputs: Inputs | None = None
    hosts: tuple[int, ...] = ()
    speaker: int | None = None
    slots: Any = field(default=None, repr=False)
    idle_since: float | None = None
    intent: Intent | None = None
    orphan: Intent | None = None
    updated_at: float = 0.0


@runtime_checkable
class StateStore(Protocol):
    """Where sessions persist. ``save`` is atomic: a row is either old or new, never torn."""

    def load(self, name: str) -> SessionState | None: ...

    def save(self, state: SessionState) -> None: ...

    def delete(self, name: str) -> None: ...

    def names(self) -> tuple[str, ...]: ...


class MemoryStore:
    """A ``StateStore`` in a dict (tests, benchmarks, throw-away sessions)."""

    def __init__(self) -> None:
        self._rows: dict[str, SessionState] = {}
        self._client_seqs: tuple[list[ClientSeqRow], float] = ([], 0.0)
        self.saves = 0  #: how many times ``save`` was called (tests count writes)

    def load(self, name: str) -> SessionState | None:
        return self._rows.get(name)

    def save(self, state: SessionState) -> None:
        self.saves += 1
        self._rows[state.name] = state

    def delete(self, name: str) -> None:
        self._rows.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._rows))

    def save_client_seqs(self, rows: Iterable[ClientSeqRow], *, now: float | None = None) -> None:
        self._client_seqs = (list(rows), time.time() if now is None else now)

    def load_client_seqs(self, *, now: float | None = None) -> list[ClientSeqRow]:
        rows, saved_at = self._client_seqs
        return _aged(rows, saved_at, now)

    def close(self) -> None:
        pass


_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    name              TEXT PRIMARY KEY,
    instance_id       TEXT NOT NULL,
    builder_token     TEXT,
    token_acquired_at REAL,
    task_id           TEXT,
    sequence_id       INTEGER,
    applied_body      BLOB,
    applied_hash      TEXT,
    applied_inputs    TEXT,
    desired           TEXT NOT NULL,
    intent            TEXT,
    orphan            TEXT,
    updated_at        REAL NOT NULL
)
"""

_CLIENT_SEQ_SCHEMA = """
CREATE TABLE IF NOT EXISTS client_seqs (
    channel    TEXT NOT NULL,
    uid        INTEGER NOT NULL,
    client_seq INTEGER NOT NULL,
    left_ago   REAL,
    saved_at   REAL NOT NULL,
    PRIMARY KEY (channel, uid)
)
"""

_COLUMNS = (
    "name",
    "instance_id",
    "builder_token",
    "token_acquired_at",
    "task_id",
    "sequence_id",
    "applied_body",
    "applied_hash",
    "applied_inputs",
    "desired",
    "intent",
    "orphan",
    "updated_at",
)

_UPSERT = (
    f"INSERT INTO sessions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)}) "
    "ON CONFLICT(name) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "name")
)

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


class SqliteStore:
    """``StateStore`` in one SQLite file (WAL). Thread-safe; one connection per store.

    ``synchronous="FULL"`` (default) fsyncs every commit: a settled call
    survives a power cut. ``"NORMAL"`` survives a process crash only and is
    faster; the write-ahead protocol is correct under both.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "layoutsync.db",
        *,
        synchronous: str = "FULL",
        timeout: float = 5.0,
    ) -> None:
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous={synchronous!r} is not one of {', '.join(_SYNCHRONOUS)}")
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            if self.path != ":memory:":
                _create_private(Path(self.path))
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise StateError(
                    f"{self.path}: state schema version {version} is newer than this "
                    f"layoutsync understands ({_SCHEMA_VERSION}); upgrade layoutsync"
                )
            with self._transaction():
                self._db.execute(_SCHEMA)
                # an added table: a file written by an older layoutsync gains it, and an
                # older layoutsync still opens this file (it never reads the table)
                self._db.execute(_CLIENT_SEQ_SCHEMA)
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot open the state file: {exc}") from None

    # --- StateStore ---------------------------------------------------------------------------

    def load(self, name: str) -> SessionState | None:
        with self._guard("read session state"):
            row = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM sessions WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else self._decode(row)

    def save(self, state: SessionState) -> None:
        row = _encode(state)
        # One statement in autocommit mode is one transaction: atomic, and durable per
        # ``synchronous`` when it returns, without a BEGIN and COMMIT round of its own.
        with self._guard("write session state"):
            self._db.execute(_UPSERT, row)

    def delete(self, name: str) -> None:
        with self._guard("delete session state"):
            self._db.execute("DELETE FROM sessions WHERE name = ?", (name,))

    def names(self) -> tuple[str, ...]:
        with self._guard("list session state"):
            rows = self._db.execute("SELECT name FROM sessions ORDER BY name").fetchall()
        return tuple(row[0] for row in rows)

    def save_client_seqs(self, rows: Iterable[ClientSeqRow], *, now: float | None = None) -> None:
        """Replace the saved webhook ordering records (the daemon saves them as it stops)."""
        saved_at = time.time() if now is None else now
        with self._guard("save the webhook clientSeq records"), self._transaction():
            self._db.execute("DELETE FROM client_seqs")
            self._db.executemany(
                "INSERT INTO client_seqs (channel, uid, client_seq, left_ago, saved_at) "
                "VALUES (?, ?, ?, ?, ?)",
                ((channel, uid, seq, left_ago, saved_at) for channel, uid, seq, left_ago in rows),
            )

    def load_client_seqs(self, *, now: float | None = None) -> list[ClientSeqRow]:
        """The saved records in their saved order, each leave older by the time since."""
        with self._guard("load the webhook clientSeq records"):
            rows = self._db.execute(
                "SELECT channel, uid, client_seq, left_ago, saved_at FROM client_seqs "
                "ORDER BY rowid"
            ).fetchall()
        if not rows:
            return []
        return _aged([row[:4] for row in rows], rows[0][4], now)

    def check(self) -> None:
        """Raise ``StateError`` unless the file answers a query (the daemon's readiness probe)."""
        with self._guard("check session state"):
            self._db.execute("SELECT 1 FROM sessions LIMIT 1").fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    # --- internals ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise StateError(f"{self.path}: cannot {what}: {exc}") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _decode(self, row: tuple[Any, ...]) -> SessionState:
        values = dict(zip(_COLUMNS, row, strict=True))
        try:
            desired = orjson.loads(values["desired"])
            intent = values["intent"]
            orphan = values["orphan"]
            return SessionState(
                name=values["name"],
                instance_id=values["instance_id"],
                builder_token=values["builder_token"],
                token_acquired_at=values["token_acquired_at"],
                task_id=values["task_id"],
                sequence_id=values["sequence_id"],
                applied_body=_loads(values["applied_body"]),
                applied_hash=values["applied_hash"],
                applied_inputs=_inputs_of(_loads(values["applied_inputs"])),
                hosts=tuple(desired.get("hosts", ())),
                speaker=desired.get("speaker"),
                slots=desired.get("slots"),
                idle_since=desired.get("idle_since"),
                intent=Intent.from_json(orjson.loads(intent)) if intent else None,
                orphan=Intent.from_json(orjson.loads(orphan)) if orphan else None,
                updated_at=values["updated_at"],
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise StateError(
                f"{self.path}: the row of session {values['name']!r} is damaged "
                f"({type(exc).__name__}); delete it with `layoutsync destroy` or restore a backup"
            ) from None


def _aged(rows: Iterable[ClientSeqRow], saved_at: float, now: float | None) -> list[ClientSeqRow]:
    """``rows`` as of ``now`` (wall clock): every leave is older by the time since saving."""
    elapsed = max(0.0, (time.time() if now is None else now) - saved_at)
    return [
        (channel, uid, seq, None if left_ago is None else left_ago + elapsed)
        for channel, uid, seq, left_ago in rows
    ]


def _create_private(path: Path) -> None:
    """Create the state file with mode 0600 (it holds tokens); leave an existing one alone.

    SQLite gives its -wal and -shm files the mode of the database file.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StateError(f"{path}: cannot create the state file: {exc.strerror}") from None
    os.close(fd)


def _encode(state: SessionState) -> tuple[Any, ...]:
    desired = {
        "hosts": list(state.hosts),
        "speaker": state.speaker,
        "slots": state.slots,
        "idle_since": state.idle_since,
    }
    try:
        return (
            state.name,
            state.instance_id,
            state.builder_token,
            state.token_acquired_at,
            state.task_id,
            state.sequence_id,
            _dumps(state.applied_body),
            state.applied_hash,
            _dumps(_inputs_json(state.applied_inputs)),
            orjson.dumps(desired).decode(),
            _dumps(state.intent.to_json()) if state.intent else None,
            _dumps(state.orphan.to_json()) if state.orphan else None,
            state.updated_at,
        )
    except TypeError as exc:
        raise StateError(f"session {state.name!r}: state is not serialisable: {exc}") from None


def _dumps(value: Any) -> str | None:
    return None if value is None else canonical_bytes(value).decode()


def _loads(value: str | bytes | None) -> Any:
    return None if value is None else orjson.loads(value)


def _inputs_json(inputs: Inputs | None) -> dict[str, Any] | None:
    if inputs is None:
        return None
    return {"hosts": list(inputs.hosts), "speaker": inputs.speaker, "spec": inputs.spec}


def _inputs_of(data: Mapping[str, Any] | None) -> Inputs | None:
    if data is None:
        return None
    return Inputs(tuple(data["hosts"]), data.get("speaker"), data["spec"])
