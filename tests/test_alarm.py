"""Alarm: one loop timer for many waits; each future woken at its time, the heap kept small.

Cutoffs: the same timer for deadlines that cancel a task, told apart from other cancels.
"""

from __future__ import annotations

import asyncio
import sys

import pytest
from support import DEADLINE_SLACK, until

from cadenza_async._alarm import Alarm, Cutoffs


async def test_each_future_is_woken_at_its_own_time_in_order() -> None:
    loop = asyncio.get_running_loop()
    alarm = Alarm()
    now = loop.time()
    woken: list[tuple[int, float]] = []
    futures = []
    delays = [0.06, 0.02, 0.04]
    for i, delay in enumerate(delays):
        future: asyncio.Future[None] = loop.create_future()
        future.add_done_callback(lambda _f, i=i: woken.append((i, loop.time())))
        alarm.add(now + delay, future)
        futures.append(future)

    await asyncio.wait_for(asyncio.gather(*futures), 2.0)

    assert [i for i, _ in woken] == [1, 2, 0]
    for i, at in woken:
        # never before its time, and at its time (the loop's slack on a busy machine),
        # not at a later entry's nor at a timer re-armed late
        assert now + delays[i] <= at < now + delays[i] + DEADLINE_SLACK
    alarm.close()


async def test_a_future_done_early_is_not_touched_and_its_entry_is_dropped() -> None:
    loop = asyncio.get_running_loop()
    alarm = Alarm()
    early: asyncio.Future[None] = loop.create_future()
    alarm.add(loop.time() + 0.01, early)
    early.cancel()
    alarm.done()
    late: asyncio.Future[None] = loop.create_future()
    alarm.add(loop.time() + 0.03, late)

    await asyncio.wait_for(late, 2.0)

    assert early.cancelled()
    assert len(alarm) == 0
    alarm.close()


async def test_ended_waits_do_not_pile_up() -> None:
    loop = asyncio.get_running_loop()
    alarm = Alarm()
    far = loop.time() + 60
    for _ in range(10_000):  # each wait ends at once (proven), long before its time
        future: asyncio.Future[None] = loop.create_future()
        alarm.add(far, future)
        future.set_result(None)
        alarm.done()
    assert len(alarm) <= 128  # swept: about twice the live waits, at least 64
    alarm.close()
    assert len(alarm) == 0


async def test_one_loop_timer_serves_every_wait() -> None:
    loop = asyncio.get_running_loop()
    alarm = Alarm()
    before = sum(1 for h in loop._scheduled if not h.cancelled())  # type: ignore[attr-defined]
    start = loop.time()
    futures = []
    for i in range(100):  # later and later deadlines: the armed timer stays
        future: asyncio.Future[None] = loop.create_future()
        alarm.add(start + 10 + i, future)
        futures.append(future)
    live = sum(1 for h in loop._scheduled if not h.cancelled())  # type: ignore[attr-defined]
    assert live - before == 1
    alarm.close()
    for future in futures:
        future.cancel()


async def _bounded(cutoffs: Cutoffs, until: float, *, cancelled_first: bool = False) -> str:
    """An await bounded by a cutoff, as HttpApi uses one: "done", "timed out".

    ``cancelled_first``: a cancel from elsewhere is requested right after arming,
    before the cutoff rings (arm it due at once for the two to land together).
    """
    task = asyncio.current_task()
    assert task is not None
    cut = cutoffs.arm(until, task)
    if cancelled_first:
        asyncio.get_running_loop().call_soon(task.cancel)
    try:
        await asyncio.sleep(10)
        return "done"
    except asyncio.CancelledError:
        if not cutoffs.let_go(cut):
            raise
        return "timed out"
    finally:
        cutoffs.let_go(cut)


async def test_a_cutoff_ends_the_await_at_its_time_as_a_timeout() -> None:
    loop = asyncio.get_running_loop()
    cutoffs = Cutoffs()
    started = loop.time()
    outcomes = await asyncio.wait_for(
        asyncio.gather(_bounded(cutoffs, started + 0.05), _bounded(cutoffs, started + 0.02)), 2.0
    )
    assert outcomes == ["timed out", "timed out"]
    assert 0.05 <= loop.time() - started < 1.0
    if sys.version_info >= (3, 11):
        assert asyncio.current_task().cancelling() == 0
    cutoffs.close()


async def test_a_wait_ending_when_a_cut_lands_is_woken_before_the_cut_task() -> None:
    """A caller's deadline and its request's cutoff at the same instant: the caller's
    wake-up runs first, the cut task's cancellation after it (the cut armed first)."""
    loop = asyncio.get_running_loop()
    alarm, cutoffs = Alarm(), Cutoffs()
    when = loop.time() + 0.05
    steps: list[str] = []

    async def cut() -> None:
        assert await _bounded(cutoffs, when) == "timed out"
        steps.append("cut")

    async def wait() -> None:
        woken = loop.create_future()
        alarm.add(when, woken)
        await woken
        alarm.done()
        steps.append("woken")

    cutting = asyncio.ensure_future(cut())
    await asyncio.sleep(0)  # (the cut is armed before the wait)
    await asyncio.wait_for(asyncio.gather(cutting, wait()), 2.0)
    assert steps == ["woken", "cut"]
    alarm.close()
    cutoffs.close()


async def test_a_cutoff_let_go_in_time_cancels_nothing() -> None:
    loop = asyncio.get_running_loop()
    cutoffs = Cutoffs()
    task = asyncio.current_task()
    cut = cutoffs.arm(loop.time() + 0.02, task)
    assert cutoffs.let_go(cut) is False
    assert cutoffs.let_go(cut) is False  # (a second call too)
    # Its entry is dropped when the timer rings: once it has, nothing was cancelled (a
    # cancel would have ended this wait with CancelledError).
    await until(lambda: len(cutoffs) == 0)
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0
    cutoffs.close()


async def test_cuts_let_go_are_dropped_so_the_heap_stays_small() -> None:
    loop = asyncio.get_running_loop()
    cutoffs = Cutoffs()
    task = asyncio.current_task()
    for _ in range(10_000):
        cutoffs.let_go(cutoffs.arm(loop.time() + 60.0, task))
    assert len(cutoffs) <= 128
    cutoffs.close()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 cannot tell two cancels apart")
async def test_a_cancel_from_elsewhere_at_the_cutoff_goes_on() -> None:
    loop = asyncio.get_running_loop()
    cutoffs = Cutoffs()
    when = loop.time() + 0.02
    task = asyncio.ensure_future(_bounded(cutoffs, when))
    await asyncio.sleep(0)  # armed, sleeping
    # The caller's cancel is due at the same time as the cutoff: both land before
    # the task runs again, in whichever order.
    loop.call_at(when, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2.0)
    cutoffs.close()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 cannot tell two cancels apart")
async def test_a_cancel_requested_before_the_cutoff_fires_goes_on() -> None:
    """Cancels requested after arming are not the cutoff's, even if they come first."""
    loop = asyncio.get_running_loop()
    cutoffs = Cutoffs()
    # Due at once, the cutoff rings in the loop step after the cancel is requested.
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(_bounded(cutoffs, loop.time(), cancelled_first=True), 2.0)
    cutoffs.close()
