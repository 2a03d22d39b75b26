"""Several daemon replicas sharing sessions and the vendor's quota through Redis.

Ownership
    Each session is owned by one replica through a lease: ``{ns}:lease:{name}``
    holds ``replica|fence`` with a TTL (``SET NX PX``), renewed every third
    of the TTL; ``fence`` is a counter bumped on every acquisition
    (``{ns}:fence:{name}``), so each ownership epoch has its own token. Every
    state write of a session goes through ``RedisStore.fenced``: the write's
    script checks that the lease still holds *this* epoch's token. Before
    each request leaves the process (after its rate-limit wait, right before
    the socket), ``FencedTransport`` checks the lease twice: locally (the
    lease's deadline, measured on this replica's monotonic clock from before
    the renewal was sent, less a margin) and in Redis. A replica that was
    paused or cut off past its lease can therefore neither write nor send.
    The one window left (a pause between that check and the bytes leaving)
    can let through one request the new owner's state already accounts for:
    an Update whose sequenceId is below the new owner's (the service applies
    the highest it has seen), or a Create with the intent's builderToken
    (one token makes at most one task).

Spreading
    Live replicas heartbeat into a sorted set (``{ns}:replicas``, scored by
    expiry in Redis' clock). Each session belongs to the replica with the
    highest rendezvous score (BLAKE2b of replica and session name): when a
    replica joins or leaves, only the sessions whose top scorer changed move.
    A replica's entry is pushed out with every lease renewal to the expiry of
    those leases, so when a replica dies its entry lapses with its last lease;
    each other replica has its next round at that moment (it knows the
    entry's expiry from its previous round) and takes over in that one round.
    A takeover therefore lands at most one TTL after the replica's last
    renewal, plus one reconcile.

Events at any replica
    ``RedisStore.record_event``/``record_notification`` change the desired
    inputs in Redis (durably, per the server's persistence) before the API
    answers, and publish ``<version> <name>`` to the replica the session's
    lease names (``{ns}:wake:{replica}``; ``{ns}:wake``, every replica, when
    no lease is held), which queues it: one message per event, however many
    replicas. A lease that moves after the publish moves to a replica that
    reads the desired inputs on taking over. API events are group-committed
    (``RedisEventJournal``: the events of one loop tick in one pipeline).
    Before each reconcile the owner reads the desired inputs back from Redis
    (level-triggered: whatever the events were, one reconcile) -- unless no
    version newer than the one it read was announced since (by its own
    writes or a wake), which spares the read of a session with nothing new.
    A lost subscription forgets every version read, so nothing is skipped on
    a wake that never came.

Quota
    ``RedisTokenBucket``: one token bucket for the whole fleet, one Lua
    script per take on Redis' clock, so N replicas with ``--qps 10`` send at
    most 10 requests/s together. Its tokens go oldest change first across
    the fleet: each replica asks for its oldest waiting change, and a
    replica silent for a moment (dead, stalled) is passed over. Right before
    each send a window caps the fleet at ``floor(qps)`` sends holding a slot,
    each from its admission until one second after its answer, so however
    late a request leaves or arrives, no second at the service holds more.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import heapq
import itertools
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ..apply import AsyncSession, ReconcileResult
from ..errors import StateError
from ..redis_store import LeaseLost, LoadedSession, RedisKeys, RedisStore
from ..spec import LayoutSpec
from .ratelimit import pacing
from .redis_journal import RedisEventJournal
from .runtime import Daemon, DaemonSettings, WebhookOutcome, build_client
from .webhooks import Notification

__all__ = [
    "DEFAULT_LEASE_TTL",
    "ClusterDaemon",
    "ClusterSettings",
    "FencedTransport",
    "LeaseTable",
    "RedisTokenBucket",
    "default_replica_id",
    "rendezvous_owner",
]

DEFAULT_LEASE_TTL = 10.0

#: Share of the TTL a lease counts as held on the local clock (clock-rate drift, latency).
_LEASE_SAFETY = 0.85

#: How long after another replica's entry (or a lease held elsewhere) lapses a round looks
#: again: Redis removes the entry at its millisecond, the lease is gone one before it.
_EXPIRY_SLACK = 0.003

_CHUNK = 500  # names per lease script call (Redis runs one script at a time)

_PING_TIMEOUT = 1.0  #: seconds the readiness probe waits for Redis

#: Published on the wake channel when a replica starts or stops (no session has this name:
#: spec file names never hold a NUL).
_NUDGE = "\x00replicas"


def default_replica_id() -> str:
    """``--replica-id``'s default: host name and pid (unique among live processes)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def rendezvous_owner(name: str, replicas: Iterable[str]) -> str | None:
    """The replica with the highest score for ``name`` (highest random weight hashing)."""
    best: tuple[bytes, str] | None = None
    for replica in replicas:
        score = hashlib.blake2b(f"{replica}\0{name}".encode(), digest_size=8).digest()
        if best is None or (score, replica) > best:
            best = (score, replica)
    return None if best is None else best[1]


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """What turns a daemon into a replica: ``--redis``, ``--replica-id``, ``--lease-ttl``."""

    redis_url: str
    replica_id: str
    lease_ttl: float = DEFAULT_LEASE_TTL
    namespace: str = "layoutsync"

    def __post_init__(self) -> None:
        if not self.lease_ttl > 0:
            raise ValueError(f"lease_ttl must be > 0 seconds, got {self.lease_ttl}")
        if not self.replica_id or "|" in self.replica_id:
            raise ValueError(f"replica_id must be non-empty without '|', got {self.replica_id!r}")


# --- scripts ----------------------------------------------------------------------------------

