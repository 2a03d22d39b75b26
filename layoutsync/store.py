"""Crash-safe session state: what layoutsync knows of each transcoder, one row per session.

Query does not echo a task's config, so the last body the service accepted
lives here, with the task id, its builderToken and the last sequenceId sent.
The reconciler writes ahead: an ``Intent`` is stored before every mutating
call (Acquire, Create, Update, Delete) and settled after it, so a process
killed at any point finds, on restart, exactly which call may or may not
have taken effect (see ``layoutsync.apply`` for how each is resumed).

Desired inputs (``DesiredInputs``: the hosts and speaker a caller asked for)
are kept apart from the reconcile state: a caller that was told "accepted"
finds them again after a crash, whatever the reconciler had done by then
(``save_desired``, or ``save_inputs`` for a group commit of many sessions
and the daemon's webhook clientSeq records in one transaction).

No rtcToken is kept at rest: every ``rtcToken`` in a stored body is replaced
by a keyed fingerprint (``TokenFingerprint``: HMAC-SHA256 under a random key
kept in the file), enough to tell whether a token changed; the session puts
the real tokens back from its spec when it loads (``restore_tokens``). The
file does hold builderTokens: the vendor wants a task's own builderToken on
every call on that task, and one is useless without the customer secret.

``SqliteStore`` keeps the rows in one SQLite file (WAL; ``synchronous=FULL``
by default so a settled call survives a power cut, not only a crash),
created with mode 0600. ``MemoryStore`` is the same contract in a dict, for
tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import os
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import orjson

from .canonical import canonical_bytes
from .errors import StateError

__all__ = [
    "ClientSeqRow",
    "DesiredInputs",
    "Inputs",
    "Intent",
    "MemoryStore",
    "SessionState",
    "SqliteStore",
    "StateStore",
    "TokenFingerprint",
    "has_fingerprints",
    "restore_tokens",
    "scrub_tokens",
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
class DesiredInputs:
    """What a caller asked for (hosts in join order, speaker), saved before it is acknowledged.

    ``updated_at`` is wall-clock seconds of the change. Equal hosts and speaker compare
    ``same``: a change that changes nothing is not written again.
    """

    hosts: tuple[int, ...] = ()
    speaker: int | None = None
    updated_at: float = 0.0

    def same(self, other: DesiredInputs | None) -> bool:
        return other is not None and (self.hosts, self.speaker) == (other.hosts, other.speaker)

    def to_json(self) -> dict[str, Any]:
        return {"hosts": list(self.hosts), "speaker": self.speaker, "updated_at": self.updated_at}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DesiredInputs:
        speaker = data.get("speaker")
        return cls(
            hosts=tuple(int(uid) for uid in data.get("hosts", ())),
            speaker=None if speaker is None else int(speaker),
            updated_at=float(data.get("updated_at", 0.0)),
        )


# --- tokens at rest -----------------------------------------------------------------------------

#: The body keys whose values are secrets a store must not keep (the vendor's spelling).
TOKEN_KEYS: frozenset[str] = frozenset({"rtcToken"})

_FINGERPRINT_PREFIX = "hmac-sha256:"


class TokenFingerprint:
    """A keyed fingerprint of a token: equal tokens, equal fingerprints; nothing to reverse.

    128 bits of HMAC-SHA256 under ``key``. A store keeps its own random key, so
    fingerprints of two state files cannot be matched with each other.
    """

    __slots__ = ("_key", "_known")

    #: Fingerprints kept (token -> fingerprint): a session's tokens recur in every save.
    CACHE_SIZE = 4096

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a fingerprint key has at least 16 bytes")
        self._key = key
        self._known: dict[str, str] = {}

    def __call__(self, token: str) -> str:
        known = self._known.get(token)
        if known is not None:
            return known
        digest = hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()
        if len(self._known) >= self.CACHE_SIZE:
            self._known.clear()
        known = self._known[token] = _FINGERPRINT_PREFIX + digest[:32]
        return known

    def __repr__(self) -> str:
        return "TokenFingerprint(<key>)"


def _is_fingerprint(value: object) -> bool:
    return isinstance(value, str) and value.startswith(_FINGERPRINT_PREFIX)


def scrub_tokens(value: Any, fingerprint: Callable[[str], str]) -> Any:
    """``value`` (a JSON document) with every token under ``TOKEN_KEYS`` fingerprinted."""
    if isinstance(value, Mapping):
        return {
            key: (
                item
                if _is_fingerprint(item)
                else fingerprint(item)
                if key in TOKEN_KEYS and isinstance(item, str)
                else scrub_tokens(item, fingerprint)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub_tokens(item, fingerprint) for item in value]
    return value


#: A token key in compact JSON with a string value. A real key's opening quote follows
#: ``{`` or ``,``; any other is an escaped quote inside a longer key.
_TOKEN_PREFIXES: tuple[bytes, ...] = tuple(f'"{key}":"'.encode() for key in sorted(TOKEN_KEYS))


def _string_end(raw: bytes, start: int) -> int:
    """The index of the quote that closes the JSON string whose contents begin at ``start``."""
    end = raw.find(b'"', start)
    while end != -1:
        backslashes = 0
        while raw[end - 1 - backslashes] == 92:  # "\\"
            backslashes += 1
        if backslashes % 2 == 0:
            return end
        end = raw.find(b'"', end + 1)
    raise ValueError("unterminated JSON string")


def scrubbed_canonical(value: Any, fingerprint: Callable[[str], str]) -> bytes:
    """``canonical_bytes(scrub_tokens(value, fingerprint))``, without a walk in Python.

    The document is serialised once (orjson, in C) and each string under a token key
    is replaced in the bytes (found with ``bytes.find``): the keys are unchanged, so
    their sorted order is too. Anything orjson does not take as it is (a non-dict
    ``Mapping``) goes the long way.
    """
    try:
        raw = canonical_bytes(value)
    except TypeError:
        return canonical_bytes(scrub_tokens(value, fingerprint))
    spans: list[tuple[int, int, bytes]] = []
    seen: dict[bytes, bytes] = {}  # a body carries the same token in many places
    for prefix in _TOKEN_PREFIXES:
        at = raw.find(prefix)
        while at != -1:
            opening = at + len(prefix) - 1  # the value's opening quote
            end = _string_end(raw, opening + 1)
            if at > 0 and raw[at - 1] in b"{,":
                encoded = raw[opening : end + 1]
                replacement = seen.get(encoded)
                if replacement is None:
                    token = orjson.loads(encoded)
                    replacement = seen[encoded] = (
                        encoded if _is_fingerprint(token) else orjson.dumps(fingerprint(token))
                    )
                if replacement is not encoded:
                    spans.append((opening, end + 1, replacement))
            at = raw.find(prefix, end + 1)
    if not spans:
        return raw
    spans.sort()
    parts: list[bytes] = []
    done = 0
    for begin, end, replacement in spans:
        parts += (raw[done:begin], replacement)
        done = end
    parts.append(raw[done:])
    return b"".join(parts)


def restore_tokens(value: Any, known: Mapping[str, str]) -> Any:
    """``value`` with each fingerprint found in ``known`` (fingerprint -> token) put back.

    A fingerprint of a token no longer known stays: the body then differs from
    one that carries the current token, which is what changed.
    """
    if isinstance(value, Mapping):
        return {
            key: (
                known.get(item, item)
                if key in TOKEN_KEYS and isinstance(item, str)
                else restore_tokens(item, known)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [restore_tokens(item, known) for item in value]
    return value


def has_fingerprints(value: Any) -> bool:
    """True when a token of ``value`` is still a fingerprint (it cannot be sent as it is)."""
    if isinstance(value, Mapping):
        return any(
            (key in TOKEN_KEYS and _is_fingerprint(item)) or has_fingerprints(item)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return any(has_fingerprints(item) for item in value)
    return False


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
    #: minted rtcTokens: the recipes (``layoutsync.tokens.TaskTokens``) ``body`` carries
    tokens: Any = None

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
            "tokens": self.tokens,
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
            tokens=data.get("tokens"),
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
    #: minted rtcTokens of the task: their recipes as JSON (issue time, salt, lifetime;
    #: ``layoutsync.tokens.TaskTokens``), never a token
    tokens: Any = None


@runtime_checkable
class StateStore(Protocol):
    """Where sessions persist. Every write is atomic (old or new, never torn) and durable
    when it returns: a caller may acknowledge what it wrote.

    - ``load``/``save``/``delete``/``names``: the reconcile state rows. ``delete``
      forgets the session's desired inputs too.
    - ``load_desired``/``save_desired``: one session's ``DesiredInputs``.
    - ``save_inputs``: a group commit, one transaction for many sessions' desired
      inputs and webhook clientSeq records (upserted by (channel, uid)).
    - ``load_client_seqs``/``save_client_seqs``: all clientSeq records (``save``
      replaces them all; the daemon compacts with it).
    - ``fingerprint``: the keyed fingerprint a store puts in place of every
      ``rtcToken`` it keeps (``scrub_tokens``); a store that keeps nothing at rest
      may keep the tokens and still offer one.
    """

    def load(self, name: str) -> SessionState | None: ...

    def save(self, state: SessionState) -> None: ...

    def delete(self, name: str) -> None: ...

    def names(self) -> tuple[str, ...]: ...

    def load_desired(self, name: str) -> DesiredInputs | None: ...

    def save_desired(self, name: str, desired: DesiredInputs) -> None: ...

    def save_inputs(
        self, desired: Mapping[str, DesiredInputs], client_seqs: Iterable[ClientSeqRow] = ()
    ) -> None: ...

    def load_client_seqs(self, *, now: float | None = None) -> list[ClientSeqRow]: ...

    def save_client_seqs(
        self, rows: Iterable[ClientSeqRow], *, now: float | None = None
    ) -> None: ...

    def fingerprint(self, token: str) -> str: ...


class MemoryStore:
    """A ``StateStore`` in a dict (tests, benchmarks, throw-away sessions)."""

    def __init__(self) -> None:
        self._rows: dict[str, SessionState] = {}
        self._desired: dict[str, DesiredInputs] = {}
        #: (channel, uid) -> (clientSeq, seconds since the leave or None, saved at)
        self._client_seqs: dict[tuple[str, int], tuple[int, float | None, float]] = {}
        self._fingerprint = TokenFingerprint(secrets.token_bytes(32))
        self.saves = 0  #: how many times ``save`` was called (tests count writes)
        self.commit_blocks = False  #: a write never waits (see ``InputJournal``)
        self.input_writes = 0  #: how many desired-input transactions (tests count group commits)

    def load(self, name: str) -> SessionState | None:
        return self._rows.get(name)

    def save(self, state: SessionState) -> None:
        self.saves += 1
        self._rows[state.name] = state

    def delete(self, name: str) -> None:
        self._rows.pop(name, None)
        self._desired.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._rows))

    def load_desired(self, name: str) -> DesiredInputs | None:
        return self._desired.get(name)

    def save_desired(self, name: str, desired: DesiredInputs) -> None:
        self.save_inputs({name: desired})

    def save_inputs(
        self, desired: Mapping[str, DesiredInputs], client_seqs: Iterable[ClientSeqRow] = ()
    ) -> None:
        self.input_writes += 1
        self._desired.update(desired)
        saved_at = time.time()
        for channel, uid, seq, left_ago in client_seqs:
            self._client_seqs.pop((channel, uid), None)  # to the end: the saved order is LRU
            self._client_seqs[channel, uid] = (seq, left_ago, saved_at)

    def save_client_seqs(self, rows: Iterable[ClientSeqRow], *, now: float | None = None) -> None:
        saved_at = time.time() if now is None else now
        self._client_seqs = {
            (channel, uid): (seq, left_ago, saved_at) for channel, uid, seq, left_ago in rows
        }

    def load_client_seqs(self, *, now: float | None = None) -> list[ClientSeqRow]:
        return _aged(
            [
                (channel, uid, seq, left_ago, saved_at)
                for (channel, uid), (seq, left_ago, saved_at) in self._client_seqs.items()
            ],
            now,
        )

    def fingerprint(self, token: str) -> str:
        return self._fingerprint(token)

    def close(self) -> None:
        pass


#: 1: sessions and client_seqs. 2: desired_inputs and meta; rtcTokens fingerprinted.
#: 3: an intent's body in a column of its own (``intent_body``), so settling an Update
#: moves it to ``applied_body`` inside SQLite instead of encoding and writing it again;
#: a ``revision`` per write, so a save can write only the columns it changed.
_SCHEMA_VERSION = 3

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
    updated_at        REAL NOT NULL,
    intent_body       BLOB,
    revision          INTEGER
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

_DESIRED_SCHEMA = """
CREATE TABLE IF NOT EXISTS desired_inputs (
    name       TEXT PRIMARY KEY,
    desired    TEXT NOT NULL,
    updated_at REAL NOT NULL
)
"""

_META_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
)
"""

