"""Alarm: one loop timer for many waits; each future woken at its time, the heap kept small."""

from __future__ import annotations

import asyncio

from cadenza_async._alarm import Alarm


async def test_each_future_is_woken_at_its_own_time_in_order() -> None:
    loop = asyncio.get_running_loop()
    alarm = Alarm()
    now = loop.time()
    woken: list[int] = []
    futures = []
    for i, delay in enumerate([0.06, 0.02, 0.04]):
        future: asyncio.Future[None] = loop.create_future()
        future.add_done_callback(lambda _f, i=i: woken.append(i))
        alarm.add(now + delay, future)
        futures.append(future)

    await asyncio.wait_for(asyncio.gather(*futures), 2.0)

    assert woken == [1, 2, 0]
    assert loop.time() - now >= 0.06
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
