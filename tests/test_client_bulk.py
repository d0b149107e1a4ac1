"""Fire-and-forget and bulk cancels against the simulator: nothing lost, order kept, limits held."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest
from support import client_for, other_tasks, waiters_held

from cadenza_async import (
    CadenzaClient,
    CancelResult,
    ClientClosedError,
    InvalidOrderIdError,
    OrderNotFoundError,
    TradeOrder,
)
from cadenza_async.http import HttpApi


class InFlight:
    """Counts concurrent calls of the HTTP cancel."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0
        self.peak = 0
        self.calls = 0
        original = HttpApi.cancel_order

        async def counting(
            api: HttpApi, order_id: str, trading_account_id: str | None = None, **kw: Any
        ) -> TradeOrder:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)
            try:
                return await original(api, order_id, trading_account_id, **kw)
            finally:
                self.now -= 1

        monkeypatch.setattr(HttpApi, "cancel_order", counting)


# -- fire and forget ---------------------------------------------------------------------


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_cancel_nowait_handle_resolves_to_the_confirmed_result(cadenza_sim):
    order = cadenza_sim.create_order()
    seen: list[Any] = []
    async with client_for(cadenza_sim) as client:
        handle = client.cancel_nowait(order.trade_order_id)
        assert not handle.done()
        with pytest.raises(asyncio.InvalidStateError):
            handle.result()
        handle.add_done_callback(seen.append)
        result = await handle
        assert handle.done()
        assert handle.exception() is None
        assert handle.result() is result
    assert isinstance(result, CancelResult)
    assert result.cancelled
    assert result.order_id == order.trade_order_id
    assert seen == [handle]


async def test_background_failure_nobody_awaited_is_reported_once(cadenza_sim, caplog):
    errors: list[tuple[BaseException, str]] = []
    caplog.set_level(logging.ERROR, logger="cadenza_async")
    async with client_for(
        cadenza_sim, on_background_error=lambda exc, oid: errors.append((exc, oid))
    ) as client:
        client.cancel_nowait("00000000-0000-4000-8000-00000000dead")
        await client.drain()
    assert len(errors) == 1
    exc, oid = errors[0]
    assert oid == "00000000-0000-4000-8000-00000000dead"
    assert isinstance(exc, OrderNotFoundError)
    assert exc.order_id == "00000000-0000-4000-8000-00000000dead"
    reports = [
        r for r in caplog.records if "00000000-0000-4000-8000-00000000dead" in r.getMessage()
    ]
    assert len(reports) == 1


async def test_awaited_background_failure_is_not_reported_again(cadenza_sim):
    errors: list[Any] = []
    async with client_for(
        cadenza_sim, on_background_error=lambda exc, oid: errors.append(oid)
    ) as client:
        handle = client.cancel_nowait("00000000-0000-4000-8000-00000000dea1")
        with pytest.raises(OrderNotFoundError):
            await handle
        await client.drain()
    assert errors == []


async def test_cancel_nowait_refuses_bad_ids_at_once_and_sends_nothing(cadenza_sim):
    async with client_for(cadenza_sim) as client:
        for bad in ["", "a/b", "x\r\ny", 42]:
            with pytest.raises(ValueError):
                client.cancel_nowait(bad)  # type: ignore[arg-type]
        await client.drain()
    assert cadenza_sim.cancel_requests == []


@pytest.mark.cadenza_sim(cancel_delay=0.02)
async def test_exit_drains_150_fire_and_forget_cancels_each_reaching_the_exchange(cadenza_sim):
    orders = cadenza_sim.create_orders(150)
    errors: list[Any] = []
    handles = []
    async with client_for(
        cadenza_sim, on_background_error=lambda exc, oid: errors.append((oid, exc))
    ) as client:
        handles = [client.cancel_nowait(o.trade_order_id) for o in orders]
        # leave at once: the exit must drain them
    assert errors == []
    assert all(h.done() for h in handles)
    assert all(h.result().cancelled for h in handles)
    for order in orders:
        assert cadenza_sim.get_order(order.trade_order_id).status == "CANCELLED"
        assert cadenza_sim.cancels_applied[order.trade_order_id] == 1


@pytest.mark.cadenza_sim(cancel_delay=30.0)
async def test_drain_deadline_reports_every_unfinished_cancel_and_leaves_no_task(
    cadenza_sim, caplog
):
    orders = cadenza_sim.create_orders(5)
    errors: list[tuple[BaseException, str]] = []
    before = other_tasks()
    caplog.set_level(logging.ERROR, logger="cadenza_async")
    async with client_for(
        cadenza_sim,
        drain_timeout=0.2,
        on_background_error=lambda exc, oid: errors.append((exc, oid)),
    ) as client:
        for o in orders:
            client.cancel_nowait(o.trade_order_id)
    assert sorted(oid for _, oid in errors) == sorted(o.trade_order_id for o in orders)
    assert all(isinstance(exc, ClientClosedError) for exc, _ in errors)
    assert any("unconfirmed" in r.getMessage() for r in caplog.records)
    assert other_tasks() <= before
    # every cancel reached the exchange before the client gave up waiting
    assert sorted(oid for oid, _ in cadenza_sim.cancel_requests) == sorted(
        o.trade_order_id for o in orders
    )


