"""Reliability matrix rows 18-20, 27 and 28: the cancel's own round trip misbehaves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rel_support import (
    STEP,
    assert_consistent,
    client_on,
    wait_until,
)
from support import cancels_of

from cadenza_async import CancelResult
from cadenza_async.config import Timeouts
from cadenza_async.errors import OrderNotFoundError
from cadenza_async.testing.faults import FaultProxy

# --------------------------------------------------------------------------- row 18


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_row18_event_before_the_cancel_reply_confirms_not_times_out(cadenza_sim):
    async with FaultProxy("127.0.0.1", cadenza_sim.port) as px:
        px.downstream.latency = 0.3  # every reply held 0.3 s; the direct stream is not
        async with client_on(cadenza_sim, api_url=px.url(cadenza_sim.api_url)) as client:
            orders = cadenza_sim.create_orders(3)
            results = await asyncio.wait_for(
                client.cancel_many([o.trade_order_id for o in orders], timeout=1.0), STEP
            )

    for order, result in zip(orders, results, strict=True):
        assert_consistent(cadenza_sim, order.trade_order_id, result)
        assert (result.cancelled, result.source) == (True, "ws")
        # proven before the reply came (the reply may not even be in yet)
        assert result.acked_after is None or result.latency < result.acked_after


# --------------------------------------------------------------------------- row 19


@pytest.mark.cadenza_sim(cancel_delay=0.1)
async def test_row19_reset_after_the_exchange_applied_the_cancel_still_confirms_once(
    cadenza_sim,
):
    async with FaultProxy("127.0.0.1", cadenza_sim.port) as px:
        async with client_on(cadenza_sim, api_url=px.url(cadenza_sim.api_url)) as client:
            order = cadenza_sim.create_order()
            fired = px.reset_after(1)  # the first byte of the cancel's reply: RST instead

            result = await asyncio.wait_for(client.cancel_and_confirm(order.trade_order_id), STEP)
            await asyncio.wait_for(fired.wait(), STEP)

    assert_consistent(cadenza_sim, order.trade_order_id, result)
    assert (result.cancelled, result.status) == (True, "CANCELLED")
    assert cadenza_sim.cancels_applied[order.trade_order_id] == 1
    assert len(cancels_of(cadenza_sim, order.trade_order_id)) >= 1


# --------------------------------------------------------------------------- row 20


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_row20_unknown_reply_ids_and_late_rpc_replies_are_ignored(cadenza_sim):
    async with FaultProxy("127.0.0.1", cadenza_sim.port) as px:
        async with client_on(
            cadenza_sim,
            ws_url=px.url(cadenza_sim.ws_url),
            cancel_via="ws",
            timeouts=Timeouts(connect=3.0, request=0.2, confirm=STEP),
        ) as client:
            account = cadenza_sim.trading_account_id
            await cadenza_sim.send_raw('{"id":987654,"rpc":{"data":{"surprise":true}}}')
            await cadenza_sim.send_raw('{"id":987655,"error":{"code":100,"message":"x"}}')

            late = cadenza_sim.create_order()
            px.downstream.latency = 0.6  # the RPC reply arrives after the 0.2 s request timeout
            first = await asyncio.wait_for(
                client.cancel_and_confirm(late.trade_order_id, trading_account_id=account), STEP
            )
            px.downstream.latency = 0
            await wait_until(lambda: px.bytes_downstream > 0)
            nxt = cadenza_sim.create_order()
            second = await asyncio.wait_for(
                client.cancel_and_confirm(nxt.trade_order_id, trading_account_id=account), STEP
            )

            assert client.stats().stream_reconnects == 0
            assert cadenza_sim.connect_count == 1

    assert_consistent(cadenza_sim, late.trade_order_id, first)
    assert_consistent(cadenza_sim, nxt.trade_order_id, second)
    assert first.cancelled
    assert second.cancelled
    assert cadenza_sim.cancels_applied[late.trade_order_id] == 1
    assert cancels_of(cadenza_sim, nxt.trade_order_id) == ["ws"]


# --------------------------------------------------------------------------- row 27


@pytest.mark.parametrize("via", ["http", "ws"])
@pytest.mark.cadenza_sim(cancel_delay=0.02)
async def test_row27_retried_cancels_of_cancelled_filled_and_unknown_orders_have_typed_outcomes(
    cadenza_sim, via
):
    async with client_on(cadenza_sim, cancel_via=via) as client:
        account = cadenza_sim.trading_account_id
        open_order, racing = cadenza_sim.create_orders(2)
        cadenza_sim.fill_on_next_cancel(racing.trade_order_id)
        ids = [
            open_order.trade_order_id,
            racing.trade_order_id,
            "00000000-0000-4000-8000-00000000dead",
        ]

        rounds = []
        for _ in range(3):  # the caller retries the whole batch
            rounds.append(
                await asyncio.wait_for(
                    client.cancel_many(ids, timeout=STEP, trading_account_id=account), STEP
                )
            )

    for outcomes in rounds:
        for order_id, outcome in zip(ids, outcomes, strict=True):
            if order_id != "00000000-0000-4000-8000-00000000dead":
                assert_consistent(cadenza_sim, order_id, outcome)
        done, filled, unknown = outcomes
        assert isinstance(done, CancelResult)
        assert (done.cancelled, done.status) == (True, "CANCELLED")
        assert isinstance(filled, CancelResult)
        assert (filled.cancelled, filled.status) == (False, "FILLED")
        assert isinstance(unknown, OrderNotFoundError)
    assert cadenza_sim.cancels_applied[open_order.trade_order_id] == 1
    assert cadenza_sim.cancels_applied[racing.trade_order_id] == 0


# --------------------------------------------------------------------------- row 28


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_row28_bulk_of_500_under_429_and_503_gives_500_results_within_the_limit(
    cadenza_sim,
):
    orders = cadenza_sim.create_orders(500)
    ids = [o.trade_order_id for o in orders]
    limit = 16
    async with client_on(cadenza_sim) as client:
        in_flight = 0
        peak = 0
        send = client._canceller.send_cancel

        async def counted(*args, **kwargs):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await send(*args, **kwargs)
            finally:
                in_flight -= 1

        client._canceller.send_cancel = counted
        loop = asyncio.get_running_loop()
        arrived: list[float] = []

        class Timed(list):  # when the simulator received each REST call
            def append(self, item: Any) -> None:
                arrived.append(loop.time())
                super().append(item)

        cadenza_sim.rest_requests = Timed()
        cadenza_sim.rate_limit_next_rest(2, retry_after=0.3)
        for _ in range(25):  # 5 % of the requests fail with 503
            cadenza_sim.fail_next_rest(1, status=503)
        started = loop.time()
        results = await asyncio.wait_for(client.cancel_many(ids, concurrency=limit), 6 * STEP)
        elapsed = loop.time() - started

    assert len(results) == 500
    for order_id, result in zip(ids, results, strict=True):
        assert_consistent(cadenza_sim, order_id, result)
        assert isinstance(result, CancelResult)
        assert result.order_id == order_id
        assert cadenza_sim.cancels_applied[order_id] == 1
    assert peak <= limit
    # Retry-After was honoured by every caller, not hammered through: once the
    # 429s went out (the first two calls), nothing reached the server until the
    # 0.3 s pause was over, but for requests already on the wire (50 ms margin).
    answered_429 = arrived[1]
    during_pause = [t for t in arrived if answered_429 + 0.05 < t < answered_429 + 0.25]
    assert during_pause == []
    assert elapsed >= 0.3
    assert len(cadenza_sim.rest_requests) >= 500 + 2 + 25  # every fault was met and retried
