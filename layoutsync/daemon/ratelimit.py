"""One token bucket in front of every request the daemon sends.

The vendor publishes no quota for Cloud Transcoder; its sibling service
allows 10 requests/s per App ID, so that is the default. The bucket is a
transport wrapper (``RateLimitedTransport``), below the client's retry loop:
every request that leaves the process takes a token, retries and Queries
included, so no code path can forget it and the daemon never causes a 429.

``TokenBucket`` reserves rather than polls (as Go's ``x/time/rate`` does):
each caller takes a token at once, possibly driving the balance negative,
and sleeps until that token has been earned. Callers are served in arrival
order and nobody spins.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx

__all__ = ["DEFAULT_BURST", "DEFAULT_QPS", "RateLimitedTransport", "TokenBucket"]

DEFAULT_QPS = 10.0
DEFAULT_BURST = 10


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("_clock", "_sleep", "_stamp", "_tokens", "burst", "rate")

    def __init__(
        self,
        rate: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests/s, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def reserve(self, now: float | None = None) -> float:
        """Take one token; return how many seconds to wait before using it (0: go now)."""
        now = self._clock() if now is None else now
        self._refill(now)
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def cancel(self, now: float | None = None) -> None:
        """Give back a token that was reserved and not used."""
        self._refill(self._clock() if now is None else now)
        self._tokens = min(float(self.burst), self._tokens + 1.0)

    def available(self, now: float | None = None) -> float:
        """Tokens that could be taken without waiting (negative while callers queue)."""
        self._refill(self._clock() if now is None else now)
        return self._tokens

    async def acquire(self) -> float:
        """Wait for a token; returns the seconds waited."""
        delay = self.reserve()
        if delay > 0:
            try:
                await self._sleep(delay)
            except BaseException:
                self.cancel()
                raise
        return delay


class RateLimitedTransport(httpx.AsyncBaseTransport):
    """Takes a token from ``bucket`` before handing each request to ``transport``."""

    def __init__(self, transport: httpx.AsyncBaseTransport, bucket: TokenBucket) -> None:
        self._transport = transport
        self.bucket = bucket

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.bucket.acquire()
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self._transport.aclose()