_UPSERT_DESIRED = (
    "INSERT INTO desired_inputs (name, desired, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT(name) DO UPDATE SET desired = excluded.desired, updated_at = excluded.updated_at"
)

# REPLACE (delete, insert) moves the row to the end: rowid order stays least recently updated
_UPSERT_CLIENT_SEQ = (
    "INSERT OR REPLACE INTO client_seqs (channel, uid, client_seq, left_ago, saved_at) "
    "VALUES (?, ?, ?, ?, ?)"
)

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
    "intent_body",
)

_WRITTEN = (*_COLUMNS, "revision")  #: the write's revision (``SqliteStore._update_changed``)
_UPSERT = (
    f"INSERT INTO sessions ({', '.join(_WRITTEN)}) VALUES ({', '.join('?' for _ in _WRITTEN)}) "
    "ON CONFLICT(name) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _WRITTEN if c != "name")
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
        #: a commit waits for an fsync (FULL, EXTRA): the daemon's journal writes in a thread
        self.commit_blocks = synchronous.upper() in ("FULL", "EXTRA")
        self._lock = threading.Lock()
        self._synchronous = synchronous.upper()
        self._timeout = timeout
        self._checkpointer: _Checkpointer | None = None
        #: name -> (the state this store last wrote, the row's revision it wrote with it)
        self._written: dict[str, tuple[SessionState, int]] = {}
        #: each write's ``revision``: from a random start, so another store's never match
        self._revisions = itertools.count(secrets.randbits(62))
        try:
            if self.path != ":memory:":
                _create_private(Path(self.path))
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            # checkpoints run in a thread of their own (``_Checkpointer``); this is a backstop
            self._db.execute(f"PRAGMA wal_autocheckpoint={_BACKSTOP_PAGES}")
            # what is deleted or rewritten is zeroed, so a replaced token leaves no trace
            self._db.execute("PRAGMA secure_delete=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise StateError(
                    f"{self.path}: state schema version {version} is newer than this "
                    f"layoutsync understands ({_SCHEMA_VERSION}); upgrade layoutsync"
                )
            with self._transaction():
                self._db.execute(_SCHEMA)
                self._db.execute(_CLIENT_SEQ_SCHEMA)
                self._db.execute(_DESIRED_SCHEMA)
                self._db.execute(_META_SCHEMA)
                self._fingerprint = TokenFingerprint(self._fingerprint_key())
                migrated = self._scrub_rows() if version < 2 else 0
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(sessions)")}
                if "intent_body" not in columns:  # version 3; older rows keep the body inline
                    self._db.execute("ALTER TABLE sessions ADD COLUMN intent_body BLOB")
                    self._db.execute("ALTER TABLE sessions ADD COLUMN revision INTEGER")
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            if migrated:
                # the old pages held the tokens: rebuild the file and empty the WAL. Best
                # effort: another connection's read blocks it, and secure_delete has
                # already zeroed the freed cells; the WAL's old frames go at its next reset.
                with contextlib.suppress(sqlite3.OperationalError):
                    self._db.execute("VACUUM")
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
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
        # One statement in autocommit mode is one transaction: atomic, and durable per
        # ``synchronous`` when it returns, without a BEGIN and COMMIT round of its own.
        with self._guard("write session state"):
            if self._checkpointer is None:
                self._start_checkpointer()
            written = self._written.pop(state.name, None)
            revision = next(self._revisions)
            if written is None or not self._update_changed(*written, state, revision):
                self._db.execute(_UPSERT, (*_encode(state, self._fingerprint), revision))
            self._written[state.name] = (state, revision)

    def _update_changed(
        self, written: SessionState, written_revision: int, state: SessionState, revision: int
    ) -> bool:
        """Write only the columns that differ from ``written``, the row as this store last
        wrote it; False if the row is not as it left it (gone, or written by another
        connection since: its ``revision`` differs), and the caller writes all of it.

        A reconcile saves twice per call (the intent, then its outcome) and each save
        used to encode and write both bodies, a tenth of the daemon's time per event.
        Bodies are compared by identity: an equal copy is written again, never skipped
        wrongly. The body an intent carried becomes ``applied_body`` in SQLite itself.
        """
        try:
            columns, values = self._changed_columns(written, state)
        except TypeError as exc:
            raise StateError(f"session {state.name!r}: state is not serialisable: {exc}") from None
        columns.append("revision = ?")
        cursor = self._db.execute(
            f"UPDATE sessions SET {', '.join(columns)} WHERE name = ? AND revision = ?",
            (*values, revision, state.name, written_revision),
        )
        return cursor.rowcount == 1

    def _changed_columns(
        self, written: SessionState, state: SessionState
    ) -> tuple[list[str], list[Any]]:
        columns: list[str] = []
        values: list[Any] = []
        for column, attribute in _SCALAR_COLUMNS:
            value = getattr(state, attribute)
            if value != getattr(written, attribute):
                columns.append(f"{column} = ?")
                values.append(value)
        if state.applied_inputs != written.applied_inputs:
            columns.append("applied_inputs = ?")
            values.append(_dumps(_inputs_json(state.applied_inputs)))
        desired = _desired_json(state)
        if desired != _desired_json(written):
            columns.append("desired = ?")
            values.append(orjson.dumps(desired).decode())
        fingerprint = self._fingerprint
        body = state.applied_body
        if body is not written.applied_body:
            if body is not None and written.intent is not None and body is written.intent.body:
                columns.append("applied_body = intent_body")  # SET reads the row before it
            else:
                columns.append("applied_body = ?")
                values.append(_dumps_scrubbed(body, fingerprint))
        if state.intent is not written.intent:
            intent, intent_body = _intent_columns(state.intent, fingerprint)
            columns.append("intent = ?, intent_body = ?")
            values.extend((intent, intent_body))
        if state.orphan is not written.orphan:
            columns.append("orphan = ?")
            values.append(_dumps_intent(state.orphan, fingerprint))
        return columns, values

    def delete(self, name: str) -> None:
        with self._guard("delete session state"), self._transaction():
            self._written.pop(name, None)
            self._db.execute("DELETE FROM sessions WHERE name = ?", (name,))
            self._db.execute("DELETE FROM desired_inputs WHERE name = ?", (name,))

    def names(self) -> tuple[str, ...]:
        with self._guard("list session state"):
            rows = self._db.execute("SELECT name FROM sessions ORDER BY name").fetchall()
        return tuple(row[0] for row in rows)

    def load_desired(self, name: str) -> DesiredInputs | None:
        with self._guard("read desired inputs"):
            row = self._db.execute(
                "SELECT desired FROM desired_inputs WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            return None
        try:
            return DesiredInputs.from_json(orjson.loads(row[0]))
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
            raise StateError(
                f"{self.path}: the desired inputs of session {name!r} are damaged "
                f"({type(exc).__name__}); delete it with `layoutsync destroy` or restore a backup"
            ) from None

    def save_desired(self, name: str, desired: DesiredInputs) -> None:
        """Save one session's desired inputs (one statement: one durable transaction)."""
        with self._guard("write desired inputs"):
            self._db.execute(_UPSERT_DESIRED, _desired_row(name, desired))

    def save_inputs(
        self, desired: Mapping[str, DesiredInputs], client_seqs: Iterable[ClientSeqRow] = ()
    ) -> None:
        """Group commit: desired inputs and clientSeq records in one transaction, one fsync."""
        saved_at = time.time()
        seq_rows = [
            (channel, uid, seq, left_ago, saved_at) for channel, uid, seq, left_ago in client_seqs
        ]
        desired_rows = [_desired_row(name, value) for name, value in desired.items()]
        if not seq_rows and not desired_rows:
            return
        if self._checkpointer is None:
            with self._guard("start the checkpoint thread"):
                self._start_checkpointer()
        if len(seq_rows) + len(desired_rows) == 1:  # one statement is one transaction
            with self._guard("write desired inputs"):
                if desired_rows:
                    self._db.execute(_UPSERT_DESIRED, desired_rows[0])
                else:
                    self._db.execute(_UPSERT_CLIENT_SEQ, seq_rows[0])
            return
        with self._guard("write desired inputs"), self._transaction():
            self._db.executemany(_UPSERT_DESIRED, desired_rows)
            self._db.executemany(_UPSERT_CLIENT_SEQ, seq_rows)

    def fingerprint(self, token: str) -> str:
        return self._fingerprint(token)

    def save_client_seqs(self, rows: Iterable[ClientSeqRow], *, now: float | None = None) -> None:
        """Replace every saved webhook ordering record (the daemon compacts with this)."""
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
        return _aged(rows, now)

    def check(self) -> None:
        """Raise ``StateError`` unless the file answers a query (the daemon's readiness probe)."""
        with self._guard("check session state"):
            self._db.execute("SELECT 1 FROM sessions LIMIT 1").fetchall()

    def close(self) -> None:
        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
            self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    # --- internals ----------------------------------------------------------------------------

    def _start_checkpointer(self) -> None:
        if self._checkpointer is None and self.path != ":memory:":
            self._checkpointer = _Checkpointer(self.path, self._synchronous, self._timeout)
            # a store dropped without close() stops its thread too
            weakref.finalize(self, self._checkpointer.close)

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

    def _fingerprint_key(self) -> bytes:
        """This file's fingerprint key, made on first open (inside the open's transaction)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'fingerprint_key'").fetchone()
        if row is not None:
            return bytes(row[0])
        key = secrets.token_bytes(32)
        self._db.execute("INSERT INTO meta (key, value) VALUES ('fingerprint_key', ?)", (key,))
        return key

    def _scrub_rows(self) -> int:
        """Migration to version 2: fingerprint the rtcTokens older versions stored in clear."""
        rows = self._db.execute(
            "SELECT name, applied_body, intent, orphan FROM sessions"
        ).fetchall()
        changed = 0
        for name, applied_body, intent, orphan in rows:
            scrubbed = tuple(
                None if value is None else _dumps(scrub_tokens(_loads(value), self._fingerprint))
                for value in (applied_body, intent, orphan)
            )
            if scrubbed != (applied_body, intent, orphan):
                self._db.execute(
                    "UPDATE sessions SET applied_body = ?, intent = ?, orphan = ? WHERE name = ?",
                    (*scrubbed, name),
                )
                changed += 1
        return changed

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
                tokens=desired.get("tokens"),
                intent=_intent_of(intent, values["intent_body"]) if intent else None,
                orphan=Intent.from_json(orjson.loads(orphan)) if orphan else None,
                updated_at=values["updated_at"],
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise StateError(
                f"{self.path}: the row of session {values['name']!r} is damaged "
                f"({type(exc).__name__}); delete it with `layoutsync destroy` or restore a backup"
            ) from None


#: The main connection checkpoints only when the WAL outgrows this (40 MB of 4 KB pages):
#: the checkpoint thread normally keeps it far smaller.
_BACKSTOP_PAGES = 10_000


class _Checkpointer:
    """Copies the WAL into the database file from a thread and a connection of its own.

    SQLite's automatic checkpoint runs inside whichever commit crosses 1,000
    WAL pages, fsyncing the WAL and the database file (``synchronous`` NORMAL
    or FULL): in the daemon, whose writes run on its event loop, that held
    every event in flight for 10-26 ms a few times a second. A PASSIVE
    checkpoint here waits for no writer and blocks none; the commits' own
    durability is unchanged (a commit is durable in the WAL).
    """

    INTERVAL = 0.5  #: seconds between checkpoints

    def __init__(self, path: str, synchronous: str, timeout: float) -> None:
        self._stop = threading.Event()
        self._db = sqlite3.connect(
            path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._thread = threading.Thread(target=self._run, name="layoutsync-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            with contextlib.suppress(sqlite3.Error):  # busy or closed: the next round, or none
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            if self._thread is not threading.current_thread():
                self._thread.join()
            self._db.close()


def _aged(
    rows: Iterable[tuple[str, int, int, float | None, float]], now: float | None
) -> list[ClientSeqRow]:
    """(channel, uid, seq, left_ago, saved_at) rows as of ``now`` (wall clock): every leave
    is older by the time since its row was saved."""
    at = time.time() if now is None else now
    return [
        (channel, uid, seq, None if left_ago is None else left_ago + max(0.0, at - saved_at))
        for channel, uid, seq, left_ago, saved_at in rows
    ]


def _desired_row(name: str, desired: DesiredInputs) -> tuple[str, str, float]:
    return (name, orjson.dumps(desired.to_json()).decode(), desired.updated_at)


def _create_private(path: Path) -> None:
    """Create the state file with mode 0600 (it holds builderTokens); leave an existing one alone.

    SQLite gives its -wal and -shm files the mode of the database file.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StateError(f"{path}: cannot create the state file: {exc.strerror}") from None
    os.close(fd)


#: (column, SessionState attribute) of the columns written as they are
_SCALAR_COLUMNS = (
    ("instance_id", "instance_id"),
    ("builder_token", "builder_token"),
    ("token_acquired_at", "token_acquired_at"),
    ("task_id", "task_id"),
    ("sequence_id", "sequence_id"),
    ("applied_hash", "applied_hash"),
    ("updated_at", "updated_at"),
)


def _desired_json(state: SessionState) -> dict[str, Any]:
    desired = {
        "hosts": list(state.hosts),
        "speaker": state.speaker,
        "slots": state.slots,
        "idle_since": state.idle_since,
    }
    if state.tokens is not None:
        desired["tokens"] = state.tokens  # a JSON value: no column of its own, no migration
    return desired


def _intent_columns(
    intent: Intent | None, fingerprint: Callable[[str], str]
) -> tuple[str | None, str | None]:
    """The ``intent`` and ``intent_body`` columns: the body goes in a column of its own."""
    if intent is None:
        return None, None
    data = intent.to_json()
    del data["body"]
    return _dumps_scrubbed(data, fingerprint), _dumps_scrubbed(intent.body, fingerprint)


def _intent_of(intent: str | bytes, body: str | bytes | None) -> Intent:
    data = orjson.loads(intent)
    if "body" not in data:  # schema 3; a row written before it has the body inline
        data["body"] = _loads(body)
    return Intent.from_json(data)


def _dumps_intent(intent: Intent | None, fingerprint: Callable[[str], str]) -> str | None:
    return _dumps_scrubbed(intent.to_json(), fingerprint) if intent else None


def _encode(state: SessionState, fingerprint: Callable[[str], str]) -> tuple[Any, ...]:
    desired = _desired_json(state)
    try:
        intent, intent_body = _intent_columns(state.intent, fingerprint)
        return (
            state.name,
            state.instance_id,
            state.builder_token,
            state.token_acquired_at,
            state.task_id,
            state.sequence_id,
            _dumps_scrubbed(state.applied_body, fingerprint),
            state.applied_hash,
            _dumps(_inputs_json(state.applied_inputs)),
            orjson.dumps(desired).decode(),
            intent,
            _dumps_intent(state.orphan, fingerprint),
            state.updated_at,
            intent_body,
        )
    except TypeError as exc:
        raise StateError(f"session {state.name!r}: state is not serialisable: {exc}") from None


def _dumps(value: Any) -> str | None:
    return None if value is None else canonical_bytes(value).decode()


def _dumps_scrubbed(value: Any, fingerprint: Callable[[str], str]) -> str | None:
    return None if value is None else scrubbed_canonical(value, fingerprint).decode()


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
