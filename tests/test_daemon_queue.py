"""The level-triggered work queue, its backoff limiter and the outgoing token bucket."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from layoutsync.daemon.queue import BackoffLimiter, QueueCore, QueueShutDown, WorkQueue
from layoutsync.daemon.ratelimit import RateLimitedTransport, TokenBucket


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class TestQueueCore:
    """Keys coalesce; a burst is gathered by the debounce window; no key runs twice at once."""

    def test_a_key_is_queued_at_most_once(self) -> None:
        q: QueueCore[str] = QueueCore(debounce=0.2)
        assert q.add("a", 0.0)
        for i in range(49):
            assert not q.add("a", 0.001 * i)
        assert len(q) == 1
        assert q.pop(1.0) == "a"
        assert q.pop(1.0) is None
        assert len(q) == 0

    def test_debounce_gathers_a_burst_from_the_first_event(self) -> None:
        q: QueueCore[str] = QueueCore(debounce=0.2)
        q.add("a", 10.0)
        q.add("a", 10.15)  # a later event does not push the deadline back
        assert q.pop(10.19) is None
        assert q.next_due() == pytest.approx(10.2)
        assert q.pop(10.2) == "a"

    def test_keys_come_out_in_due_order(self) -> None:
        q: QueueCore[str] = QueueCore(debounce=0.1)
        q.add("b", 1.0)
        q.add("a", 0.5)
        q.add_after("c", 0.0, 0.9)
        assert [q.pop(5.0), q.pop(5.0), q.pop(5.0), q.pop(5.0)] == ["a", "c", "b", None]

    def test_adding_while_processing_requeues_on_done(self) -> None:
        q: QueueCore[str] = QueueCore(debounce=0.2)
        q.add("a", 0.0)
        assert q.pop(0.2) == "a"
        assert q.is_processing("a")
        q.add("a", 0.3)
        q.add("a", 0.35)
        assert len(q) == 1
        assert q.pop(10.0) is None  # never handed out twice at once
        q.done("a")
        assert not q.is_processing("a")
        # due 0.5 (first event during processing + debounce): already past at 10.0
        assert q.pop(10.0) == "a"

    def test_done_without_new_events_forgets_the_key(self) -> None:
        q: QueueCore[str] = QueueCore(debounce=0.0)
        q.add("a", 0.0)
        assert q.pop(0.0) == "a"
        q.done("a")
        assert q.pop(100.0) is None
        assert q.next_due() is None

    def test_add_after_never_delays_an_earlier_deadline(self) -> None:
        q: QueueCore[str] = QueueCore(debounce=0.2)
        q.add("a", 0.0)
        assert not q.add_after("a", 30.0, 0.0)
        assert q.pop(0.2) == "a"
        q.done("a")
        q.add_after("a", 30.0, 1.0)
        q.add("a", 2.0)  # an event brings a backed-off key forward
        assert q.pop(2.2) == "a"

    def test_forget_and_expedite(self) -> None:
        q: QueueCore[str] = QueueCore(debounce=5.0)
        q.add("a", 0.0)
        q.add("b", 0.0)
        assert q.forget("a")
        assert not q.forget("a")
        assert q.pop(1.0) is None
        q.expedite(1.0)
        assert q.pop(1.0) == "b"
        assert q.pop(1.0) is None

    def test_negative_debounce_is_refused(self) -> None:
        with pytest.raises(ValueError):
            QueueCore(debounce=-1)


class TestBackoffLimiter:
    """when() grows exponentially per key up to the cap, with jitter; forget() resets."""

    def test_exponential_without_jitter(self) -> None:
        limiter: BackoffLimiter[str] = BackoffLimiter(base=0.5, cap=4.0, jitter=0.0)
        assert [limiter.when("a") for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
        assert limiter.failures("a") == 6
        assert limiter.when("b") == 0.5  # per key
        limiter.forget("a")
        assert limiter.failures("a") == 0
        assert limiter.when("a") == 0.5

    def test_jitter_stays_within_bounds(self) -> None:
        limiter: BackoffLimiter[str] = BackoffLimiter(
            base=1.0, cap=100.0, jitter=0.25, rng=random.Random(7)
        )
        delays = []
        for _ in range(200):
            limiter.forget("k")
            limiter.when("k")
            delays.append(limiter.when("k"))  # second failure: nominal 2.0
        assert all(1.5 <= d <= 2.5 for d in delays)
        assert len(set(delays)) > 100  # actually jittered

    def test_never_above_the_cap(self) -> None:
        limiter: BackoffLimiter[str] = BackoffLimiter(base=1.0, cap=10.0, jitter=0.5)
        assert max(limiter.when("k") for _ in range(100)) <= 10.0

    @pytest.mark.parametrize(
        "kwargs", [{"base": 0}, {"base": 2, "cap": 1}, {"jitter": 1.0}, {"jitter": -0.1}]
    )
    def test_bad_parameters(self, kwargs: dict[str, float]) -> None:
        with pytest.raises(ValueError):
            BackoffLimiter(**kwargs)


class TestWorkQueue:
    """The asyncio face: workers wait for due keys; shutdown drains or stops."""

    @pytest.mark.anyio
    async def test_get_waits_for_the_debounce_window(self) -> None:
        q: WorkQueue[str] = WorkQueue(debounce=0.02)
        for _ in range(50):
            q.add("s")
        assert len(q) == 1
        key = await asyncio.wait_for(q.get(), 2.0)
        assert key == "s"
        assert len(q) == 0
        q.done("s")

    @pytest.mark.anyio
    async def test_concurrency_limit_and_no_key_twice(self) -> None:
        q: WorkQueue[int] = WorkQueue(debounce=0.0)
        running: set[int] = set()
        peak = 0
        handled: list[int] = []
        gate = asyncio.Event()

        async def worker() -> None:
            nonlocal peak
            while True:
                try:
                    key = await q.get()
                except QueueShutDown:
                    return
                try:
                    assert key not in running
                    running.add(key)
                    peak = max(peak, len(running))
                    await gate.wait()
                    handled.append(key)
                finally:
                    running.discard(key)
                    q.done(key)

        workers = [asyncio.create_task(worker()) for _ in range(3)]
        for key in range(10):
            q.add(key)
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(running) == 3  # the limit, with 10 keys due
        q.add(next(iter(running)))  # re-dirty a key while it is processed
        gate.set()
        q.shutdown(drain=True)
        await asyncio.wait_for(asyncio.gather(*workers), 2.0)
        assert peak == 3
        assert sorted(set(handled)) == list(range(10))
        assert len(handled) == 11  # the re-dirtied key ran once more, after the first run

    @pytest.mark.anyio
    async def test_drain_hands_out_debounced_keys_at_once(self) -> None:
        clock = FakeClock()
        q: WorkQueue[str] = WorkQueue(debounce=3600.0, clock=clock)
        q.add("a")
        q.shutdown(drain=True)
        assert await asyncio.wait_for(q.get(), 1.0) == "a"
        q.done("a")
        with pytest.raises(QueueShutDown):
            await asyncio.wait_for(q.get(), 1.0)

    @pytest.mark.anyio
    async def test_shutdown_without_drain_drops_waiting_keys(self) -> None:
        q: WorkQueue[str] = WorkQueue(debounce=3600.0)
        q.add("a")
        q.shutdown()
        assert len(q) == 0
        assert not q.add("b")
        with pytest.raises(QueueShutDown):
            await asyncio.wait_for(q.get(), 1.0)

    @pytest.mark.anyio
    async def test_a_waiting_worker_wakes_for_an_earlier_key(self) -> None:
        q: WorkQueue[str] = WorkQueue(debounce=0.0)
        q.add_after("late", 3600.0)
        getter = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.add("now")
        assert await asyncio.wait_for(getter, 2.0) == "now"

    @pytest.mark.anyio
    async def test_a_cancelled_worker_gives_its_key_back(self) -> None:
        q: WorkQueue[str] = WorkQueue(debounce=0.0)
        getter = asyncio.create_task(q.get())
        await asyncio.sleep(0)  # now waiting in line
        q.add("a")  # handed to the waiting worker...
        getter.cancel()  # ...which is cancelled before it runs again
        with pytest.raises(asyncio.CancelledError):
            await getter
        assert not q.is_processing("a")
        assert await asyncio.wait_for(q.get(), 2.0) == "a"

    @pytest.mark.anyio
    async def test_waiting_workers_are_served_in_order(self) -> None:
        q: WorkQueue[int] = WorkQueue(debounce=0.0)
        getters = [asyncio.create_task(q.get()) for _ in range(3)]
        await asyncio.sleep(0)
        for key in (10, 20, 30):
            q.add(key)
        assert await asyncio.wait_for(asyncio.gather(*getters), 2.0) == [10, 20, 30]


class TestTokenBucket:
    """Reservations: a burst goes at once, then one token per 1/rate seconds, FIFO."""

    def test_burst_then_rate(self) -> None:
        clock = FakeClock(0.0)
        bucket = TokenBucket(rate=10, burst=3, clock=clock)
        assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
        assert bucket.reserve() == pytest.approx(0.1)
        assert bucket.reserve() == pytest.approx(0.2)
        clock.advance(0.2)
        assert bucket.available() == pytest.approx(0.0)
        clock.advance(10.0)
        assert bucket.available() == pytest.approx(3.0)  # never more than the burst

    def test_sustained_rate_never_exceeds_qps(self) -> None:
        clock = FakeClock(0.0)
        bucket = TokenBucket(rate=10, burst=10, clock=clock)
        sends = [bucket.reserve() for _ in range(100)]
        # 100 requests: 10 at once, the 90 others spread over 9 seconds
        assert max(sends) == pytest.approx(9.0)
        for start in range(0, 100, 10):
            window = [t for t in sends if start / 10 <= t < start / 10 + 1.0]
            assert len(window) <= 20  # burst + rate in any one-second window

    def test_cancel_gives_the_token_back(self) -> None:
        clock = FakeClock(0.0)
        bucket = TokenBucket(rate=1, burst=1, clock=clock)
        bucket.reserve()
        assert bucket.reserve() == pytest.approx(1.0)
        bucket.cancel()
        assert bucket.reserve() == pytest.approx(1.0)

    @pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
    def test_bad_parameters(self, rate: float, burst: int) -> None:
        with pytest.raises(ValueError):
            TokenBucket(rate=rate, burst=burst)

    @pytest.mark.anyio
    async def test_transport_takes_a_token_per_request(self) -> None:
        clock = FakeClock(0.0)
        slept: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)

        bucket = TokenBucket(rate=5, burst=2, clock=clock, sleep=fake_sleep)
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.url.path)
            return httpx.Response(200, json={})

        transport = RateLimitedTransport(httpx.MockTransport(handler), bucket)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            for i in range(4):
                await client.get(f"/r{i}")
        assert seen == ["/r0", "/r1", "/r2", "/r3"]
        assert slept == [pytest.approx(0.2), pytest.approx(0.4)]

    @pytest.mark.anyio
    async def test_a_cancelled_wait_returns_its_token(self) -> None:
        clock = FakeClock(0.0)
        bucket = TokenBucket(rate=1, burst=1, clock=clock)
        bucket.reserve()
        waiter = asyncio.create_task(bucket.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert bucket.available() == pytest.approx(0.0)
