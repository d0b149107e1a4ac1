"""Callers: the callers waiting on one piece of work, each on a future of its own.

What a caller learns (woken, the work's error), that one caller leaving disturbs no
other, and that sleeping callers leave nothing behind in the alarm.
"""

from __future__ import annotations

import asyncio

import pytest
from support import turns_until

from cadenza_async._alarm import Alarm
from cadenza_async._callers import Callers, sleep_until

BOUND = 5.0  # seconds: what bounds each wait here (every test ends long before)


@pytest.fixture
def alarm():
    made = Alarm()
    yield made
    made.close()


async def sleepers(callers: Callers, alarm: Alarm, n: int, until: float) -> list[asyncio.Task]:
    """``n`` callers asleep on ``callers`` until ``until``, each in a task of its own."""
    tasks = [asyncio.ensure_future(sleep_until(callers, alarm, until)) for _ in range(n)]
    await turns_until(lambda: len(callers.futures or ()) == n)  # each registers in its first step
    return tasks


def test_fail_keeps_the_first_error() -> None:
    callers = Callers()
    first, second = ValueError("first"), RuntimeError("second")
    callers.fail(first)
    callers.fail(second)
    assert callers.error is first


def test_wake_with_nobody_asleep_does_nothing() -> None:
    callers = Callers()
    callers.wake()
    assert callers.futures is None
    assert callers.error is None


async def test_wake_ends_every_sleeping_caller_at_once(alarm: Alarm) -> None:
    loop = asyncio.get_running_loop()
    callers = Callers()
    tasks = await sleepers(callers, alarm, 3, loop.time() + 60)
    callers.wake()
    done, _ = await asyncio.wait(tasks, timeout=BOUND)
    assert done == set(tasks)
    assert callers.futures is None


async def test_fail_wakes_every_sleeping_caller_with_the_error_kept(alarm: Alarm) -> None:
    loop = asyncio.get_running_loop()
    callers = Callers()
    tasks = await sleepers(callers, alarm, 2, loop.time() + 60)
    error = ValueError("refused")
    callers.fail(error)
    done, _ = await asyncio.wait(tasks, timeout=BOUND)
    assert done == set(tasks)
    assert callers.error is error


async def test_a_sleeping_caller_wakes_at_its_time(alarm: Alarm) -> None:
    loop = asyncio.get_running_loop()
    until = loop.time() + 0.05
    await asyncio.wait_for(sleep_until(Callers(), alarm, until), BOUND)
    assert loop.time() >= until


async def test_a_caller_that_leaves_disturbs_no_other(alarm: Alarm) -> None:
    loop = asyncio.get_running_loop()
    callers = Callers()
    leaving, staying = await sleepers(callers, alarm, 2, loop.time() + 60)
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    assert leaving.cancelled()
    assert not staying.done()
    assert callers.futures is not None
    assert len(callers.futures) == 1  # the leaver's future is gone
    callers.wake()
    await asyncio.wait_for(staying, BOUND)


async def test_a_caller_woken_by_also_leaves_the_others_asleep(alarm: Alarm) -> None:
    loop = asyncio.get_running_loop()
    callers = Callers()
    (other,) = await sleepers(callers, alarm, 1, loop.time() + 60)
    also: asyncio.Future[None] = loop.create_future()
    woken = asyncio.ensure_future(sleep_until(callers, alarm, loop.time() + 60, also))
    await turns_until(lambda: len(callers.futures or ()) == 2)
    also.set_result(None)
    await asyncio.wait_for(woken, BOUND)
    assert not other.done()
    callers.wake()
    await asyncio.wait_for(other, BOUND)


async def test_also_done_before_the_sleep_ends_it_at_once(alarm: Alarm) -> None:
    loop = asyncio.get_running_loop()
    also: asyncio.Future[None] = loop.create_future()
    also.set_result(None)
    await asyncio.wait_for(sleep_until(Callers(), alarm, loop.time() + 60, also), BOUND)


async def test_the_alarm_does_not_grow_with_callers_woken_early(alarm: Alarm) -> None:
    """1,000 sleeps each ended by proof long before their time: the alarm keeps no more than
    its sweep threshold of ended entries (it would hold 1,000 if an ended sleep counted as live)."""
    loop = asyncio.get_running_loop()
    callers = Callers()
    far = loop.time() + 60
    for _ in range(1_000):
        (task,) = await sleepers(callers, alarm, 1, far)
        callers.wake()
        await asyncio.wait_for(task, BOUND)
    assert len(alarm) <= 64
    # and a caller leaving (cancelled) counts as ended too
    for _ in range(1_000):
        (task,) = await sleepers(callers, alarm, 1, far)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(alarm) <= 64
