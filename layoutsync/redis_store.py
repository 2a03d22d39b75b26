"""Session state in Redis, shared by several daemon replicas (``RedisStore``).

One key per session row (``{ns}:state:{name}``, the row as JSON) and a set
of names. Every write is one Lua script, so what must change together does:

- a row and its **sequenceId allocation**: an Update intent's sequenceId is
  recorded per task in ``{ns}:seq:{name}`` in the same script that stores
  the intent; a lower one is refused (never decreasing) and an equal one
  with another body is refused (never reused), across takeovers;
- with **fencing** (``RedisStore.fenced(name, holder)``, what the daemon's
  sessions write through), the script first checks that the session's lease
  key still holds this replica's fencing token: a replica whose lease lapsed
  (a GC pause, SIGSTOP, a partition) cannot write, whatever it believes;
- **desired inputs** (hosts, speaker) live apart from the row, in
  ``{ns}:desired:{name}``, because any replica may receive an event while
  only the owner writes the row. ``record_event`` changes them with the same
  rules as ``Session.host_joined`` & co, and a webhook's clientSeq record
  with them (``record_notification``), in one script; ``load`` returns the
  row with the desired inputs in place.

How durable an acknowledged write is depends on the server's persistence:
run Redis with ``appendonly yes`` (``appendfsync always`` to survive a power
cut, ``everysec`` for a process crash). Errors reaching Redis become
``StateError``; a fenced write that lost its lease is ``LeaseLost``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from .canonical import canonical_bytes
from .errors import StateError
from .store import (
    ClientSeqRow,
    DesiredInputs,
    Inputs,
    Intent,
    SessionState,
    TokenFingerprint,
    _aged,
    scrub_tokens,
)

__all__ = ["DEFAULT_NAMESPACE", "LeaseLost", "LoadedSession", "RedisKeys", "RedisStore"]

DEFAULT_NAMESPACE = "layoutsync"


class LeaseLost(StateError):
    """This replica no longer holds the session's lease: it must neither write nor send."""

    def __init__(self, name: str, detail: str = "") -> None:
        self.name = name
        super().__init__(
            f"session {name!r}: lease not held by this replica"
            + (f" ({detail})" if detail else "")
            + "; another replica owns it now"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RedisKeys:
    """Every key layoutsync uses, under one namespace (several fleets can share a server)."""

    namespace: str = DEFAULT_NAMESPACE

    def state(self, name: str) -> str:
        return f"{self.namespace}:state:{name}"

    def desired(self, name: str) -> str:
        return f"{self.namespace}:desired:{name}"

    def seq(self, name: str) -> str:
        return f"{self.namespace}:seq:{name}"

    def lease(self, name: str) -> str:
        return f"{self.namespace}:lease:{name}"

    def fence(self, name: str) -> str:
        return f"{self.namespace}:fence:{name}"

    def client_seq(self, channel: str, uid: int) -> str:
        return f"{self.namespace}:cseq:{channel}:{uid}"

    @property
    def client_seq_order(self) -> str:
        """The clientSeq record keys, least recently updated first (a sorted set)."""
        return f"{self.namespace}:cseq-order"

    @property
    def names(self) -> str:
        return f"{self.namespace}:names"

    @property
    def replicas(self) -> str:
        return f"{self.namespace}:replicas"

    @property
    def bucket(self) -> str:
        return f"{self.namespace}:bucket"

    @property
    def wake(self) -> str:
        """Where a change of a session no replica holds is announced (and replicas nudged)."""
        return f"{self.namespace}:wake"

    def wake_of(self, replica_id: str) -> str:
        """Where a change of a session whose lease ``replica_id`` holds is announced."""
        return f"{self.wake}:{replica_id}"


# KEYS: state, names, lease, seq. ARGV: row json, name, holder ('' = unfenced), task id,
# sequenceId ('' = none), Update intent's body hash ('' = no Update intent).
_SAVE = """
if ARGV[3] ~= '' then
  local holder = redis.call('GET', KEYS[3])
  if holder ~= ARGV[3] then return redis.error_reply('FENCED ' .. tostring(holder)) end
end
if ARGV[5] ~= '' then
  local s = tonumber(ARGV[5])
  local seq = redis.call('HMGET', KEYS[4], 'task', 'max', 'hash')
  if seq[1] == ARGV[4] and seq[2] then
    local m = tonumber(seq[2])
    if s < m then return redis.error_reply('SEQUENCE ' .. s .. ' is below ' .. m) end
    if s == m and ARGV[6] ~= '' and seq[3] ~= ARGV[6] then
      return redis.error_reply('SEQUENCE ' .. s .. ' was sent with another body')
    end
  end
  if seq[1] ~= ARGV[4] or not seq[2] or s > tonumber(seq[2]) then
    redis.call('HSET', KEYS[4], 'task', ARGV[4], 'max', s, 'hash', ARGV[6])
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return 1
"""

# KEYS: state, names, lease, desired, seq. ARGV: name, holder ('' = unfenced)
_DELETE = """
if ARGV[2] ~= '' then
  local holder = redis.call('GET', KEYS[3])
  if holder ~= ARGV[2] then return redis.error_reply('FENCED ' .. tostring(holder)) end
end
redis.call('DEL', KEYS[1], KEYS[4])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"""

# The desired-input rules of ``_SessionCore`` (host_joined, host_left, set_hosts, set_speaker)
# over {ns}:desired:{name}, seeded from the row when no event was recorded yet; ``wake``
# tells the session's owner (the replica its lease names, or every replica when none
# holds it) '<version> <name>'.
_DESIRED_LIB = """
local function wake(channel, lkey, version, name)
  local holder = redis.call('GET', lkey)
  if holder then
    channel = channel .. ':' .. string.match(holder, '^(.*)|[^|]*$')
  end
  redis.call('PUBLISH', channel, version .. ' ' .. name)
end
local function as_list(v)
  if type(v) ~= 'table' then return {} end
  return v
end
local function apply(dkey, skey, op, a)
  local hosts, speaker
  local d = redis.call('HMGET', dkey, 'hosts', 'speaker')
  if d[1] then
    hosts = as_list(cjson.decode(d[1]))
    speaker = cjson.decode(d[2])
  else
    local row = redis.call('GET', skey)
    hosts, speaker = {}, cjson.null
    if row then
      local r = cjson.decode(row)
      hosts = as_list(r['hosts'])
      if r['speaker'] ~= nil then speaker = r['speaker'] end
    end
  end
  if op == 'join' then
    local found = false
    for _, h in ipairs(hosts) do if h == a then found = true end end
    if not found then table.insert(hosts, a) end
  elseif op == 'leave' then
    local kept = {}
    for _, h in ipairs(hosts) do if h ~= a then table.insert(kept, h) end end
    hosts = kept
  elseif op == 'hosts' then
    local wanted = as_list(cjson.decode(a))
    local keep, known, out = {}, {}, {}
    for _, h in ipairs(wanted) do keep[h] = true end
    for _, h in ipairs(hosts) do
      known[h] = true
      if keep[h] then table.insert(out, h) end
    end
    for _, h in ipairs(wanted) do
      if not known[h] then table.insert(out, h); known[h] = true end
    end
    hosts = out
  elseif op == 'speaker' then
    speaker = cjson.decode(a)
  end
  local encoded = '[]'
  if #hosts > 0 then encoded = cjson.encode(hosts) end
  redis.call('HSET', dkey, 'hosts', encoded, 'speaker', cjson.encode(speaker))
  return redis.call('HINCRBY', dkey, 'version', 1)
end
"""

# KEYS: desired, state, lease. ARGV: op, argument, wake channel, name.
_EVENT = (
    _DESIRED_LIB
    + """
local op, a = ARGV[1], ARGV[2]
if op == 'join' or op == 'leave' then a = tonumber(a) end
local version = apply(KEYS[1], KEYS[2], op, a)
wake(ARGV[3], KEYS[3], version, ARGV[4])
return version
"""
)

# KEYS: clientSeq record, then (desired, state, lease) per session. ARGV: clientSeq, joined
# (1/0), uid, retention ms, wake channel, then the session names.
_NOTIFICATION = (
    _DESIRED_LIB
    + """
local seq = tonumber(ARGV[1])
local last = redis.call('GET', KEYS[1])
if last and tonumber(string.match(last, '^-?%d+')) >= seq then return 0 end
local t = redis.call('TIME')
local now = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
if ARGV[2] == '1' then
  redis.call('SET', KEYS[1], seq .. '||' .. now)
else
  redis.call('SET', KEYS[1], seq .. '|0|' .. now, 'PX', ARGV[4])
end
redis.call('ZADD', ARGV[#ARGV], now, KEYS[1])
local op = 'leave'
if ARGV[2] == '1' then op = 'join' end
local uid = tonumber(ARGV[3])
for i = 2, #KEYS, 3 do
  local version = apply(KEYS[i], KEYS[i + 1], op, uid)
  wake(ARGV[5], KEYS[i + 2], version, ARGV[6 + (i - 2) / 3])
end
return 1
"""
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Scripts:
    """The store's Lua scripts, registered on one client (blocking or asyncio)."""

    save: Any
    delete: Any
    event: Any
    notification: Any

    @classmethod
    def on(cls, client: Any) -> _Scripts:
        return cls(*(client.register_script(s) for s in (_SAVE, _DELETE, _EVENT, _NOTIFICATION)))


class RedisStore:
    """A ``StateStore`` in Redis, for several replicas sharing sessions.

    ``client`` is a ``redis.Redis`` (blocking, as the other stores are: the
    calls are one loopback round trip). With ``aclient`` (a ``redis.asyncio.Redis``
    on the same server) the store also has awaitable twins of its writes
    (``asave``, ``adelete``, ``arecord_events``, ``arecord_notification``,
    ``adesired``), which ``AsyncSession`` and the daemon use, so an event loop
    does not wait on Redis for them. Without fencing (``fenced``) writes are
    unconditional, which is what a single library user needs.
    """

    def __init__(
        self,
        client: Any,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        holder: str | None = None,
        fenced_name: str | None = None,
        aclient: Any = None,
    ) -> None:
        self.redis = client
        self.aredis = aclient
        self.keys = RedisKeys(namespace)
        self._holder = holder
        self._fenced_name = fenced_name
        self._fingerprinter: TokenFingerprint | None = None
        self._order_stamp = 0.0
        self._scripts = _Scripts.on(client)
        self._ascripts = _Scripts.on(aclient) if aclient is not None else None
        self._preloaded: dict[str, Any] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = 1.0,
        aclient: Any = None,
    ) -> RedisStore:
        """A store over a new blocking client for ``url`` (``redis://host:port/db``)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries inside the client: a call blocks its caller (the daemon's event loop)
        # for at most ``timeout``, and the caller decides what a failure means.
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, namespace=namespace, aclient=aclient)

    def fenced(
        self, name: str, holder: str | None, *, loaded: LoadedSession | None = None
    ) -> RedisStore:
        """A view whose writes of ``name`` succeed only while its lease holds ``holder``.

        ``holder`` None: this replica does not own the session, every write fails.
        ``loaded`` (from ``aload_session``) answers the view's first ``load`` and
        ``load_desired``, so a session made over it needs no blocking read.
        """
        view = object.__new__(RedisStore)
        view.redis = self.redis
        view.aredis = self.aredis
        view.keys = self.keys
        view._scripts = self._scripts
        view._ascripts = self._ascripts
        view._holder = holder
        view._fenced_name = name
        self.fingerprint("")  # make the key once, so every view shares it
        view._fingerprinter = self._fingerprinter
        view._order_stamp = 0.0
        #: what ``loaded`` answers, each once (later reads see what others wrote since)
        view._preloaded = {"state": loaded.state, "desired": loaded.desired} if loaded else {}
        return view

    @property
    def holder(self) -> str | None:
        return self._holder

    # --- StateStore ---------------------------------------------------------------------------

    def load(self, name: str) -> SessionState | None:
        if name == self._fenced_name and "state" in self._preloaded:
            state: SessionState | None = self._preloaded.pop("state")
            return state
        return self._read_session(name).state

    async def aload_session(self, name: str) -> LoadedSession:
        """A session's row and desired inputs in one round trip on the asyncio client (for
        ``fenced(..., loaded=)``)."""
        keys = self.keys
        with self._guard("read session state"):
            async with self.aredis.pipeline(transaction=False) as pipe:
                pipe.get(keys.state(name))
                pipe.hmget(keys.desired(name), "hosts", "speaker", "updated_at")
                row, desired = await pipe.execute()
        return _loaded_session(name, row, desired)

    def _read_session(self, name: str) -> LoadedSession:
        keys = self.keys
        with self._guard("read session state"):
            row, desired = self._pipeline(
                lambda p: (
                    p.get(keys.state(name)),
                    p.hmget(keys.desired(name), "hosts", "speaker", "updated_at"),
                )
            )
        return _loaded_session(name, row, desired)

    def save(self, state: SessionState) -> None:
        keys, args = self._save_call(state)
        with self._guard("write session state"):
            self._scripts.save(keys=keys, args=args)

    def delete(self, name: str) -> None:
        keys, args = self._delete_call(name)
        with self._guard("delete session state"):
            self._scripts.delete(keys=keys, args=args)

    async def asave(self, state: SessionState) -> None:
        """``save`` on the asyncio client; the write completes even if the caller is
        cancelled meanwhile (the row then holds what the session was about to know)."""
        keys, args = self._save_call(state)
        with self._guard("write session state"):
            await asyncio.shield(self._async().save(keys=keys, args=args))

    async def adelete(self, name: str) -> None:
        keys, args = self._delete_call(name)
        with self._guard("delete session state"):
            await asyncio.shield(self._async().delete(keys=keys, args=args))

    def _save_call(self, state: SessionState) -> tuple[list[str], list[Any]]:
        holder = self._check_holder(state.name)
        intent = state.intent
        update_hash = ""
        if intent is not None and intent.call == "update":
            update_hash = intent.body_hash or ""
        keys = self.keys
        return (
            [keys.state(state.name), keys.names, keys.lease(state.name), keys.seq(state.name)],
            [
                _encode(state, self.fingerprint),
                state.name,
                holder,
                state.task_id or "",
                "" if state.sequence_id is None else str(state.sequence_id),
                update_hash,
            ],
        )

    def _delete_call(self, name: str) -> tuple[list[str], list[Any]]:
        holder = self._check_holder(name)
        keys = self.keys
        return (
            [keys.state(name), keys.names, keys.lease(name), keys.desired(name), keys.seq(name)],
            [name, holder],
        )

    def _async(self) -> _Scripts:
        if self._ascripts is None:
            raise StateError("this RedisStore has no asyncio client (RedisStore(..., aclient=))")
        return self._ascripts

    def names(self) -> tuple[str, ...]:
        with self._guard("list session state"):
            members = self.redis.smembers(self.keys.names)
        return tuple(sorted(_text(m) for m in members))

    def check(self) -> None:
        """Raise ``StateError`` unless Redis answers (the daemon's readiness probe)."""
        with self._guard("reach Redis"):
            self.redis.ping()

    def close(self) -> None:
        self.redis.close()

    def __repr__(self) -> str:
        kwargs = self.redis.connection_pool.connection_kwargs
        where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        return f"RedisStore({where!r}, namespace={self.keys.namespace!r})"

    # --- events at any replica -----------------------------------------------------------------

    def record_event(self, name: str, op: str, value: Any = None) -> int:
        """Change a session's desired inputs and wake its owner; returns the new version.

        ``op``: ``join``/``leave`` (a uid), ``hosts`` (a list of uids), ``speaker`` (uid/None).
        Durable (per the server's persistence) when it returns.
        """
        keys, args = self._event_call(name, op, value)
        with self._guard("record a desired-state change"):
            return int(self._scripts.event(keys=keys, args=args))

    async def arecord_events(self, events: Sequence[tuple[str, str, Any]]) -> list[int]:
        """``record_event`` for each (name, op, value) in order, in one round trip; the new
        versions. Each event is atomic on its own; after an error (a connection lost
        mid-way) some may have landed."""
        if not events:
            return []
        calls = [self._event_call(*event) for event in events]
        script = self._async().event
        with self._guard("record desired-state changes"):
            if len(calls) == 1:
                keys, args = calls[0]
                return [int(await script(keys=keys, args=args))]
            return [int(v) for v in await self._evalsha_all(script, calls)]

    async def _evalsha_all(self, script: Any, calls: list[tuple[list[str], list[Any]]]) -> Any:
        """One script over many calls in one pipeline. Not through ``Script(client=pipe)``,
        which asks SCRIPT EXISTS first (a second round trip); the script is loaded only
        when Redis says it does not know it (restarted without persistence, flushed)."""
        import redis

        for attempt in range(2):
            try:
                async with self.aredis.pipeline(transaction=False) as pipe:
                    for keys, args in calls:
                        pipe.evalsha(script.sha, len(keys), *keys, *args)
                    return await pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                await self.aredis.script_load(script.script)
        raise AssertionError("unreachable")

    def _event_call(self, name: str, op: str, value: Any) -> tuple[list[str], list[Any]]:
        if op in ("join", "leave"):
            argument = str(int(value))
        elif op in ("hosts", "speaker"):
            argument = orjson.dumps(value).decode()
        else:
            raise ValueError(f"unknown desired-state change {op!r}")
        keys = self.keys
        return (
            [keys.desired(name), keys.state(name), keys.lease(name)],
            [op, argument, keys.wake, name],
        )

    def record_notification(
        self,
        channel: str,
        uid: int,
        client_seq: int,
        *,
        joined: bool,
        names: Sequence[str],
        retention: float,
    ) -> bool:
        """A webhook's join/leave for every session of its channel, with its clientSeq record,
        in one script; False (nothing changed) when the clientSeq is not above the last one."""
        keys, args = self._notification_call(channel, uid, client_seq, joined, names, retention)
        with self._guard("record a webhook event"):
            return bool(self._scripts.notification(keys=keys, args=args))

    async def arecord_notification(
        self,
        channel: str,
        uid: int,
        client_seq: int,
        *,
        joined: bool,
        names: Sequence[str],
        retention: float,
    ) -> bool:
        """``record_notification`` on the asyncio client."""
        keys, args = self._notification_call(channel, uid, client_seq, joined, names, retention)
        scripts = self._async()
        with self._guard("record a webhook event"):
            return bool(await asyncio.shield(scripts.notification(keys=keys, args=args)))

    def _notification_call(
        self,
        channel: str,
        uid: int,
        client_seq: int,
        joined: bool,
        names: Sequence[str],
        retention: float,
    ) -> tuple[list[str], list[Any]]:
        keys = self.keys
        script_keys = [keys.client_seq(channel, uid)]
        for name in names:
            script_keys += [keys.desired(name), keys.state(name), keys.lease(name)]
        args = [
            client_seq,
            "1" if joined else "0",
            uid,
            max(1, int(retention * 1000)),
            keys.wake,
            *names,
            keys.client_seq_order,
        ]
        return script_keys, args

    def load_client_seqs(self, *, now: float | None = None) -> list[ClientSeqRow]:
        """Every webhook ordering record, least recently updated first, each leave older by
        the time since it was saved (``now``: wall clock, default the current time)."""
        keys = self.keys
        prefix = keys.client_seq("", 0)[: -len(":0")]
        with self._guard("load the webhook clientSeq records"):
            order = [_text(k) for k in self.redis.zrange(keys.client_seq_order, 0, -1)]
            values = self.redis.mget(order) if order else []
            gone = [k for k, v in zip(order, values, strict=True) if v is None]
            if gone:  # a leave's record that expired
                self.redis.zrem(keys.client_seq_order, *gone)
        rows = []
        for key, value in zip(order, values, strict=True):
            if value is None:
                continue
            channel, _, uid = key[len(prefix) :].rpartition(":")
            seq, left_ago, saved_at = _text(value).split("|")
            left = float(left_ago) if left_ago else None
            rows.append((channel, int(uid), int(seq), left, float(saved_at)))
        return _aged(rows, now)

    def save_client_seqs(
        self, rows: Iterable[ClientSeqRow], *, now: float | None = None, retention: float = 60.0
    ) -> None:
        """Replace every record by ``rows``, in their order (a leave's record expires
        ``retention`` seconds after the leave, as ``record_notification`` makes it)."""
        keys = self.keys
        saved_at = time.time() if now is None else now
        with self._guard("save the webhook clientSeq records"):
            old = self.redis.zrange(keys.client_seq_order, 0, -1)
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(keys.client_seq_order, *old)
            for channel, uid, seq, left_ago in rows:
                self._put_client_seq(pipe, channel, uid, seq, left_ago, saved_at, retention)
            pipe.execute()

    def _put_client_seq(
        self,
        pipe: Any,
        channel: str,
        uid: int,
        seq: int,
        left_ago: float | None,
        saved_at: float,
        retention: float = 60.0,
    ) -> None:
        if left_ago is not None and left_ago >= retention:
            return  # the user left longer ago than a late join could still arrive
        key = self.keys.client_seq(channel, uid)
        left = "" if left_ago is None else repr(float(left_ago))
        value = f"{seq}|{left}|{float(saved_at)!r}"
        if left_ago is None:
            pipe.set(key, value)
        else:
            pipe.set(key, value, px=max(1, int((retention - left_ago) * 1000)))
        self._order_stamp = max(time.time(), self._order_stamp + 1e-6)
        pipe.zadd(self.keys.client_seq_order, {key: self._order_stamp})

    # --- desired inputs, group commit, token fingerprints (the StateStore protocol) ----------

    #: a write is one loopback round trip: the daemon's journal need not leave the loop
    commit_blocks = False

    def load_desired(self, name: str) -> DesiredInputs | None:
        if name == self._fenced_name and "desired" in self._preloaded:
            desired: DesiredInputs | None = self._preloaded.pop("desired")
            return desired
        with self._guard("read desired state"):
            fields = self.redis.hmget(self.keys.desired(name), "hosts", "speaker", "updated_at")
        return _desired_inputs_of(fields)

    def save_desired(self, name: str, desired: DesiredInputs) -> None:
        self.save_inputs({name: desired})

    def save_inputs(
        self, desired: Mapping[str, DesiredInputs], client_seqs: Iterable[ClientSeqRow] = ()
    ) -> None:
        """Desired inputs of many sessions and clientSeq records in one MULTI/EXEC (values, as
        one process holds them; replicas change desired inputs with ``record_event``)."""
        rows = list(client_seqs)
        if not desired and not rows:
            return
        with self._guard("write desired state"):
            pipe = self.redis.pipeline(transaction=True)
            for name, inputs in desired.items():
                key = self.keys.desired(name)
                pipe.hset(
                    key,
                    mapping={
                        "hosts": orjson.dumps(list(inputs.hosts)),
                        "speaker": orjson.dumps(inputs.speaker),
                        "updated_at": repr(inputs.updated_at),
                    },
                )
                pipe.hincrby(key, "version", 1)
            saved_at = time.time()
            for channel, uid, seq, left_ago in rows:
                self._put_client_seq(pipe, channel, uid, seq, left_ago, saved_at)
            pipe.execute()

    def fingerprint(self, token: str) -> str:
        """The store's keyed fingerprint of a token (its key kept in Redis, made once)."""
        if self._fingerprinter is None:
            import secrets

            key = self.keys.namespace + ":meta"
            with self._guard("read the fingerprint key"):
                self.redis.hsetnx(key, "fingerprint_key", secrets.token_hex(32))
                raw = self.redis.hget(key, "fingerprint_key")
            self._fingerprinter = TokenFingerprint(bytes.fromhex(_text(raw)))
        return self._fingerprinter(token)

    def desired(self, name: str) -> tuple[tuple[int, ...], int | None, int] | None:
        """(hosts, speaker, version) recorded by events, or None when there were none."""
        with self._guard("read desired state"):
            fields = self.redis.hmget(self.keys.desired(name), "hosts", "speaker", "version")
        return _desired_of(fields)

    async def adesired(self, name: str) -> tuple[tuple[int, ...], int | None, int] | None:
        """``desired`` on the asyncio client."""
        with self._guard("read desired state"):
            fields = await self.aredis.hmget(self.keys.desired(name), "hosts", "speaker", "version")
        return _desired_of(fields)

    # --- internals ----------------------------------------------------------------------------

    def _check_holder(self, name: str) -> str:
        if self._fenced_name is None:
            return ""
        if name != self._fenced_name:
            raise StateError(f"a store view of session {self._fenced_name!r} cannot write {name!r}")
        if self._holder is None:
            raise LeaseLost(name, "not acquired")
        return self._holder

    def _pipeline(self, build: Any) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        build(pipe)
        return list(pipe.execute())

    def _guard(self, what: str) -> _Guard:
        return _Guard(self, what)


class _Guard:
    """Map redis-py's errors onto ``StateError``/``LeaseLost`` (never a traceback upstream)."""

    __slots__ = ("_store", "_what")

    def __init__(self, store: RedisStore, what: str) -> None:
        self._store = store
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        if exc is None:
            return
        import redis

        if isinstance(exc, redis.ResponseError) and str(exc).startswith("FENCED"):
            raise LeaseLost(self._store._fenced_name or "?", str(exc)) from None
        if isinstance(exc, redis.ResponseError) and str(exc).startswith("SEQUENCE"):
            raise StateError(f"cannot {self._what}: sequenceId refused: {exc}") from None
        if isinstance(exc, redis.RedisError):
            raise StateError(f"Redis: cannot {self._what}: {exc}") from None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedSession:
    """What a session is made from: its row (None: none yet) and its desired inputs."""

    name: str
    state: SessionState | None
    desired: DesiredInputs | None


def _loaded_session(name: str, row: bytes | None, desired: Sequence[Any]) -> LoadedSession:
    inputs = _desired_inputs_of(desired)
    if row is None:
        return LoadedSession(name, None, inputs)
    state = _decode(name, row)
    if inputs is not None:
        state = dataclasses.replace(state, hosts=inputs.hosts, speaker=inputs.speaker)
    return LoadedSession(name, state, inputs)


def _desired_inputs_of(fields: Sequence[Any]) -> DesiredInputs | None:
    hosts, speaker, updated_at = fields
    if hosts is None:
        return None
    decoded = orjson.loads(hosts)
    return DesiredInputs(
        hosts=tuple(int(h) for h in decoded or ()),
        speaker=_int_or_none(orjson.loads(speaker) if speaker is not None else None),
        updated_at=float(updated_at or 0.0),
    )


def _desired_of(fields: Sequence[Any]) -> tuple[tuple[int, ...], int | None, int] | None:
    hosts, speaker, version = fields
    inputs = _desired_inputs_of((hosts, speaker, None))
    if inputs is None:
        return None
    return inputs.hosts, inputs.speaker, int(version or 0)


def _int_or_none(value: Any) -> int | None:
    return None if value is None or isinstance(value, dict) else int(value)


# --- rows as JSON: one field per SessionState field, so a new field needs no new code -----------


def _field_json(value: Any, fingerprint: Any) -> Any:
    if isinstance(value, Intent):
        data = value.to_json()
        if data.get("body") is not None:
            data["body"] = scrub_tokens(data["body"], fingerprint)
        return {"__intent__": data}
    if isinstance(value, Inputs):
        return {
            "__inputs__": {"hosts": list(value.hosts), "speaker": value.speaker, "spec": value.spec}
        }
    if isinstance(value, tuple):
        return list(value)
    return value


def _field_of(name: str, value: Any) -> Any:
    if isinstance(value, dict) and "__intent__" in value:
        return Intent.from_json(value["__intent__"])
    if isinstance(value, dict) and "__inputs__" in value:
        data = value["__inputs__"]
        return Inputs(tuple(data["hosts"]), data.get("speaker"), data["spec"])
    if name == "hosts":
        return tuple(value or ())
    return value


def _encode(state: SessionState, fingerprint: Any) -> bytes:
    """The row as JSON, every rtcToken in its bodies replaced by its fingerprint."""
    row = {
        f.name: _field_json(getattr(state, f.name), fingerprint)
        for f in dataclasses.fields(SessionState)
    }
    if row.get("applied_body") is not None:
        row["applied_body"] = scrub_tokens(row["applied_body"], fingerprint)
    try:
        return canonical_bytes(row)
    except TypeError as exc:
        raise StateError(f"session {state.name!r}: state is not serialisable: {exc}") from None


def _decode(name: str, raw: bytes) -> SessionState:
    try:
        row: Mapping[str, Any] = orjson.loads(raw)
        known = {f.name for f in dataclasses.fields(SessionState)}
        return SessionState(**{k: _field_of(k, v) for k, v in row.items() if k in known})
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StateError(
            f"Redis: the row of session {name!r} is damaged ({type(exc).__name__}); "
            "delete it with `layoutsync destroy` or restore a backup"
        ) from None
