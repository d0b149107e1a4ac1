"""OrderUpdates (``cadenza_async/updates.py``) on its own: fan-out, bounded buffers, drops, close.

No simulator and no client: updates are published by hand and read through
``subscribe()``, the iterator behind ``CadenzaClient.order_updates()``.
Synchronisation is by awaiting the readers themselves, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator

import pytest

from cadenza_async.models import TradeOrder
from cadenza_async.updates import OrderUpdates

ACCOUNT = "550e8400-e29b-41d4-a716-446655440000"
STEP = 5.0


def order(n: int, status: str = "OPEN") -> TradeOrder:
    return TradeOrder(trade_order_id=f"order-{n}", trading_account_id=ACCOUNT, status=status)


async def registered(
    updates: OrderUpdates,
) -> tuple[AsyncGenerator[TradeOrder, None], asyncio.Future[TradeOrder]]:
    """A reader that has registered and waits for its next update (that wait is the future).

    While the future is pending, the next update published goes into it as
    soon as the loop runs; once it is done, the reader reads nothing until
    the test asks again, so its buffer fills.
    """
    reader = updates.subscribe()
    nxt = asyncio.ensure_future(anext(reader))
    await asyncio.sleep(0)  # one loop turn: the reader runs up to its wait
    assert updates, "the reader did not register"
    return reader, nxt


async def read(reader: AsyncGenerator[TradeOrder, None], n: int) -> list[str]:
    return [(await asyncio.wait_for(anext(reader), STEP)).trade_order_id for _ in range(n)]


def ids(*numbers: int) -> list[str]:
    return [f"order-{n}" for n in numbers]


async def test_without_readers_an_update_goes_nowhere_and_nothing_is_dropped():
    updates = OrderUpdates(size=2)
    assert not updates
    for n in range(5):
        updates.on_order(order(n), ACCOUNT)
        updates.publish(order(n))
    assert updates.dropped == 0


async def test_a_reader_counts_as_present_while_it_iterates_and_not_after_it_stops():
    updates = OrderUpdates(size=4)
    reader, first = await registered(updates)
    assert updates
    updates.publish(order(1))
    assert (await asyncio.wait_for(first, STEP)).trade_order_id == "order-1"
    await reader.aclose()
    assert not updates


async def test_every_reader_gets_every_update_in_publication_order():
    updates = OrderUpdates(size=16)
    one, first_one = await registered(updates)
    two, first_two = await registered(updates)
    async with contextlib.aclosing(one), contextlib.aclosing(two):
        for n in range(5):
            updates.on_order(order(n), ACCOUNT)  # the stream's listener: the account is not used
        assert (await first_one).trade_order_id == "order-0"
        assert (await first_two).trade_order_id == "order-0"
        assert await read(one, 4) == ids(1, 2, 3, 4)
        assert await read(two, 4) == ids(1, 2, 3, 4)
    assert updates.dropped == 0


async def test_a_reader_sees_only_updates_published_after_it_registered():
    updates = OrderUpdates(size=4)
    updates.publish(order(0))
    reader, first = await registered(updates)
    async with contextlib.aclosing(reader):
        updates.publish(order(1))
        assert (await asyncio.wait_for(first, STEP)).trade_order_id == "order-1"


async def test_a_waiting_reader_is_woken_by_the_next_update():
    updates = OrderUpdates(size=4)
    reader, first = await registered(updates)
    async with contextlib.aclosing(reader):
        await asyncio.sleep(0)
        assert not first.done()  # nothing published: it waits
        updates.publish(order(7))
        assert (await asyncio.wait_for(first, STEP)).trade_order_id == "order-7"
        second = asyncio.ensure_future(anext(reader))
        await asyncio.sleep(0)
        assert not second.done()
        updates.publish(order(8))
        assert (await asyncio.wait_for(second, STEP)).trade_order_id == "order-8"


async def test_a_full_buffer_drops_the_oldest_updates_and_counts_them():
    updates = OrderUpdates(size=3)
    reader, first = await registered(updates)
    async with contextlib.aclosing(reader):
        for n in range(10):  # publishing never waits for the reader
            updates.publish(order(n))
        assert updates.dropped == 10 - 3
        # The reader keeps the newest three, in order.
        assert (await asyncio.wait_for(first, STEP)).trade_order_id == "order-7"
        assert await read(reader, 2) == ids(8, 9)


async def test_only_the_slow_reader_loses_updates_and_the_count_is_what_it_lost():
    updates = OrderUpdates(size=2)
    fast, fast_first = await registered(updates)
    slow, slow_first = await registered(updates)
    async with contextlib.aclosing(fast), contextlib.aclosing(slow):
        updates.publish(order(0))
        assert (await asyncio.wait_for(fast_first, STEP)).trade_order_id == "order-0"
        assert (await asyncio.wait_for(slow_first, STEP)).trade_order_id == "order-0"
        # From here on the slow reader does not read.
        for n in range(1, 6):
            updates.publish(order(n))
            assert await read(fast, 1) == ids(n)  # the fast reader keeps up
        assert updates.dropped == 5 - 2  # all of them the slow reader's
        assert await read(slow, 2) == ids(4, 5)


async def test_overflow_is_logged_once_for_a_burst_with_the_count_so_far(caplog):
    updates = OrderUpdates(size=1)
    reader, first = await registered(updates)
    async with contextlib.aclosing(reader):
        with caplog.at_level(logging.WARNING, logger="cadenza_async.updates"):
            for n in range(50):
                updates.publish(order(n))
        warnings = [r for r in caplog.records if r.name == "cadenza_async.updates"]
        assert len(warnings) == 1  # at most once a second, not once per drop
        assert warnings[0].levelno == logging.WARNING
        assert "too slow" in warnings[0].getMessage()
        assert "1 updates dropped" in warnings[0].getMessage()  # the first drop triggers it
        assert updates.dropped == 49
        assert (await asyncio.wait_for(first, STEP)).trade_order_id == "order-49"


async def test_close_ends_each_reader_after_what_it_has_buffered():
    updates = OrderUpdates(size=8)
    reader, first = await registered(updates)
    async with contextlib.aclosing(reader):
        for n in range(3):
            updates.publish(order(n))
        updates.close()
        assert (await asyncio.wait_for(first, STEP)).trade_order_id == "order-0"
        assert await read(reader, 2) == ids(1, 2)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(reader), STEP)
    assert not updates


async def test_close_wakes_a_reader_waiting_for_an_update():
    updates = OrderUpdates(size=8)
    reader, first = await registered(updates)
    async with contextlib.aclosing(reader):
        await asyncio.sleep(0)
        assert not first.done()
        updates.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(first, STEP)
    assert not updates


async def test_a_reader_that_stops_mid_wait_is_removed_and_no_longer_counts_drops():
    updates = OrderUpdates(size=1)
    reader, first = await registered(updates)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await reader.aclose()
    assert not updates
    for n in range(5):
        updates.publish(order(n))
    assert updates.dropped == 0


class _Stream:
    """Stands in for OrderStream's listener registry (listen, unlisten)."""

    def __init__(self) -> None:
        self.listeners: list[object] = []

    def listen(self, listener: object) -> None:
        self.listeners.append(listener)

    def unlisten(self, listener: object) -> None:
        self.listeners.remove(listener)


async def test_listens_to_the_stream_only_while_someone_reads():
    """Each order event calls every stream listener: none for updates nobody reads."""
    updates = OrderUpdates(size=8)
    stream = _Stream()
    updates.attach_stream(stream)  # type: ignore[arg-type]
    assert stream.listeners == []
    first, first_next = await registered(updates)
    second, second_next = await registered(updates)
    assert stream.listeners == [updates.on_order]  # once, for both readers
    updates.on_order(order(1), ACCOUNT)
    assert (await first_next).trade_order_id == (await second_next).trade_order_id == "order-1"
    await first.aclose()
    assert stream.listeners == [updates.on_order]
    await second.aclose()
    assert stream.listeners == []
