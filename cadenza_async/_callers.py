"""Callers: the callers waiting on one piece of work (a cancel, a submit), each on a future of its own.

Proof ends every caller's wait at once (:meth:`Callers.wake`); a definite
error ends it with that error (:meth:`Callers.fail`). Each caller sleeps with
:func:`sleep_until`, which an :class:`~cadenza_async._alarm.Alarm` ends at its
deadline, so cancelling one caller never disturbs the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from ._alarm import Alarm

__all__ = ["Callers", "CallersMixin", "sleep_until"]


class CallersMixin:
    """:class:`Callers`' behaviour for a slotted class that declares ``futures`` and
    ``error`` in its own ``__slots__`` (:class:`cadenza_async.engine.Job`)."""

    __slots__ = ()

    futures: list[asyncio.Future[None]] | None
    error: BaseException | None

    def __init__(self) -> None:
        # (made by the first caller that sleeps: most jobs are proven without one; the
        # slots are the subclass's, which mypy's slot check does not see)
        self.futures = None  # type: ignore[misc]
        self.error = None  # type: ignore[misc]  # definite failure: every caller raises it

    def wake(self) -> None:
        """Wake every caller now (proof came, the work failed, the client closed)."""
        futures = self.futures
        if futures:
            self.futures = None  # type: ignore[misc]
            for future in futures:
                if not future.done():
                    future.set_result(None)

    def fail(self, error: BaseException) -> None:
        """End the work with ``error`` (the first one wins) and wake every caller."""
        if self.error is None:
            self.error = error  # type: ignore[misc]
        self.wake()


class Callers(CallersMixin):
    """The wake-up futures of the callers of one piece of work, and its definite error."""

    __slots__ = ("error", "futures")


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)


async def sleep_until(
    callers: CallersMixin, alarm: Alarm, until: float, also: asyncio.Future[Any] | None = None
) -> None:
    """Sleep until ``until`` (event-loop time); woken early by ``callers`` or when ``also`` is done."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    futures = callers.futures
    if futures is None:
        callers.futures = [future]  # type: ignore[misc]
    else:
        futures.append(future)
    alarm.add(until, future)
    # (the callback is made in a helper: a closure here would cost every sleep a cell)
    wake = None if also is None else _wake_when_done(also, future)
    try:
        await future  # this caller's own future: cancelling it harms no other caller
    finally:
        alarm.done()
        if wake is not None and also is not None:
            also.remove_done_callback(wake)
        futures = callers.futures
        if futures:
            with contextlib.suppress(ValueError):
                futures.remove(future)


def _wake_when_done(
    also: asyncio.Future[Any], future: asyncio.Future[None]
) -> Callable[[asyncio.Future[Any]], None]:
    """Have ``also`` end ``future`` when it is done; the callback (to remove it after)."""

    def wake(_: asyncio.Future[Any]) -> None:
        _expire(future)

    also.add_done_callback(wake)
    return wake