async def test_cancel_nowait_after_close_raises_client_closed(cadenza_sim):
    client = client_for(cadenza_sim)
    async with client:
        pass
    with pytest.raises(ClientClosedError):
        client.cancel_nowait("any-order")


# -- bulk ----------------------------------------------------------------------------------


@pytest.mark.cadenza_sim(cancel_delay=0.0)
async def test_cancel_many_of_1000_keeps_input_order_and_puts_the_error_in_place(cadenza_sim):
    orders = cadenza_sim.create_orders(1000)
    ids = [o.trade_order_id for o in orders]
    ids.insert(500, "00000000-0000-4000-8000-00000000dea2")
    async with client_for(cadenza_sim) as client:
        results = await client.cancel_many(ids, concurrency=64)
    assert len(results) == 1001
    missing = results[500]
    assert isinstance(missing, OrderNotFoundError)
    assert missing.order_id == "00000000-0000-4000-8000-00000000dea2"
    for oid, item in zip(ids[:500] + ids[501:], results[:500] + results[501:], strict=True):
        assert isinstance(item, CancelResult)
        assert item.order_id == oid
        assert item.cancelled


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_cancel_many_in_flight_never_exceeds_concurrency(cadenza_sim, monkeypatch):
    orders = cadenza_sim.create_orders(120)
    cadenza_sim.slow_rest(0.005)
    counter = InFlight(monkeypatch)
    async with client_for(cadenza_sim) as client:
        results = await client.cancel_many([o.trade_order_id for o in orders], concurrency=8)
    assert all(isinstance(r, CancelResult) and r.cancelled for r in results)
    assert counter.calls == 120
    assert counter.peak == 8  # reached, never exceeded


async def test_cancel_many_cancels_repeated_ids_once(cadenza_sim):
    a, b = cadenza_sim.create_orders(2)
    ids = [a.trade_order_id, b.trade_order_id, a.trade_order_id, a.trade_order_id]
    async with client_for(cadenza_sim) as client:
        results = await client.cancel_many(ids)
    assert [r.order_id for r in results] == ids  # type: ignore[union-attr]
    assert results[0] is results[2] is results[3]
    assert sorted(oid for oid, _ in cadenza_sim.cancel_requests) == sorted(
        [a.trade_order_id, b.trade_order_id]
    )


async def test_cancel_many_reports_bad_ids_in_place_without_sending_them(cadenza_sim):
    good = cadenza_sim.create_order()
    async with client_for(cadenza_sim) as client:
        results = await client.cancel_many(["", good.trade_order_id, "../x"])
    assert isinstance(results[0], InvalidOrderIdError)
    assert isinstance(results[1], CancelResult)
    assert isinstance(results[2], InvalidOrderIdError)
    assert [oid for oid, _ in cadenza_sim.cancel_requests] == [good.trade_order_id]


async def test_cancel_many_without_confirmation_returns_the_http_orders(cadenza_sim):
    orders = cadenza_sim.create_orders(3)
    async with client_for(cadenza_sim) as client:
        results = await client.cancel_many([o.trade_order_id for o in orders], confirm=False)
    assert all(isinstance(r, TradeOrder) for r in results)
    assert [r.trade_order_id for r in results] == [o.trade_order_id for o in orders]  # type: ignore[union-attr]


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_cancel_many_iter_yields_every_outcome_once_with_its_order_id(cadenza_sim):
    orders = cadenza_sim.create_orders(50)
    ids = [o.trade_order_id for o in orders] + ["00000000-0000-4000-8000-00000000dea3"]
    seen: list[str] = []
    async with client_for(cadenza_sim) as client:
        async for item in client.cancel_many_iter(ids, concurrency=16):
            if isinstance(item, CancelResult):
                seen.append(item.order_id)
            else:
                assert isinstance(item, OrderNotFoundError)
                assert item.order_id is not None
                seen.append(item.order_id)
    assert sorted(seen) == sorted(ids)


