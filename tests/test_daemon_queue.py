"""The level-triggered work queue, its backoff limiter and the outgoing token bucket."""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import random
import time

import httpx
import pytest

from layoutsync.daemon.queue import BackoffLimiter, QueueCore, QueueShutDown, WorkQueue
from layoutsync.daemon.ratelimit import (
    DEFAULT_MARGIN,
    RateLimitedTransport,
    RateLimiter,
    TokenBucket,
    max_burst,
    prepaid,
    take,
)
from layoutsync.emulator.state import DEFAULT_APP_ID, Emulator, EmulatorConfig, ManualClock


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


class TestChangesApartFromResyncs:
    """Real work (changes) is counted apart from scheduled resyncs, with its oldest age."""

    def test_resyncs_are_not_changes(self) -> None:
        q: QueueCore[str] = QueueCore(debounce=0.0)
        for key in ("a", "b", "c"):
            q.add_after(key, 5.0, now=0.0)
        q.add("d", now=1.0)
        assert (len(q), q.changes()) == (4, 1)
        assert q.oldest_change() == 1.0
        q.add("a", now=2.0)  # an event for a session that waited for its resync
        assert (len(q), q.changes()) == (4, 2)

    def test_a_change_is_pending_until_it_is_done(self) -> None:
        q: QueueCore[str] = QueueCore(debounce=0.0)
        q.add("a", now=1.0)
        q.add("a", now=3.0)  # the first change not applied yet decides the age
        assert q.pop(now=4.0) == "a"
        assert q.changes() == 0
        assert q.oldest_change() == 1.0  # being applied is still pending
        q.done("a")
        assert q.oldest_change() is None

    def test_each_key_tells_the_time_of_its_oldest_change(self) -> None:
        q: QueueCore[str] = QueueCore(debounce=0.0)
        q.add_after("resync", 0.0, now=0.0)
        q.add("a", now=1.0)
        q.add("a", now=2.0)
        assert (q.change_time("a"), q.change_time("resync"), q.change_time("x")) == (
            1.0,
            None,
            None,
        )
        assert q.pop(now=5.0) == "resync" and q.pop(now=5.0) == "a"
        q.add("a", now=6.0)  # while it is applied: the one being applied is older
        assert q.change_time("a") == 1.0
        q.done("a")
        assert q.change_time("a") == 6.0

    def test_a_failed_change_stays_pending_through_its_backoff(self) -> None:
        q: QueueCore[str] = QueueCore(debounce=0.0)
        q.add("a", now=1.0)
        assert q.pop(now=1.0) == "a"
        q.add_after("a", 30.0, now=2.0)  # the backoff
        q.done("a", settled=False)
        assert (q.changes(), q.oldest_change()) == (1, 1.0)
        assert q.pop(now=32.0) == "a"
        q.done("a")
        assert (q.changes(), q.oldest_change()) == (0, None)

    def test_a_failed_resync_is_not_a_change(self) -> None:
        q: QueueCore[str] = QueueCore(debounce=0.0)
        q.add_after("a", 0.0, now=0.0)
        assert q.pop(now=0.0) == "a"
        q.add_after("a", 30.0, now=1.0)
        q.done("a", settled=False)
        assert (len(q), q.changes(), q.oldest_change()) == (1, 0, None)

    def test_a_read_takes_in_what_made_the_key_dirty_while_it_waited(self) -> None:
        """Events that came while the worker waited for its token are in its read: the key is
        not queued again with their early due time (it would jump the line)."""
        q: QueueCore[str] = QueueCore(debounce=0.0)
        q.add("a", now=1.0)
        assert q.pop(now=1.0) == "a"
        q.add("a", now=1.5)  # while the worker waits for its token
        q.add("b", now=1.6)
        q.reading("a")
        assert "a" not in q
        assert q.oldest_change() == 1.0  # still being applied
        q.done("a")
        assert q.pop(now=2.0) == "b"
        assert q.pop(now=2.0) is None
        q.reading("c")  # not held by a worker: nothing happens

    def test_forget_drops_the_change(self) -> None:
        q: QueueCore[str] = QueueCore(debounce=0.0)
        q.add("a", now=1.0)
        q.forget("a")
        assert (q.changes(), q.oldest_change()) == (0, None)

    def test_work_queue_reports_the_age(self) -> None:
        clock = FakeClock(100.0)
        q: WorkQueue[str] = WorkQueue(debounce=0.5, clock=clock)
        assert q.oldest_change_age() == 0.0
        q.add("a")
        q.add_after("b", 10.0)
        clock.advance(7.0)
        assert q.oldest_change_age() == pytest.approx(7.0)
        assert (len(q), q.changes(), q.waiting()) == (2, 1, ("a", "b"))


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
    """Pacing below the quota, a burst that fits in it, reservations served FIFO."""

    def test_paces_below_the_quota(self) -> None:
        clock = FakeClock(0.0)
        bucket = TokenBucket(10, clock=clock)
        assert bucket.rate == pytest.approx(9.5)  # the default 5 % margin
        assert [bucket.reserve_now() for _ in range(3)] == pytest.approx([0.0, 1 / 9.5, 2 / 9.5])

    def test_asked_burst_is_lowered_to_what_fits_in_one_second(self) -> None:
        assert TokenBucket(10, burst=10).burst == 1  # 1 + floor(9.5) = 10
        assert TokenBucket(10, burst=10).requested_burst == 10
        assert TokenBucket(100, burst=20).burst == 5  # 5 + floor(95) = 100
        assert TokenBucket(100, burst=3).burst == 3
        assert max_burst(200, 190) == 10
        assert max_burst(10, 10) == 1  # never below one

    @pytest.mark.parametrize(("qps", "burst"), [(10, 1), (10, 10), (100, 20), (37, 5)])
    def test_no_one_second_window_holds_more_than_qps(self, qps: int, burst: int) -> None:
        """Bursts after idle spells, then saturation: every window starting at a send."""
        clock = FakeClock(0.0)
        bucket = TokenBucket(qps, burst, clock=clock)
        sends: list[float] = []
        rng = random.Random(qps)
        for _ in range(40):
            clock.advance(rng.choice([0.0, 0.01, 0.3, 1.5, 5.0]))  # idle spells, refills
            for _ in range(rng.randrange(1, 3 * qps)):
                sends.append(clock.now + bucket.reserve_now())
        sends.sort()
        for i, start in enumerate(sends):
            in_window = bisect.bisect_right(sends, start + 1.0) - i
            assert in_window <= qps, f"{in_window} requests in [{start:.3f}, {start + 1:.3f}]"

    def test_the_emulator_never_answers_429_even_to_early_arrivals(self) -> None:
        """The emulator's own bucket (burst = qps), limit equal to --qps, arrivals 3 ms early."""
        for margin, expect_429 in ((DEFAULT_MARGIN, False), (0.0, True)):
            clock = FakeClock(0.0)
            # burst=10 is what the daemon used to default to: 10 at once, then exactly 1/qps
            bucket = TokenBucket(10, 10, margin=margin, clock=clock)
            if margin == 0.0:
                bucket.burst = 10  # the old bucket, which did not lower the burst
                bucket._tokens = 10.0
            emulator_clock = ManualClock(0.0)
            emulator = Emulator(EmulatorConfig(qps=10), clock=emulator_clock)
            refused = 0
            for _ in range(5):
                clock.advance(3.0)  # an idle spell
                sends = sorted(clock.now + bucket.reserve_now() for _ in range(60))
                for k, at in enumerate(sends):
                    early = 0.003 if k % 7 == 3 else 0.0
                    emulator_clock.advance(max(0.0, at - early - emulator_clock()))
                    refused += emulator.admit(DEFAULT_APP_ID) is not None
                clock.now = sends[-1]
            assert (refused > 0) is expect_429, (margin, refused)

    def test_cancel_gives_the_token_back(self) -> None:
        clock = FakeClock(0.0)
        bucket = TokenBucket(1, 1, margin=0.0, clock=clock)
        bucket.reserve_now()
        assert bucket.reserve_now() == pytest.approx(1.0)
        bucket.cancel_now()
        assert bucket.reserve_now() == pytest.approx(1.0)
        clock.advance(10.0)
        assert bucket.available() == pytest.approx(1.0)  # never more than the burst

    @pytest.mark.parametrize(
        ("qps", "burst", "margin"), [(0, 1, 0.05), (-1, 1, 0.05), (1, 0, 0.05), (1, 1, 1.0)]
    )
    def test_bad_parameters(self, qps: float, burst: int, margin: float) -> None:
        with pytest.raises(ValueError):
            TokenBucket(qps, burst, margin=margin)

    def test_is_a_rate_limiter(self) -> None:
        assert isinstance(TokenBucket(), RateLimiter)

    @pytest.mark.anyio
    async def test_transport_takes_a_token_per_request(self) -> None:
        clock = FakeClock(0.0)
        slept: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)

        bucket = TokenBucket(5, 1, margin=0.0, clock=clock)
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.url.path)
            return httpx.Response(200, json={})

        transport = RateLimitedTransport(httpx.MockTransport(handler), bucket, sleep=fake_sleep)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            for i in range(3):
                await client.get(f"/r{i}")
        assert seen == ["/r0", "/r1", "/r2"]
        assert slept == [pytest.approx(0.2), pytest.approx(0.4)]

    @pytest.mark.anyio
    async def test_a_late_process_does_not_make_up_for_it_in_a_burst(self) -> None:
        """Tokens all due at once (the loop was stalled): the sends still keep the window."""

        class Stalled:
            qps, margin, rate = 10.0, 0.05, 9.5

            async def reserve(self) -> float:
                return 0.0

            async def cancel(self) -> None:
                pass

        clock = FakeClock(0.0)

        async def sleep(seconds: float) -> None:
            clock.advance(seconds)

        sent: list[float] = []

        def handler(request: httpx.Request) -> httpx.Response:
            sent.append(clock.now)
            return httpx.Response(200)

        transport = RateLimitedTransport(
            httpx.MockTransport(handler), Stalled(), sleep=sleep, clock=clock
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            await asyncio.gather(*(client.get(f"/r{i}") for i in range(35)))
        assert len(sent) == 35
        assert sent[:10] == [0.0] * 10
        assert all(later - first >= 1.05 for first, later in zip(sent, sent[10:], strict=False))

    @pytest.mark.anyio
    async def test_a_slow_answer_holds_its_slot_past_it(self) -> None:
        """The service counts a request between its send and its answer: ten slow ones
        answered late, then ten fast ones, never share a second (real clock, ~1.4 s)."""

        class Unpaced:
            qps, margin, rate = 10.0, 0.05, 9.5

            async def reserve(self) -> float:
                return 0.0

            async def cancel(self) -> None:
                pass

        answered: list[float] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            if int(request.url.path[2:]) < 10:
                await asyncio.sleep(0.3)
            answered.append(time.monotonic())
            return httpx.Response(200)

        transport = RateLimitedTransport(httpx.MockTransport(handler), Unpaced())
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            await asyncio.gather(*(client.get(f"/r{i}") for i in range(20)))
        answered.sort()
        for i, start in enumerate(answered):
            in_one_second = bisect.bisect_right(answered, start + 1.0) - i
            assert in_one_second <= 10, f"{in_one_second} answers within 1 s of {start:.3f}"

    @pytest.mark.anyio
    async def test_a_prepaid_token_covers_the_first_request_only(self) -> None:
        clock = FakeClock(0.0)
        slept: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)

        bucket = TokenBucket(5, 1, margin=0.0, clock=clock)
        assert await bucket.reserve() == 0.0  # the worker's reservation
        transport = RateLimitedTransport(
            httpx.MockTransport(lambda request: httpx.Response(200)), bucket, sleep=fake_sleep
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            with prepaid() as token:
                await client.get("/first")
                assert token.used and slept == []
                await client.get("/second")
        assert slept == [pytest.approx(0.2)]

    @pytest.mark.anyio
    async def test_a_cancelled_wait_returns_its_token(self) -> None:
        clock = FakeClock(0.0)
        bucket = TokenBucket(1, 1, clock=clock)
        bucket.reserve_now()
        waiter = asyncio.create_task(take(bucket))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert bucket.available() == pytest.approx(0.0)


class TestGiveBacks:
    """A token given back never lets a later reservation ahead of those already waiting."""

    def test_a_give_back_with_reservations_behind_it_is_lost(self) -> None:
        clock = FakeClock(0.0)
        bucket = TokenBucket(10, 1, margin=0.0, clock=clock)
        first = contextvars.copy_context()
        assert first.run(bucket.reserve_now) == 0.0
        assert bucket.reserve_now() == pytest.approx(0.1)
        assert bucket.reserve_now() == pytest.approx(0.2)
        first.run(bucket.cancel_now)  # the first changes its mind: two wait behind it
        # the next goes after the two that wait (0.3), not into the slot of the last (0.2)
        assert bucket.reserve_now() == pytest.approx(0.3)

    def test_the_latest_reservation_gives_its_token_back(self) -> None:
        clock = FakeClock(0.0)
        bucket = TokenBucket(10, 1, margin=0.0, clock=clock)
        assert bucket.reserve_now() == 0.0
        assert bucket.reserve_now() == pytest.approx(0.1)
        bucket.cancel_now()  # nobody behind it
        assert bucket.reserve_now() == pytest.approx(0.1)

    def test_with_nobody_waiting_any_give_back_counts(self) -> None:
        clock = FakeClock(0.0)
        bucket = TokenBucket(10, 1, margin=0.0, clock=clock)
        early = contextvars.copy_context()
        early.run(bucket.reserve_now)
        clock.advance(1.0)
        bucket.reserve_now()
        clock.advance(1.0)  # both tokens' slots have passed: the balance is back to the burst
        early.run(bucket.cancel_now)
        assert bucket.available() == pytest.approx(1.0)
