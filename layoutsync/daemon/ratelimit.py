"""One rate limiter in front of every request the daemon sends.

The vendor publishes no quota for Cloud Transcoder; its sibling service
allows 10 requests/s per App ID, so that is the default. The limiter sits in
a transport wrapper (``RateLimitedTransport``), below the client's retry
loop: every request that leaves the process takes a token, retries and
Queries included, so no code path can forget it.

Pacing at exactly the quota is not enough to never cause a 429: a request
sent 1/qps after the previous one can arrive a little sooner, and a bucket
that saved up ``burst`` tokens lets ``burst + qps`` requests into one second.
So ``TokenBucket`` paces at ``qps * (1 - margin)`` (5 % below by default) and
caps the burst so that ``burst + floor(rate) <= floor(qps)``: for an integer
quota no 1-second window, wherever it starts, holds more than ``qps``
requests, and a vendor bucket with burst = qps (the emulator's) never runs
dry. At ``--qps 10`` that cap is 1: requests are spaced 105 ms apart. The
transport also keeps a window of slots, each held from a request's send
until a second after its answer, so neither a process that was late for a
token nor a service slow to answer can crowd one second at the service.

``TokenBucket`` reserves rather than polls (as Go's ``x/time/rate`` does):
each caller takes a token at once, possibly driving the balance negative,
and sleeps until that token has been earned. Callers are served in arrival
order and nobody spins. Because reserving never blocks, a daemon worker
reserves its token *before* it reads a session's desired state, waits its
turn, and only then compiles what it sends (``prepaid``): events that arrive
while it waits are in the request, not in the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import httpx

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_MARGIN",
    "DEFAULT_QPS",
    "Prepaid",
    "RateLimitedTransport",
    "RateLimiter",
    "TokenBucket",
    "max_burst",
    "pacing",
    "prepaid",
    "take",
]

DEFAULT_QPS = 10.0
DEFAULT_BURST = 1
DEFAULT_MARGIN = 0.05


@runtime_checkable
class RateLimiter(Protocol):
    """What the daemon's requests wait on; one token per request.

    ``rate`` is the average number of requests per second let through
    (already below the vendor's quota). ``reserve()`` takes one token now,
    in arrival order, without blocking, and returns the seconds until it may
    be used (0.0: at once); the caller then sleeps that long and sends one
    request, or calls ``cancel()``. ``cancel()`` gives back one reserved token
    that will not be used (a reconcile that sent nothing, a cancelled wait);
    it never raises the balance above the burst. An implementation shared by
    several processes (the fleet's Redis bucket) takes each token in one
    atomic step, and its ``reserve`` may first wait for the caller's turn in
    the fleet (oldest change first), then returns what is left to wait.
    """

    rate: float

    async def reserve(self) -> float: ...

    async def cancel(self) -> None: ...


async def take(
    limiter: RateLimiter, *, sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
) -> float:
    """Reserve a token and wait until it may be used; returns the seconds waited.

    A wait that is cancelled gives its token back.
    """
    delay = await limiter.reserve()
    if delay > 0:
        try:
            await sleep(delay)
        except BaseException:
            await limiter.cancel()
            raise
    return delay


def max_burst(qps: float, rate: float) -> int:
    """The largest burst that keeps every 1-second window within ``qps`` (never below 1)."""
    return max(1, math.floor(qps + 1e-9) - math.floor(rate + 1e-9))


def pacing(qps: float, burst: int, margin: float) -> tuple[float, int]:
    """``(rate, burst)`` of a bucket paced ``margin`` below ``qps``, burst capped by ``max_burst``.

    One rule for every bucket (in-process and shared), so each keeps the same
    1-second-window promise.
    """
    if qps <= 0:
        raise ValueError(f"qps must be > 0 requests/s, got {qps}")
    if burst < 1:
        raise ValueError(f"burst must be >= 1, got {burst}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    rate = float(qps) * (1.0 - float(margin))
    return rate, min(int(burst), max_burst(qps, rate))


class TokenBucket:
    """``qps * (1 - margin)`` tokens per second, at most ``burst`` saved up.

    ``burst`` above ``max_burst`` is lowered to it (``requested_burst`` keeps
    what was asked, so the daemon can say so in its log). ``margin=0`` paces
    at the quota exactly, with no room for a request that arrives early.
    """

    __slots__ = (
        "_clock",
        "_reservation",
        "_reserved",
        "_sleep",
        "_stamp",
        "_tokens",
        "burst",
        "margin",
        "qps",
        "rate",
        "requested_burst",
    )

    def __init__(
        self,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        *,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.rate, self.burst = pacing(qps, burst, margin)
        self.qps = float(qps)
        self.margin = float(margin)
        self.requested_burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._reserved = 0  #: reservations taken so far; the last one's number
        #: the number of the calling task's last reservation (for ``cancel``)
        self._reservation: contextvars.ContextVar[int] = contextvars.ContextVar(
            f"layoutsync_bucket_{id(self)}", default=0
        )

    def __repr__(self) -> str:
        return f"TokenBucket(qps={self.qps:g}, rate={self.rate:g}, burst={self.burst})"

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def reserve_now(self, now: float | None = None) -> float:
        """Take one token; return how many seconds to wait before using it (0: go now)."""
        now = self._clock() if now is None else now
        self._refill(now)
        self._tokens -= 1.0
        self._reserved += 1
        self._reservation.set(self._reserved)
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def cancel_now(self, now: float | None = None) -> None:
        """Give back a token that was reserved and not used: only while no reservation
        waits behind the caller's, since the token would go to the next one to come,
        ahead of those already waiting (and two sends would share a slot)."""
        self._refill(self._clock() if now is None else now)
        if self._tokens >= 0 or self._reservation.get() == self._reserved:
            self._tokens = min(float(self.burst), self._tokens + 1.0)

    def available(self, now: float | None = None) -> float:
        """Tokens that could be taken without waiting (negative while callers queue)."""
        self._refill(self._clock() if now is None else now)
        return self._tokens

    async def reserve(self) -> float:
        return self.reserve_now()

    async def cancel(self) -> None:
        self.cancel_now()

    async def acquire(self) -> float:
        """Wait for a token; returns the seconds waited."""
        return await take(self, sleep=self._sleep)


@dataclass(slots=True, eq=False)
class Prepaid:
    """A token a worker reserved and waited for; the first request sent under it uses it."""

    used: bool = False


_PREPAID: contextvars.ContextVar[Prepaid | None] = contextvars.ContextVar(
    "layoutsync_prepaid_token", default=None
)


@contextlib.contextmanager
def prepaid() -> Iterator[Prepaid]:
    """Within this block (this task), the first request goes on a token already held."""
    token = Prepaid()
    reset = _PREPAID.set(token)
    try:
        yield token
    finally:
        _PREPAID.reset(reset)


class RateLimitedTransport(httpx.AsyncBaseTransport):
    """Takes a token from ``limiter`` before handing each request to ``transport``.

    A token is a right to send at a moment; a process that is late for it
    (the event loop was busy) would then send that request and the next
    on-time one closer together than the pacing, and the service counts a
    request when it arrives, somewhere between its send and its answer. So,
    for a limiter that states its ``qps`` (``TokenBucket`` does), the
    transport also keeps a window of ``floor(qps)`` slots: a request holds
    one from the moment it leaves until ``1 + margin`` seconds after its
    answer (or its failure). Whatever the lateness or the service's
    latency, no second at the service then counts more than ``floor(qps)``
    of them, the rule the fleet's window follows too (``cluster``).
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        limiter: RateLimiter,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._sleep = sleep
        self._clock = clock
        self.limiter = limiter
        qps = getattr(limiter, "qps", None)
        self._cap = max(1, math.floor(qps + 1e-9)) if isinstance(qps, int | float) else None
        self._span = 1.0 + float(getattr(limiter, "margin", 0.0))
        #: when each answered request stops holding its slot (a heap), and those in flight
        self._held: list[float] = []
        self._in_flight = 0
        self._answered: asyncio.Event | None = None

    @property
    def bucket(self) -> RateLimiter:
        return self.limiter

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        token = _PREPAID.get()
        if token is not None and not token.used:
            token.used = True
        else:
            await take(self.limiter, sleep=self._sleep)
        if self._cap is None:
            return await self._transport.handle_async_request(request)
        await self._take_a_slot(self._cap)
        try:
            return await self._transport.handle_async_request(request)
        finally:
            heapq.heappush(self._held, self._clock() + self._span)
            self._in_flight -= 1
            if self._answered is not None:
                self._answered.set()

    async def _take_a_slot(self, cap: int) -> None:
        held = self._held
        while True:
            now = self._clock()
            while held and held[0] <= now:
                heapq.heappop(held)
            if len(held) + self._in_flight < cap:
                self._in_flight += 1
                return
            if held:  # every request in flight ends later than the earliest held slot
                await self._sleep(held[0] - now)
            else:  # every slot is in flight: wait for an answer, then for its slot
                if self._answered is None:
                    self._answered = asyncio.Event()
                self._answered.clear()
                await self._answered.wait()

    async def aclose(self) -> None:
        await self._transport.aclose()