@pytest.mark.cadenza_sim(cancel_delay=0.0)
async def test_rate_limit_retry_after_pauses_every_cancel_not_only_the_one_that_got_it(
    cadenza_sim,
):
    loop = asyncio.get_running_loop()
    sent_at: list[float] = []

    class Timed(list):  # records when the simulator received each REST call
        def append(self, item: Any) -> None:
            sent_at.append(loop.time())
            super().append(item)

    cadenza_sim.rest_requests = Timed()
    orders = cadenza_sim.create_orders(11)
    async with client_for(cadenza_sim) as client:
        cadenza_sim.rate_limit_next_rest(1, retry_after=0.5)
        first = asyncio.ensure_future(client.cancel_and_confirm(orders[0].trade_order_id))
        await cadenza_sim.wait_for(lambda: client._gate.paused_until > loop.time())
        paused_until = client._gate.paused_until
        n_before = len(sent_at)
        results = await client.cancel_many([o.trade_order_id for o in orders[1:]])
        assert (await first).cancelled
    assert all(isinstance(r, CancelResult) and r.cancelled for r in results)
    later = sent_at[n_before:]
    assert len(later) >= 11  # the retried first cancel and the ten others
    assert min(later) >= paused_until - 0.01


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_max_rate_paces_every_cancel(cadenza_sim):
    orders = cadenza_sim.create_orders(30)
    loop = asyncio.get_running_loop()
    async with client_for(cadenza_sim, max_rate=100.0) as client:
        start = loop.time()
        results = await client.cancel_many([o.trade_order_id for o in orders])
        elapsed = loop.time() - start
    assert all(isinstance(r, CancelResult) for r in results)
    burst = client._gate._bucket.burst  # type: ignore[union-attr]
    assert elapsed >= (30 - burst) / 100.0 * 0.95


@pytest.mark.cadenza_sim(cancel_delay=5.0)
async def test_cancelling_the_bulk_caller_cancels_its_work_and_leaves_no_task(cadenza_sim):
    orders = cadenza_sim.create_orders(40)
    async with client_for(cadenza_sim) as client:
        before = other_tasks()
        bulk = asyncio.ensure_future(
            client.cancel_many([o.trade_order_id for o in orders], concurrency=10)
        )
        await cadenza_sim.wait_for(lambda: len(cadenza_sim.cancel_requests) >= 10)
        bulk.cancel()
        with pytest.raises(asyncio.CancelledError):
            await bulk
        assert other_tasks() <= before
        assert waiters_held(client) == 0  # every waiter released
    assert len(cadenza_sim.cancel_requests) == 10  # no cancel was started after the caller left


async def test_cancel_all_open_cancels_only_open_orders_across_pages(cadenza_sim):
    open_orders = cadenza_sim.create_orders(120)
    filled = cadenza_sim.create_orders(5)
    for o in filled:
        cadenza_sim.fill(o.trade_order_id)
    async with client_for(cadenza_sim) as client:
        results = await client.cancel_all_open(cadenza_sim.trading_account_id, page_size=50)
    assert sorted(r.order_id for r in results) == sorted(  # type: ignore[union-attr]
        o.trade_order_id for o in open_orders
    )
    assert all(isinstance(r, CancelResult) and r.cancelled for r in results)
    assert not {oid for oid, _ in cadenza_sim.cancel_requests} & {o.trade_order_id for o in filled}


@pytest.mark.cadenza_sim(cancel_delay=5.0)
async def test_leaving_cancel_many_iter_early_stops_the_work_in_flight_at_once(cadenza_sim):
    orders = cadenza_sim.create_orders(30)
    cadenza_sim.fill(orders[0].trade_order_id)  # an outcome that arrives at once
    async with client_for(cadenza_sim) as client:
        before = other_tasks()
        ids = [o.trade_order_id for o in orders]
        async with contextlib.aclosing(
            client.cancel_many_iter(ids, concurrency=5, timeout=30)
        ) as outcomes:
            async for item in outcomes:
                assert isinstance(item, CancelResult)
                assert item.status == "FILLED"
                break
        assert other_tasks() <= before  # gone as the block is left, not later
        assert waiters_held(client) == 0
    # the five first in flight, and the one the finished worker took next
    assert len(cadenza_sim.cancel_requests) <= 6


@pytest.mark.cadenza_sim(cancel_delay=5.0)
async def test_a_dropped_cancel_many_iter_is_cleaned_up_by_the_loop(cadenza_sim):
    orders = cadenza_sim.create_orders(10)
    cadenza_sim.fill(orders[0].trade_order_id)
    async with client_for(cadenza_sim) as client:
        before = other_tasks()
        ids = [o.trade_order_id for o in orders]
        async for _item in client.cancel_many_iter(ids, concurrency=5, timeout=30):
            break
        await cadenza_sim.wait_for(lambda: other_tasks() <= before and waiters_held(client) == 0)


async def test_from_env_takes_the_background_error_handler(cadenza_sim, monkeypatch):
    monkeypatch.setenv("CADENZA_TOKEN", cadenza_sim.token)
    monkeypatch.setenv("CADENZA_API_URL", cadenza_sim.api_url)
    monkeypatch.setenv("CADENZA_WS_URL", cadenza_sim.ws_url)
    errors: list[str] = []
    async with CadenzaClient.from_env(on_background_error=lambda exc, oid: errors.append(oid)) as c:
        c.cancel_nowait("00000000-0000-4000-8000-00000000dea4")
        await c.drain()
    assert errors == ["00000000-0000-4000-8000-00000000dea4"]
