"""RateGate and its pure TokenBucket: pacing arithmetic with a fake clock, shared 429 pauses."""

from __future__ import annotations

import asyncio

import pytest

from cadenza_async._ratelimit import RateGate, TokenBucket


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_bucket_lets_a_burst_through_then_spaces_requests_at_the_rate():
    bucket = TokenBucket(rate=10.0, burst=3, now=0.0)

    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve(0.0) == pytest.approx(0.1)
    assert bucket.reserve(0.0) == pytest.approx(0.2)  # queued behind the previous one


def test_bucket_refills_with_time_but_never_above_burst():
    bucket = TokenBucket(rate=2.0, burst=2, now=0.0)
    bucket.reserve(0.0)
    bucket.reserve(0.0)

    assert bucket.reserve(0.5) == 0.0  # one slot came back in half a second
    assert bucket.reserve(0.5) == pytest.approx(0.5)  # the next one is half a second away
    # A long idle time refills up to the burst and no further.
    assert [bucket.reserve(100.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


def test_bucket_refund_returns_a_reserved_slot():
    bucket = TokenBucket(rate=1.0, burst=1, now=0.0)
    bucket.reserve(0.0)
    assert bucket.reserve(0.0) == pytest.approx(1.0)

    bucket.refund(0.0)

    assert bucket.reserve(0.0) == pytest.approx(1.0)  # the refunded slot is reused


def test_bucket_sustains_exactly_the_rate_over_time():
    bucket = TokenBucket(rate=5.0, burst=1, now=0.0)
    now = 0.0
    for _ in range(50):
        now += bucket.reserve(now)
    # 50 requests at 5/s with a burst of 1: the 50th goes at 49/5 s.
    assert now == pytest.approx(49 / 5)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_bucket_rejects_nonsense_settings(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst, now=0.0)


def test_pause_extends_but_never_shortens():
    clock = FakeClock(100.0)
    gate = RateGate(clock=clock)

    gate.pause_for(5.0)
    assert gate.paused_until == 105.0
    gate.pause_for(1.0)
    assert gate.paused_until == 105.0
    clock.now = 104.0
    gate.pause_for(3.0)
    assert gate.paused_until == 107.0
    gate.pause_for(0.0)
    gate.pause_for(-4.0)
    assert gate.paused_until == 107.0


async def test_acquire_without_rate_or_pause_returns_at_once():
    gate = RateGate()
    for _ in range(1000):
        await gate.acquire()
    assert gate.rate is None


async def test_acquire_waits_out_an_active_pause():
    gate = RateGate()
    gate.pause_for(30.0)
    waiter = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_acquire_returns_once_the_pause_has_passed():
    clock = FakeClock(0.0)
    gate = RateGate(clock=clock)
    gate.pause_for(10.0)
    clock.now = 10.0  # time has passed: no wait at all
    await asyncio.wait_for(gate.acquire(), timeout=5)


async def test_cancelled_acquire_refunds_its_rate_slot():
    clock = FakeClock(0.0)
    gate = RateGate(rate=1.0, burst=1, clock=clock)
    await gate.acquire()  # takes the only token
    waiter = asyncio.ensure_future(gate.acquire())  # reserves the next one, in debt
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    assert gate._bucket is not None
    # The slot came back: the next reservation waits one interval, not two.
    assert gate._bucket.reserve(clock.now) == pytest.approx(1.0)
