"""RateGate: the client-wide pace of requests (token bucket) and the shared 429 pause.

Every cancel path (HTTP, WebSocket RPC, bulk) passes through one gate per
client. The gate does two things:

* with ``rate`` set, it spaces requests with a token bucket (``burst``
  requests may go at once, then ``rate`` per second);
* after a 429, :meth:`RateGate.pause_for` holds back **every** caller until
  the server's ``Retry-After`` has passed, so a bulk cancel does not keep
  hammering a server that asked it to wait.

The bucket arithmetic lives in :class:`TokenBucket`, a pure object that takes
the current time as an argument, so it is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .errors import RateLimitError

__all__ = ["RateGate", "TokenBucket"]


class TokenBucket:
    """Token-bucket arithmetic with an injected clock; no I/O, no sleeping.

    :meth:`reserve` always takes a token, possibly going into debt, and says
    how long the caller must wait before using it. Reservations are served in
    the order they were made, so waiting callers are paced fairly.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate = float(rate)
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def _refill(self, now: float) -> None:
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            self._stamp = now

    def reserve(self, now: float) -> float:
        """Take one token; return the seconds to wait before using it (0.0: go now)."""
        self._refill(now)
        self._tokens -= 1.0
        if self._tokens >= 0.0:
            return 0.0
        return -self._tokens / self.rate

    def refund(self, now: float) -> None:
        """Give back a reserved token whose request was never sent."""
        self._refill(now)
        self._tokens = min(float(self.burst), self._tokens + 1.0)


class RateGate:
    """Client-wide pacing: an optional rate limit plus the shared 429 pause.

    ``rate`` is requests per second for :meth:`acquire` (``None``: no limit);
    ``burst`` how many may go at once (default: ``max(1, int(rate))``).
    ``clock`` is a monotonic clock in seconds (injectable for tests).
    """

    __slots__ = ("_bucket", "_clock", "_paused_until")

    def __init__(
        self,
        rate: float | None = None,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._paused_until = 0.0
        if rate is None:
            self._bucket: TokenBucket | None = None
        else:
            if burst is None:
                burst = max(1, int(rate))
            self._bucket = TokenBucket(rate, burst, clock())

    def __repr__(self) -> str:
        rate = None if self._bucket is None else self._bucket.rate
        return f"<RateGate rate={rate} paused_until={self._paused_until:.3f}>"

    @property
    def rate(self) -> float | None:
        """Requests per second, or ``None`` when only 429 pauses apply."""
        return None if self._bucket is None else self._bucket.rate

    @property
    def paused_until(self) -> float:
        """Clock time until which every caller waits (in the past when not paused)."""
        return self._paused_until

    def pause_for(self, seconds: float) -> None:
        """Hold back every caller for ``seconds`` from now.

        Extends an active pause, never shortens it. Non-positive values do nothing.
        """
        if seconds <= 0:
            return
        until = self._clock() + seconds
        if until > self._paused_until:
            self._paused_until = until

    def _check_deadline(self, wait: float, budget: float | None) -> None:
        """Raise :class:`RateLimitError` when waiting ``wait`` seconds outlasts ``budget``."""
        if budget is not None and wait >= budget:
            raise RateLimitError(
                f"rate limited for {wait:.3f}s more, past the call's deadline: not sent",
                status=None,
                retry_after=wait,
            )

    async def wait_unpaused(self, budget: float | None = None) -> None:
        """Return once no 429 pause is active (at once when none is).

        ``budget``: seconds the caller may wait at most (its deadline). A pause
        that outlasts it raises :class:`RateLimitError` (``retry_after`` = the
        pause left) at once instead of sleeping into a certain timeout.
        """
        start = self._clock()
        while True:
            now = self._clock()
            remaining = self._paused_until - now
            if remaining <= 0:
                return
            self._check_deadline(remaining, None if budget is None else budget - (now - start))
            await asyncio.sleep(remaining)

    async def acquire(self, budget: float | None = None) -> None:
        """Wait for this caller's turn: out of any pause, then for a rate slot.

        ``budget``: as for :meth:`wait_unpaused`; a rate slot further away than
        the budget raises :class:`RateLimitError` too and takes no slot.
        Cancellation while waiting gives the slot back.
        """
        clock = self._clock
        start = clock()
        if self._paused_until > start:
            await self.wait_unpaused(budget)
        bucket = self._bucket
        if bucket is None:
            return
        now = clock()
        delay = bucket.reserve(now)
        if delay > 0:
            if budget is not None and delay >= budget - (now - start):
                bucket.refund(now)
                self._check_deadline(delay, budget - (now - start))
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                bucket.refund(clock())
                raise
        if self._paused_until > clock():
            # A 429 arrived while this caller waited for its slot.
            await self.wait_unpaused(None if budget is None else budget - (clock() - start))