# KEYS[1] replicas zset. ARGV: replica id, ttl ms, '1' to leave. Returns {now ms, id, expiry, ...}.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
local out = {tostring(now)}
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members do table.insert(out, members[i]) end
return out
"""

# KEYS: n lease keys, n fence keys, then the replicas zset. ARGV: replica id, ttl ms, then
# the n tokens this replica believes it holds ('' none). Per name: the token held now, or
# '-<pttl ms>' when another replica holds it. A lease left by an earlier process with the
# same id is taken over. Last, the replica's entry in the set is pushed out to the expiry of
# the leases just renewed (never earlier), so the entry of a replica that dies lapses with
# its last lease, not before it: the others take over in the round that sees it gone.
_ACQUIRE = """
local n = (#KEYS - 1) / 2
local me = ARGV[1] .. '|'
local out = {}
for i = 1, n do
  local lease, fence, mine = KEYS[i], KEYS[n + i], ARGV[2 + i]
  local v = redis.call('GET', lease)
  if v and v == mine then
    redis.call('PEXPIRE', lease, ARGV[2])
    out[i] = v
  elseif (not v) or string.sub(v, 1, #me) == me then
    local token = me .. redis.call('INCR', fence)
    redis.call('SET', lease, token, 'PX', ARGV[2])
    out[i] = token
  else
    out[i] = '-' .. redis.call('PTTL', lease)
  end
end
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + 1 + tonumber(ARGV[2])
local score = redis.call('ZSCORE', KEYS[#KEYS], ARGV[1])
if score and tonumber(score) < expiry then
  redis.call('ZADD', KEYS[#KEYS], expiry, ARGV[1])
end
return out
"""

# KEYS: lease keys. ARGV: the tokens. Deletes each lease still holding its token.
_RELEASE = """
local released = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('DEL', KEYS[i])
    released = released + 1
  end
end
return released
"""

# The fleet's token bucket, granted oldest change first. KEYS: the bucket hash (tokens,
# stamp), the waiters zset (one member per replica's bucket: the time of its oldest change
# waiting for a token, ms on Redis' clock), the hash of when each member last asked.
# ARGV: rate/s, burst, mode ('take', 'give' a token back, 'leave' the waiters), member, the
# age in ms of the change this take serves, the age of the member's next waiting change
# ('' none), tolerance ms, stale ms.
# A take is granted when the bucket has a slot free now or within one slot (tokens >= 0,
# so a grant waits at most 1/rate) and no fresh waiter's change is older than this one's
# by more than the tolerance -- or when the bucket holds a token for each of those older
# waiters besides this one, so none of them waits for it. A waiter that has not asked for
# ``stale`` ms (a replica that died or stalls) is dropped, so it delays the others by at
# most that long. Returns
# 'G <seconds to wait>' (granted: the member then waits with its next change, or leaves)
# or 'W <seconds until asking again>'.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local mode, member = ARGV[3], ARGV[4]
local b = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens, stamp = tonumber(b[1]), tonumber(b[2])
if not tokens then tokens, stamp = burst, now end
if now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) / 1000 * rate)
  stamp = now
end
local function save()
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
             'stamp', string.format('%.3f', stamp))
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], 3600) end
end
if mode == 'leave' then
  redis.call('ZREM', KEYS[2], member)
  redis.call('HDEL', KEYS[3], member)
  return 'W 0'
end
if mode == 'give' then
  tokens = math.min(burst, tokens + 1)
  save()
  return 'W 0'
end
local slot = 1000 / rate
local tolerance, stale = tonumber(ARGV[7]), tonumber(ARGV[8])
local mine = now - tonumber(ARGV[5])
redis.call('ZADD', KEYS[2], mine, member)
redis.call('HSET', KEYS[3], member, string.format('%.3f', now))
local older, stale_in = 0, nil
local ahead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (mine - tolerance))
for _, other in ipairs(ahead) do
  local asked = tonumber(redis.call('HGET', KEYS[3], other))
  if (not asked) or asked < now - stale then
    redis.call('ZREM', KEYS[2], other)
    redis.call('HDEL', KEYS[3], other)
  else
    older = older + 1
    local left = asked + stale - now
    if (not stale_in) or left < stale_in then stale_in = left end
  end
end
if (older == 0 and tokens >= 0) or (older > 0 and tokens >= older + 1) then
  tokens = tokens - 1
  if ARGV[6] ~= '' then
    redis.call('ZADD', KEYS[2], now - tonumber(ARGV[6]), member)
  else
    redis.call('ZREM', KEYS[2], member)
    redis.call('HDEL', KEYS[3], member)
  end
  save()
  return string.format('G %.6f', math.max(0, -tokens / rate))
end
save()
local free_in = math.max(0, -tokens) / rate * 1000
local retry = free_in
if older > 0 then retry = math.min(math.max(free_in, slot), stale_in) end
return string.format('W %.6f', math.max(retry, 1) / 1000)
"""


# The fleet's sends holding a slot. KEYS[1] zset: member -> when its slot ends, less one
# window: its answer's time once answered, its admission + the longest flight while in
# flight; KEYS[2] (optional) the sending session's lease. ARGV: cap, window ms, member,
# flight ms, the lease token the sender holds. The wait in seconds (0: admitted, the member
# is in flight now), or 'F <holder>' when the lease holds another token (nothing admitted).
_ADMIT = """
if KEYS[2] then
  local holder = redis.call('GET', KEYS[2])
  if holder ~= ARGV[5] then return 'F ' .. tostring(holder) end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4]) + window * 2))
  return '0'
end
local first = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
if first > now then  -- every slot is in flight: look again soon (an answer frees one)
  return string.format('%.4f', math.min(first + window - now, 50) / 1000)
end
return string.format('%.4f', (first + window - now) / 1000 + 0.0005)
"""

# KEYS[1] the zset of _ADMIT. ARGV: member. The send was answered: its slot counts until
# now + the window (never later than it did while in flight).
_ANSWERED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > now then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
end
return 1
"""


class RedisTokenBucket:
    """A token bucket shared by every replica, granted oldest change first.

    One Lua script per take (``_TAKE``, on Redis' clock) paces the fleet at
    ``qps * (1 - margin)`` with the burst capped so that ``burst + floor(rate)
    <= floor(qps)``. Tokens go to the replica whose oldest change waiting for
    one is the fleet's oldest (within ``tolerance`` seconds), so sessions are
    served oldest change first across replicas, not only within each; a
    replica that stops asking for ``stale`` seconds (dead, stalled) no longer
    holds the others back. Each replica's waiting workers line up locally by
    the age of their change, and one task per replica (its *pump*) asks for the
    oldest of them: at most one request to Redis per replica and token.

    ``reserve`` keeps the ``RateLimiter`` contract with one difference: it
    returns once this task's turn in the fleet has come, with at most one
    slot (``1/rate``) left to wait. The change a task's take serves is set in
    ``change`` (a ``time.monotonic()`` value; unset: the time it asks).
    ``sending`` then holds the send in the fleet's window, right before the
    bytes leave (``FencedTransport``).
    """

    def __init__(
        self,
        client: Any,
        key: str,
        qps: float,
        burst: int = 1,
        *,
        margin: float = 0.05,
        flight: float = 30.0,
        tolerance: float = 0.05,
        stale: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst = pacing(qps, burst, margin)
        self.qps = float(qps)
        self.margin = float(margin)
        self.key = key
        #: at most ``window_cap`` sends hold a slot of the fleet's window at once: a slot is
        #: held from a send's admission, right before it leaves, until ``window`` seconds
        #: after its answer (``sending``), so no 1-second span at the service, on any clock,
        #: holds more; the pacing above stays below this cap, which only clips bunches
        self.window_cap = max(1, int(self.qps))
        self.window = 1.0
        #: how long a send without an answer holds its slot (a replica that died mid-send)
        self.flight = float(flight)
        self.tolerance = float(tolerance)
        #: a waiter asks again at least once a slot; one silent for this long is passed over
        self.stale = float(stale) if stale is not None else 2.0 / self.rate + 0.25
        self._clock = clock
        self._script = client.register_script(_TAKE)
        self._admit = client.register_script(_ADMIT)
        self._answered = client.register_script(_ANSWERED)
        self._sent = itertools.count()
        self._member = uuid.uuid4().hex
        self._keys = [key, f"{key}:waiters", f"{key}:asked"]
        self._waiting: list[tuple[float, int, asyncio.Future[float]]] = []  # a heap
        self._order = itertools.count()
        self._pump_task: asyncio.Task[None] | None = None
        #: when the change the current task's next take serves was made (monotonic)
        self.change: contextvars.ContextVar[float | None] = contextvars.ContextVar(
            f"layoutsync_change_{self._member}", default=None
        )

    async def reserve(self) -> float:
        """Wait for this task's turn in the fleet; the seconds left before the token is due."""
        now = self._clock()
        changed = self.change.get()
        at = changed if changed is not None and changed < now else now
        granted: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (at, next(self._order), granted))
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.create_task(self._pump(), name="layoutsync-fleet-bucket")
        try:
            return await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled() and granted.exception() is None:
                await self.cancel()  # granted just as the wait was cancelled: not used
            raise

    async def cancel(self) -> None:
        """Give back a token that will not be used (best effort); the next goes oldest first."""
        with contextlib.suppress(*_redis_errors()):
            await self._call("give", 0.0, None)

    async def _call(self, mode: str, age: float, next_age: float | None) -> tuple[str, float]:
        reply = await self._script(
            keys=self._keys,
            args=[
                self.rate,
                self.burst,
                mode,
                self._member,
                f"{max(0.0, age) * 1000:.3f}",
                "" if next_age is None else f"{max(0.0, next_age) * 1000:.3f}",
                f"{self.tolerance * 1000:.3f}",
                f"{self.stale * 1000:.3f}",
            ],
        )
        kind, seconds = _text(reply).split()
        return kind, float(seconds)

    def _live(self) -> list[tuple[float, int, asyncio.Future[float]]]:
        """The two oldest waiters still waiting (cancelled ones dropped from the heap top)."""
        heap = self._waiting
        while heap and heap[0][2].done():
            heapq.heappop(heap)
        return [w for w in heapq.nsmallest(3, heap) if not w[2].done()][:2]

    async def _pump(self) -> None:
        """Ask the fleet's bucket for this replica's oldest waiter until none is left."""
        registered = False
        try:
            while live := self._live():
                now = self._clock()
                next_age = now - live[1][0] if len(live) > 1 else None
                kind, seconds = await self._call("take", now - live[0][0], next_age)
                registered = kind == "W" or next_age is not None
                if kind == "G":
                    live = self._live()  # the oldest now (one may have come or gone meanwhile)
                    if live:
                        heapq.heappop(self._waiting)[2].set_result(seconds)
                    else:
                        await self._call("give", 0.0, None)
                    continue
                await asyncio.sleep(seconds)
            if registered:
                await self._call("leave", 0.0, None)
        except _redis_errors() as exc:
            error = StateError(f"Redis: cannot take a token from the shared rate limit: {exc}")
            for _, _, waiter in self._waiting:
                if not waiter.done():
                    waiter.set_exception(error)
            self._waiting.clear()
        except asyncio.CancelledError:
            for _, _, waiter in self._waiting:
                waiter.cancel()
            self._waiting.clear()
            raise

    async def acquire(self) -> float:
        """Reserve, then wait for the token and the fleet's window; the seconds waited.

        For a send that follows at once (the daemon's transport reserves and sleeps
        itself, and holds its send in ``sending`` right before the bytes leave, in
        ``FencedTransport``).
        """
        delay = await self.reserve()
        if delay > 0:
            try:
                await asyncio.sleep(delay)
            except BaseException:
                await self.cancel()
                raise
        async with self.sending() as waited:
            return delay + waited

    @contextlib.asynccontextmanager
    async def sending(self, lease: tuple[str, str, str] | None = None) -> AsyncIterator[float]:
        """Hold one send of the fleet's window: admitted on entry, answered on exit.

        ``lease``: (session name, lease key, token): the admission also confirms, in the
        same script, that the lease still holds ``token`` (``LeaseLost`` if not).

        The service counts a request when it arrives, somewhere between its admission
        here and its answer; so a send's slot counts from its admission until one window
        after its answer (until ``flight`` after its admission while no answer came, e.g.
        from a replica that died). Then, whatever the delays between the admission, the
        bytes leaving and the service's clock, no second at the service holds more than
        ``window_cap`` requests: of the sends that arrived within one second, the last to
        be admitted found every other one admitted and either in flight or answered within
        that second. Yields the seconds waited for a slot.
        """
        waited, member = await self._admit_one(lease)
        try:
            yield waited
        finally:
            with contextlib.suppress(*_redis_errors()):
                await self._answered(keys=[f"{self.key}:sent"], args=[member])

    async def _admit_one(self, lease: tuple[str, str, str] | None) -> tuple[float, str]:
        """Wait until fewer than ``window_cap`` sends of the fleet hold a slot; take one."""
        waited = 0.0
        member = f"{self._member}:{next(self._sent)}"
        keys = [f"{self.key}:sent"] + ([lease[1]] if lease is not None else [])
        args = [self.window_cap, int(self.window * 1000), member, int(self.flight * 1000)]
        if lease is not None:
            args.append(lease[2])
        while True:
            try:
                reply = _text(await self._admit(keys=keys, args=args))
            except _redis_errors() as exc:
                raise StateError(f"Redis: cannot check the shared rate limit: {exc}") from None
            if reply.startswith("F"):
                assert lease is not None
                raise LeaseLost(lease[0], "taken over")
            wait = float(reply)
            if wait <= 0:
                return waited, member
            await asyncio.sleep(wait)
            waited += wait


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


# --- leases -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lease:
    token: str  #: ``replica|fence``
    valid_until: float  #: local monotonic deadline for sending and writing


class LeaseTable:
    """Acquire, renew and release leases of many sessions, one script per chunk."""

    def __init__(
        self,
        client: Any,
        keys: RedisKeys,
        replica_id: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self.replica_id = replica_id
        self.ttl = ttl
        self._clock = clock
        self._client = client
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self.held: dict[str, Lease] = {}

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    async def heartbeat(self, *, leave: bool = False) -> tuple[int, dict[str, int]]:
        """Announce this replica (or leave): (Redis now in ms, {live replica: expiry ms})."""
        reply = await self._heartbeat(
            keys=[self.keys.replicas], args=[self.replica_id, self.ttl_ms, "1" if leave else "0"]
        )
        values = [_text(v) for v in reply]
        members = {values[i]: int(float(values[i + 1])) for i in range(1, len(values), 2)}
        return int(values[0]), members

    async def acquire(self, names: Sequence[str]) -> tuple[set[str], set[str], float | None]:
        """Acquire or renew ``names``: (gained, lost, seconds until the first one held by
        another replica expires, or None)."""
        gained: set[str] = set()
        lost: set[str] = set()
        soonest: float | None = None
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            sent_at = self._clock()
            reply = await self._acquire(
                keys=[self.keys.lease(n) for n in chunk]
                + [self.keys.fence(n) for n in chunk]
                + [self.keys.replicas],
                args=[
                    self.replica_id,
                    self.ttl_ms,
                    *(self.held[n].token if n in self.held else "" for n in chunk),
                ],
            )
            valid_until = sent_at + self.ttl * _LEASE_SAFETY
            for name, raw in zip(chunk, reply, strict=True):
                value = _text(raw)
                if value.startswith("-"):
                    if self.held.pop(name, None) is not None:
                        lost.add(name)
                    remaining = max(0.0, int(value[1:]) / 1000) if value[1:].isdigit() else 0.0
                    soonest = remaining if soonest is None else min(soonest, remaining)
                    continue
                previous = self.held.get(name)
                if previous is None or previous.token != value:
                    gained.add(name)
                self.held[name] = Lease(value, valid_until)
        return gained, lost, soonest

    async def release(self, names: Iterable[str]) -> int:
        """Give up ``names`` at once (a clean stop, or sessions that moved to another replica)."""
        leases = [(n, self.held.pop(n)) for n in list(names) if n in self.held]
        released = 0
        for start in range(0, len(leases), _CHUNK):
            chunk = leases[start : start + _CHUNK]
            released += int(
                await self._release(
                    keys=[self.keys.lease(n) for n, _ in chunk],
                    args=[lease.token for _, lease in chunk],
                )
            )
        return released

    def token(self, name: str) -> str | None:
        """This replica's token for ``name`` while its lease is valid on the local clock."""
        lease = self.held.get(name)
        if lease is None or self._clock() >= lease.valid_until:
            return None
        return lease.token

    async def confirm(self, name: str, token: str | None) -> None:
        """Raise ``LeaseLost`` unless ``token`` is valid locally and still the one in Redis."""
        if token is None or self.token(name) != token:
            raise LeaseLost(name, "expired on this replica's clock")
        try:
            current = await self._client.get(self.keys.lease(name))
        except _redis_errors() as exc:
            raise LeaseLost(name, f"cannot confirm it: {exc}") from None
        if current is None or _text(current) != token:
            raise LeaseLost(name, "taken over")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- sending only with a confirmed lease -----------------------------------------------------

#: (session name, lease token) of the session whose request is being sent.
_SENDER: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "layoutsync_sender", default=None
)


class FencedTransport(httpx.AsyncBaseTransport):
    """Refuses a request of a session whose lease this replica cannot confirm right now.

    Sits below the rate limiter, so the check follows any wait for a token.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        leases: LeaseTable,
        *,
        window: Callable[..., contextlib.AbstractAsyncContextManager[float]] | None = None,
    ) -> None:
        self._transport = transport
        self._leases = leases
        self._window = window
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sender = _SENDER.get()
        try:
            if self._window is None:
                if sender is not None:
                    await self._leases.confirm(*sender)
                return await self._transport.handle_async_request(request)
            # The fleet's window of sends last, so no Redis round trip lies between a send's
            # admission and its bytes; its slot is held until the answer, and the admission's
            # script confirms the lease in Redis (one round trip for both). After a wait
            # there the lease is checked again on this replica's clock: its local deadline
            # ends before the lease can lapse in Redis, and only a lapsed lease can be taken
            # over.
            lease = None
            if sender is not None:
                name, token = sender
                if token is None or self._leases.token(name) != token:
                    raise LeaseLost(name, "expired on this replica's clock")
                lease = (name, self._leases.keys.lease(name), token)
            async with self._window(lease) as waited:
                if waited > 0 and lease is not None and self._leases.token(lease[0]) != lease[2]:
                    raise LeaseLost(lease[0], "expired on this replica's clock")
                return await self._transport.handle_async_request(request)
        except LeaseLost:
            self.refused += 1
            raise

    async def aclose(self) -> None:
        await self._transport.aclose()


class _SenderClient:
    """The daemon's client, with every call marked as sent for one session's lease epoch."""

    __slots__ = ("_client", "_sender")

    def __init__(self, client: Any, name: str, token: str | None) -> None:
        self._client = client
        self._sender = (name, token)

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(self._client, attribute)
        if not asyncio.iscoroutinefunction(value):
            return value
        sender = self._sender

        async def call(*args: Any, **kwargs: Any) -> Any:
            marker = _SENDER.set(sender)
            try:
                return await value(*args, **kwargs)
            finally:
                _SENDER.reset(marker)

        return call


class _WrittenByHandlers:
    """The group-commit journal of a replica: empty, because each event handler has already
    written its change to Redis (an operation on the shared desired inputs) when it returns;
    the clientSeq records are the fleet's, in Redis, and are not compacted by one replica."""

    def __len__(self) -> int:
        return 0

    def record(self, *_: Any) -> None:
        return None

    def record_seq(self, *_: Any) -> None:
        return None

    async def commit(self) -> None:
        return None

    async def compact(self, *_: Any) -> None:
        return None

    def close(self) -> None:
        return None


# --- the replica ------------------------------------------------------------------------------


class ClusterDaemon(Daemon):
    """A ``Daemon`` that reconciles only the sessions whose lease it holds.

    Every replica loads every spec (so any of them answers the API and
    webhooks); events go to Redis first, then to the owner.
    """

    def __init__(
        self,
        settings: DaemonSettings,
        cluster: ClusterSettings,
        *,
        client: Any,
        store: RedisStore,
        redis: Any,
        leases: LeaseTable | None = None,
        bucket: RedisTokenBucket | None = None,
        **options: Any,
    ) -> None:
        self.cluster = cluster
        self.bucket = bucket
        self.redis = redis
        self.leases = leases or LeaseTable(redis, store.keys, cluster.replica_id, cluster.lease_ttl)
        self._tokens: dict[str, str | None] = {}  # the lease token each session object writes with
        self._replicas: dict[str, int] = {}
        self._round_ok_at: float | None = None
        self._cluster_tasks: list[asyncio.Task[None]] = []
        self._moving: set[str] = set()  # owned elsewhere now; released once not processing
        self._stopped_cluster = asyncio.Event()
        self._nudged = asyncio.Event()  # another replica joined or left: look again now
        #: per session, the version of the desired inputs last read from Redis, and the
        #: newest version known to exist there (this replica's writes, wakes)
        self._read_version: dict[str, int] = {}
        self._newest_version: dict[str, int] = {}
        super().__init__(
            settings, client=client, store=store, session_factory=self._build, **options
        )
        self.redis_store = store
        self.journal = _WrittenByHandlers()  # type: ignore[assignment]
        self.events = RedisEventJournal(
            store, on_written=self._written, on_failed=self._forget_read
        )

    # --- sessions bound to one lease epoch ---------------------------------------------------

    def _build(
        self,
        spec: LayoutSpec,
        *,
        client: Any,
        store: Any,
        name: str,
        loaded: LoadedSession | None = None,
    ) -> AsyncSession:
        token = self.leases.token(name)
        self._tokens[name] = token
        # A new session object reads before its first reconcile: its versions may be of a
        # row deleted since (a spec removed and added again starts again at version 1).
        self._read_version.pop(name, None)
        self._newest_version.pop(name, None)
        return AsyncSession(
            spec,
            client=_SenderClient(client, name, token),  # type: ignore[arg-type]
            store=self.redis_store_of(store).fenced(name, token, loaded=loaded),
            name=name,
            durable_inputs=False,  # events are written to Redis by the handlers (_record)
        )

    @staticmethod
    def redis_store_of(store: Any) -> RedisStore:
        if not isinstance(store, RedisStore):
            raise TypeError(f"ClusterDaemon needs a RedisStore, got {type(store).__name__}")
        return store

    def owns(self, name: str) -> bool:
        return self.leases.token(name) is not None

    def owned(self) -> tuple[str, ...]:
        return tuple(sorted(n for n in self.leases.held if self.owns(n)))

    def replicas(self) -> tuple[str, ...]:
        return tuple(sorted(self._replicas))

    def pending(self, name: str) -> dict[str, Any]:
        """Also who owns the session: reconciles happen at ``owner``, the API answers anywhere."""
        out = super().pending(name)
        out["owner"] = rendezvous_owner(name, self._replicas)
        out["ownedHere"] = self.owns(name)
        return out

    # --- events: Redis first, then the owner ----------------------------------------------------

    # Every event is written to Redis by its handler before it returns (``_record``), as an
    # operation on the shared desired inputs: there is nothing for a group commit to write,
    # and the webhook clientSeq records live in Redis for the whole fleet, so a replica
    # neither restores nor saves (nor compacts) records of its own.

    async def commit_inputs(self) -> None:
        await self.events.commit()

    def _restore_client_seqs(self) -> None:
        return None

    def _save_client_seqs(self, *args: Any, **kwargs: Any) -> None:
        return None

    def host_joined(self, name: str, uid: int, *, source: str = "api") -> None:
        self._record(name, "join", uid)
        super().host_joined(name, uid, source=source)

    def host_left(self, name: str, uid: int, *, source: str = "api") -> None:
        self._record(name, "leave", uid)
        super().host_left(name, uid, source=source)

    def set_hosts(self, name: str, uids: Iterable[int]) -> None:
        hosts = list(uids)
        self._record(name, "hosts", hosts)
        super().set_hosts(name, hosts)

    def set_speaker(self, name: str, uid: int | None) -> None:
        self._record(name, "speaker", uid)
        super().set_speaker(name, uid)

    def _record(self, name: str, op: str, value: Any) -> None:
        self.get(name)  # UnknownSession before any write
        self.events.record(name, op, value)  # in Redis by the handler's commit_inputs()

    def _queue_change(self, name: str) -> None:
        if name in self.leases.held:  # elsewhere the owner is woken through Redis
            self.queue.add(name)

    def _forget_read(self, names: Iterable[str]) -> None:
        """Read these sessions' desired inputs before their next reconcile (this replica's
        copy may hold a change that Redis does not)."""
        for name in names:
            self._read_version.pop(name, None)

    def _written(self, name: str, version: int) -> None:
        """One of this replica's events is in Redis as ``version``. If the session was
        read before it landed (a worker got there first), it is reconciled once more;
        its own wake would queue it too, this does not depend on pub/sub."""
        self._announced(name, version)
        read = self._read_version.get(name)
        if read is not None and read < version and name in self.leases.held:
            self.queue.add(name)

    def _announced(self, name: str, version: int) -> None:
        """Desired inputs of version ``version`` exist in Redis."""
        if version > self._newest_version.get(name, 0):
            self._newest_version[name] = version

    def handle_notification(self, notification: Notification) -> WebhookOutcome:
        targets = self._webhook_targets(notification)
        if not targets:
            return super().handle_notification(notification)
        accepted = self.redis_store.record_notification(
            **self._notification_args(notification, targets)
        )
        return self._webhook_recorded(notification, targets, accepted)

    async def notify(self, notification: Notification) -> WebhookOutcome:
        """``handle_notification`` on the asyncio client, after the API events this replica
        recorded before it (so Redis applies them in the order they came)."""
        targets = self._webhook_targets(notification)
        if not targets:
            return super().handle_notification(notification)
        await self.events.commit()
        accepted = await self.redis_store.arecord_notification(
            **self._notification_args(notification, targets)
        )
        return self._webhook_recorded(notification, targets, accepted)

    def _webhook_targets(self, notification: Notification) -> list[Any]:
        event = notification.host_event
        if event is None:
            return []
        return [
            m
            for m in self.sessions_for_channel(event.channel)
            if not m.is_own_output(event.channel, event.uid)
        ]

    def _notification_args(self, notification: Notification, targets: list[Any]) -> dict[str, Any]:
        event = notification.host_event
        assert event is not None
        return {
            "channel": event.channel,
            "uid": event.uid,
            "client_seq": event.client_seq,
            "joined": event.joined,
            "names": [m.name for m in targets],
            "retention": self.settings.seq_retention,
        }

    def _webhook_recorded(
        self, notification: Notification, targets: list[Any], accepted: bool
    ) -> WebhookOutcome:
        event = notification.host_event
        assert event is not None
        self.metrics.events.labels("webhook", str(notification.event_type)).inc()
        if not accepted:
            return self._ignored(notification, "clientSeq not above the last seen")
        for managed in targets:
            if event.joined:
                managed.session.host_joined(event.uid)
            else:
                managed.session.host_left(event.uid)
            self._forget_read([managed.name])  # its version is in the wake: read
            self._queue_change(managed.name)
        return WebhookOutcome(notification.event_type, applied=tuple(m.name for m in targets))

    # --- reconciling only what this replica owns -------------------------------------------------

    async def reconcile_now(self, name: str) -> ReconcileResult | None:
        if not self.owns(name):
            self.get(name)
            with contextlib.suppress(Exception):
                await self.redis.publish(self.redis_store.keys.wake, name)
            return self.get(name).last_result
        return await super().reconcile_now(name)

    async def _process(self, name: str) -> bool:
        if name not in self._sessions and name not in self._retiring:
            return True
        if not self.owns(name):
            return True  # its owner reconciles it; a wake or a takeover queues it here again
        if name in self._retiring:
            try:
                await self._prepare(name)  # a destroy, bound to this lease epoch
            except StateError as exc:
                self._log.warning("destroy not started", session=name, error=str(exc))
                self.queue.add_after(name, self.limiter.when(name))
                return False
        try:
            # the token before compile (``Daemon._reconcile_paced``) comes from the fleet's
            # bucket in Redis: ``build_cluster_daemon`` makes it the client's rate limiter
            return await super()._process(name)
        except StateError as exc:  # no token: Redis is away; the session waits its backoff
            self._log.warning("reconcile not started", session=name, error=str(exc))
            self.queue.add_after(name, self.limiter.when(name))
            return False

    async def _reconcile_paced(self, managed: Any, *, refresh: bool) -> BaseException | None:
        """Token before compile, with the plan made *before* the reservation.

        The base daemon plans only when its token must wait, and gives the token back
        when there is nothing to send. Here the session may not hold the events
        other replicas recorded (so its plan says noop and the reconcile then sends
        on a fresh token, at the back of the line), and a session with nothing to
        send would still wait its turn in the fleet's line. So the desired inputs are
        read from Redis first, a session with nothing to send takes no token at all,
        and the rest is the base's wait (its own pre-check is then skipped:
        ``_would_send``), with the time of the change it serves in ``bucket.change``
        (the fleet's bucket serves the oldest change of all replicas first).
        """
        if self.rate_limiter is not None and not refresh:
            if (error := await self._read_desired(managed)) is not None:
                return error
            if not await super()._would_send(managed):
                return await self._reconcile(managed, refresh=refresh)
        if self.bucket is None:
            return await super()._reconcile_paced(managed, refresh=refresh)
        marker = self.bucket.change.set(self.queue.change_time(managed.name))
        try:
            return await super()._reconcile_paced(managed, refresh=refresh)
        finally:
            self.bucket.change.reset(marker)

    async def _would_send(self, managed: Any) -> bool:
        return True  # planned before the reservation (``_reconcile_paced``): no give-back

    async def _reconcile(self, managed: Any, *, refresh: bool) -> BaseException | None:
        """Bind the session to this lease epoch and read its desired inputs from Redis,
        after any wait for a token, then reconcile."""
        if (error := await self._read_desired(managed)) is not None:
            return error
        return await super()._reconcile(managed, refresh=refresh)

    async def _read_desired(self, managed: Any) -> StateError | None:
        """``_prepare``; a failure is recorded on the session, logged and returned."""
        try:
            await self._prepare(managed.name)
        except StateError as exc:
            managed.last_error = str(exc)
            self._log.warning("desired inputs not read", session=managed.name, error=str(exc))
            return exc
        return None

    async def _prepare(self, name: str) -> None:
        """Bind the session to the current lease epoch and read its desired inputs, unless
        the version read last is still the newest this replica knows of."""
        managed = self._sessions.get(name) or self._retiring.get(name)
        if managed is None:
            return
        token = self.leases.token(name)
        if self._tokens.get(name) != token:  # a new epoch: its row as it is now, not blocking
            loaded = await self.redis_store.aload_session(name)
            managed.session = self._build(
                managed.spec, client=self.client, store=self.redis_store, name=name, loaded=loaded
            )
        read = self._read_version.get(name)
        if read is not None and read >= self._newest_version.get(name, 0):
            return
        desired = await self.redis_store.adesired(name)
        if desired is None:
            self._read_version[name] = 0  # no event yet: the row's inputs stand
            return
        hosts, speaker, version = desired
        managed.session.set_hosts(hosts)
        managed.session.set_speaker(speaker)
        self._read_version[name] = version
        self._announced(name, version)

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._round()  # own a share before the first reconciles are queued
        await super().start()
        self._cluster_tasks = [
            asyncio.create_task(self._lease_loop(), name="layoutsync-leases"),
            asyncio.create_task(self._wake_loop(), name="layoutsync-wake"),
        ]
        await self._nudge_others()  # they let go of what is this replica's now

    async def _nudge_others(self) -> None:
        with contextlib.suppress(*_redis_errors()):
            await self.redis.publish(self.redis_store.keys.wake, _NUDGE)

    async def stop(self) -> None:
        if self.stopping:
            return
        await super().stop()  # drains with the leases still renewed
        self._stopped_cluster.set()
        for task in self._cluster_tasks:
            task.cancel()
        for task in self._cluster_tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(*_redis_errors()):
            released = await self.leases.release(list(self.leases.held))
            await self.leases.heartbeat(leave=True)
            await self._nudge_others()  # they take over now, not at their next round
            self._log.info("leases released", sessions=released)

    async def aclose(self) -> None:
        await super().aclose()
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    def ready(self) -> tuple[bool, Any]:
        return self._with_leases(*super().ready())

    async def aready(self) -> tuple[bool, Any]:
        """Redis asked on the asyncio client: an unreachable server stalls no event."""
        errors: tuple[type[BaseException], ...] = (*_redis_errors(), TimeoutError)
        try:
            await asyncio.wait_for(self.redis.ping(), _PING_TIMEOUT)
        except errors as exc:
            error = str(exc) or f"no answer within {_PING_TIMEOUT:g} s"
            return self._with_leases(*self._readiness(f"Redis: cannot reach Redis: {error}"))
        return self._with_leases(*self._readiness(None))

    def _with_leases(self, ok: bool, checks: Mapping[str, Any]) -> tuple[bool, Any]:
        checks = dict(checks)
        fresh = (
            self._round_ok_at is not None
            and time.monotonic() - self._round_ok_at < self.cluster.lease_ttl * _LEASE_SAFETY
        )
        checks["leases"] = fresh
        checks["owned"] = len(self.owned())
        checks["replicas"] = len(self._replicas)
        return ok and fresh, checks

    async def _lease_loop(self) -> None:
        ttl = self.cluster.lease_ttl
        failed = False
        while not self._stopped_cluster.is_set():
            try:
                wait = await self._round()
                if failed:
                    # Back from an outage: whatever failed meanwhile is due now, not after
                    # the backoff it built up while Redis was away.
                    failed = False
                    for name in self.owned():
                        self.limiter.forget(name)
                        self.queue.add(name)
            except _redis_errors() as exc:
                failed = True
                self._log.warning(
                    "lease round failed; sending stops as leases lapse", error=str(exc)
                )
                wait = min(ttl / 3, 0.5)
            await self._sleep_until_nudged(wait)

    async def _sleep_until_nudged(self, seconds: float) -> None:
        """Wait ``seconds``, less when another replica joins or leaves (or this one stops)."""
        stop = asyncio.ensure_future(self._stopped_cluster.wait())
        nudge = asyncio.ensure_future(self._nudged.wait())
        try:
            await asyncio.wait({stop, nudge}, timeout=seconds, return_when="FIRST_COMPLETED")
        finally:
            stop.cancel()
            nudge.cancel()
        self._nudged.clear()

    async def _round(self) -> float:
        """Heartbeat, take or renew this replica's share, let go of what moved; the next wait."""
        ttl = self.cluster.lease_ttl
        me = self.cluster.replica_id
        now_ms, replicas = await self.leases.heartbeat()
        replicas.setdefault(me, now_ms + self.leases.ttl_ms)
        self._replicas = replicas
        names = sorted({*self._sessions, *self._retiring})
        mine = [n for n in names if rendezvous_owner(n, replicas) == me]
        wanted = set(mine)
        gained, lost, soonest = await self.leases.acquire(mine)
        self._moving |= {n for n in self.leases.held if n not in wanted}
        ready = [n for n in self._moving if not self.queue.is_processing(n)]
        if ready:
            await self.leases.release(ready)
            self._moving -= set(ready)
        for name in sorted(gained):
            self.limiter.forget(name)
            self.queue.add_after(name, 0.0)  # a takeover is not a burst of events
        if gained or lost or ready:
            self._log.info(
                "ownership changed",
                gained=len(gained),
                lost=len(lost),
                released=len(ready),
                owned=len(self.leases.held),
                replicas=len(replicas),
            )
        self._round_ok_at = time.monotonic()
        wait = ttl / 3
        # Another replica's entry lapses with its last lease (``_ACQUIRE``): look again just
        # after that moment, which is when a replica that died can be taken over.
        others = [expiry - now_ms for r, expiry in replicas.items() if r != me]
        if others:
            wait = min(wait, max(0.0, min(others) / 1000) + _EXPIRY_SLACK)
        if soonest is not None:
            wait = min(wait, soonest + _EXPIRY_SLACK)
        return max(wait, _EXPIRY_SLACK)

    async def _wake_loop(self) -> None:
        keys = self.redis_store.keys
        channels = (keys.wake, keys.wake_of(self.cluster.replica_id))
        while not self._stopped_cluster.is_set():
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(*channels)
                # wakes may have been missed, and Redis may have lost its data (versions
                # start again): read each session before its next reconcile
                self._read_version.clear()
                self._newest_version.clear()
                for name in self.owned():  # whatever was published while not subscribed
                    self.queue.add(name)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    text = _text(message["data"])
                    if text == _NUDGE:
                        self._nudged.set()
                        continue
                    version, name = _wake_of(text)
                    if version is None:  # a reconcile asked for at another replica
                        self._read_version.pop(name, None)
                    else:
                        self._announced(name, version)
                    if self.owns(name):
                        self.queue.add(name)
            except _redis_errors() as exc:
                self._log.warning("wake channel lost; resubscribing", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped_cluster.wait(), 0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()


def _wake_of(text: str) -> tuple[int | None, str]:
    """(version, name) of a wake message: ``<version> <name>`` after an event, ``<name>``
    when another replica asks for a reconcile."""
    head, _, rest = text.partition(" ")
    if rest and head.isdigit():
        return int(head), rest
    return None, text


def build_cluster_daemon(
    settings: DaemonSettings,
    cluster: ClusterSettings,
    *,
    metrics: Any,
    catalog: Any = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **client_options: Any,
) -> ClusterDaemon:
    """A replica over ``cluster.redis_url``: store, shared bucket, fenced client. Raises
    ``StateError`` when Redis cannot be reached."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    aredis = redis.asyncio.Redis.from_url(
        cluster.redis_url,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        retry=Retry(NoBackoff(), 0),  # the lease loop retries, on its own schedule
    )
    store = RedisStore.from_url(cluster.redis_url, namespace=cluster.namespace, aclient=aredis)
    store.check()
    leases = LeaseTable(aredis, store.keys, cluster.replica_id, cluster.lease_ttl)
    bucket = RedisTokenBucket(aredis, store.keys.bucket, settings.qps, settings.burst)
    base = transport if transport is not None else httpx.AsyncHTTPTransport()
    client = build_client(
        settings,
        metrics,
        transport=FencedTransport(base, leases, window=bucket.sending),
        bucket=bucket,  # type: ignore[arg-type]
        **client_options,
    )
    return ClusterDaemon(
        settings,
        cluster,
        client=client,
        store=store,
        redis=aredis,
        leases=leases,
        bucket=bucket,
        catalog=catalog,
        metrics=metrics,
    )
