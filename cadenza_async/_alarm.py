"""Alarm: one event-loop timer for many waits, each woken at its own deadline; Cutoffs: the same
for deadlines that cancel a task (an HTTP request's).

A confirmed cancel usually ends long before its deadline; a loop timer per
wait would then be created and cancelled for nothing, and the loop keeps
cancelled timers in its heap until their time (thousands at a high cancel
rate). The alarm keeps ``(when, future)`` entries in one heap and arms a
single loop timer for the earliest; with equal timeouts deadlines only grow,
so a new wait almost never re-arms it. Entries whose wait is over are
dropped lazily (at the top of the heap, or in a sweep once they outnumber
the live ones), so the heap holds no more than about twice the waits in
progress.
"""

from __future__ import annotations

import abc
import asyncio
import heapq
import math
import sys
from typing import Any

__all__ = ["Alarm", "Cutoffs"]

_SWEEP_MIN = 64  # a heap smaller than this is never swept


class _OneTimer(abc.ABC):
    """One event-loop timer, armed for the earliest of many deadlines kept by a subclass.

    The subclass keeps its entries and says, at each ring, what is due
    (:meth:`_due`) and when the next entry's time is.
    """

    __slots__ = ("_armed", "_loop", "_seq", "_timer")

    #: How long after the earliest entry's time the timer rings.
    _LAG = 0.0

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None
        self._armed = math.inf
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def _arm(self, when: float) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        self._armed = when
        self._timer = loop.call_at(when + self._LAG, self._ring)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._armed = math.inf

    def _ring(self) -> None:
        self._timer = None
        self._armed = math.inf
        assert self._loop is not None
        after = self._due(self._loop.time())
        if after is not None:
            self._arm(after)

    @abc.abstractmethod
    def _due(self, now: float) -> float | None:
        """Act on every entry due at ``now``; the time of the next entry, or ``None``."""


class Alarm(_OneTimer):
    """Sets each registered future's result (``None``) at its time, if nobody did before."""

    __slots__ = ("_heap", "_live")

    def __init__(self) -> None:
        super().__init__()
        self._heap: list[tuple[float, int, asyncio.Future[Any]]] = []
        self._live = 0

    def __len__(self) -> int:
        """Entries held (live waits plus ended ones not dropped yet)."""
        return len(self._heap)

    def add(self, when: float, future: asyncio.Future[Any]) -> None:
        """Wake ``future`` at ``when`` (event-loop time); pair with :meth:`done` when the wait ends."""
        self._seq += 1
        self._live += 1
        heap = self._heap
        heapq.heappush(heap, (when, self._seq, future))
        if when < self._armed:
            self._arm(when)
        elif len(heap) >= _SWEEP_MIN and len(heap) > 2 * self._live:
            self._sweep()

    def done(self) -> None:
        """One wait ended (woken, or left): its entry may be dropped from now on."""
        self._live -= 1

    def close(self) -> None:
        """Stop the timer and forget every entry (the waits are woken otherwise)."""
        self._stop()
        self._heap.clear()

    def _due(self, now: float) -> float | None:
        heap = self._heap
        while heap and (heap[0][0] <= now or heap[0][2].done()):
            _, _, future = heapq.heappop(heap)
            if not future.done():
                future.set_result(None)
        return heap[0][0] if heap else None

    def _sweep(self) -> None:
        """Drop the entries of waits that are over (their futures are done)."""
        self._heap = [entry for entry in self._heap if not entry[2].done()]
        heapq.heapify(self._heap)


class Cutoffs(_OneTimer):
    """Cancels each armed task at its time unless let go before: a deadline for a block of awaits.

    What ``asyncio.timeout()`` does for one block, with one loop timer for
    every block in progress (a loop timer each is a handle made and
    cancelled per HTTP request). Use::

        cut = cutoffs.arm(when, task)
        try:
            ...  # the awaits the deadline bounds
        except asyncio.CancelledError:
            if not cutoffs.let_go(cut):
                raise  # not (only) the cutoff's cancel: it goes on
            ...  # the deadline came: a timeout
        finally:
            cutoffs.let_go(cut)

    A cut lands a tenth of a millisecond after its time (``_LAG``), so that a
    wait ending at the same instant (an :class:`Alarm`'s: a caller's deadline)
    is woken first: when many calls reach their deadline at once, their callers
    learn it before the loop spends its time tearing the cut requests down.

    On Python 3.10, which cannot tell two cancellations apart, a cancel from
    elsewhere in the same loop step as the cutoff's is taken for the
    cutoff's (as aiohttp's own timeout does there). Entries of cuts let go
    are dropped lazily, as the alarm's are.
    """

    __slots__ = ("_before", "_fired", "_heap", "_live")

    _LAG = 1e-4

    def __init__(self) -> None:
        super().__init__()
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, asyncio.Task[Any]] = {}  # cut -> its task, until let go or fired
        # cut -> the cancels its task already had when armed (only when there were any)
        self._before: dict[int, int] = {}
        # cut -> its task and the cancels it had when armed, once fired, until let go
        self._fired: dict[int, tuple[asyncio.Task[Any], int]] = {}

    def __len__(self) -> int:
        """Entries held (cuts armed plus those let go and not dropped yet)."""
        return len(self._heap)

    def arm(self, when: float, task: asyncio.Task[Any]) -> int:
        """Cancel ``task`` at ``when`` (event-loop time) unless :meth:`let_go` comes first."""
        self._seq = cut = self._seq + 1
        live = self._live
        live[cut] = task
        if sys.version_info >= (3, 11) and task.cancelling():
            self._before[cut] = task.cancelling()  # (not the cut's to undo)
        heap = self._heap
        if heap and heap[0][1] not in live:
            # The earliest cut was let go (the usual: requests end in about the
            # order they start): this entry takes its place, in one step.
            heapq.heapreplace(heap, (when, cut))
        else:
            heapq.heappush(heap, (when, cut))
        if when < self._armed:
            self._arm(when)
        elif len(heap) >= _SWEEP_MIN and len(heap) > 2 * len(live):
            self._heap = [entry for entry in heap if entry[1] in live]
            heapq.heapify(self._heap)
        return cut

    def let_go(self, cut: int) -> bool:
        """Disarm ``cut``; True when it fired and its cancel is the only one (undone now).

        A second call returns False.
        """
        if self._live.pop(cut, None) is not None:
            if self._before:
                self._before.pop(cut, None)
            return False  # the usual case: let go in time
        fired = self._fired.pop(cut, None)
        if fired is None:
            return False
        if sys.version_info >= (3, 11):
            task, others = fired
            left: int = task.uncancel()
            return left <= others
        return True

    def close(self) -> None:
        """Stop the timer and forget every cut."""
        self._stop()
        self._heap.clear()
        self._live.clear()
        self._before.clear()
        self._fired.clear()

    def _due(self, now: float) -> float | None:
        heap = self._heap
        live = self._live
        while heap and (heap[0][0] <= now or heap[0][1] not in live):
            _, cut = heapq.heappop(heap)
            task = live.pop(cut, None)
            if task is not None:
                # Cancels requested since the cut was armed are not the cut's:
                # let_go compares the count against the one at arming.
                self._fired[cut] = (task, self._before.pop(cut, 0) if self._before else 0)
                task.cancel()
        return heap[0][0] if heap else None
