"""Many accounts, many pending cancels: per-account reconciliation and bulk across accounts.

Against the simulator over real sockets. What is counted is REST requests by
kind: an account listing (``tradingAccountId`` + ``limit``) or a one-order
look-up (``tradeOrderId``).
"""

from __future__ import annotations

import asyncio

import pytest

from cadenza_async import CadenzaClient, CancelResult
from cadenza_async.testing import CadenzaSimulator

STEP = 10.0


def settings(sim: CadenzaSimulator, **options):
    return {
        "token": sim.token,
        "api_url": sim.api_url,
        "ws_url": sim.ws_url,
        "trading_account_id": sim.trading_account_id,
        **options,
    }


def listings(sim: CadenzaSimulator) -> int:
    return sum(
        1
        for method, _path, query in sim.rest_requests
        if method == "GET" and "tradeOrderId" not in query and "limit" in query
    )


def look_ups(sim: CadenzaSimulator) -> int:
    return sum(
        1
        for method, _path, query in sim.rest_requests
        if method == "GET" and "tradeOrderId" in query
    )


@pytest.mark.cadenza_sim(cancel_delay=0)
async def test_cancel_all_open_across_accounts_gives_one_outcome_per_open_order(cadenza_sim):
    accounts = [cadenza_sim.add_account() for _ in range(4)]
    open_ids = [
        o.trade_order_id for a in accounts for o in cadenza_sim.create_orders(25, account_id=a)
    ]
    for a in accounts:
        cadenza_sim.create_order(account_id=a, status="FILLED")  # not open: not cancelled
    async with CadenzaClient(**settings(cadenza_sim)) as client:
        outcomes = await asyncio.wait_for(
            client.cancel_all_open(account_ids=accounts, concurrency=16), STEP
        )

    assert sorted(o.order_id for o in outcomes) == sorted(open_ids)
    assert all(isinstance(o, CancelResult) and o.cancelled for o in outcomes)
    assert max(cadenza_sim.max_concurrent_cancels.values()) == 1


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_a_reconnect_with_lost_history_reconciles_each_account_with_one_listing(cadenza_sim):
    accounts = [cadenza_sim.add_account() for _ in range(5)]
    orders = {a: cadenza_sim.create_orders(20, account_id=a) for a in accounts}
    async with CadenzaClient(**settings(cadenza_sim)) as client:
        tasks = [
            asyncio.ensure_future(
                client.cancel_and_confirm(o.trade_order_id, trading_account_id=a, timeout=STEP)
            )
            for a, group in orders.items()
            for o in group
        ]
        await cadenza_sim.wait_for(
            lambda: all(
                cadenza_sim.get_order(t.trade_order_id).status == "PENDING_CANCEL"
                for g in orders.values()
                for t in g
            ),
            timeout=STEP,
        )
        await cadenza_sim.wait_for(
            lambda: all(client._stream.is_live("tradingAccount:" + a) for a in accounts),
            timeout=STEP,
        )
        cadenza_sim.rest_requests.clear()
        cadenza_sim.pause_publications()
        await cadenza_sim.disconnect_all(3001)
        for group in orders.values():
            for o in group:
                cadenza_sim.set_status(o.trade_order_id, "CANCELLED", publish=False)
        cadenza_sim.lose_history()
        for a in accounts:
            cadenza_sim.lose_history(a)
        cadenza_sim.resume_publications()

        results = await asyncio.wait_for(asyncio.gather(*tasks), STEP)

    assert all(r.cancelled for r in results)
    # Each account's gap is closed by listing it (one page of 20), not 100 look-ups.
    assert listings(cadenza_sim) <= 2 * len(accounts)
    assert look_ups(cadenza_sim) < 10


@pytest.mark.cadenza_sim(cancel_delay=0.3)
async def test_degraded_polling_lists_the_account_instead_of_one_look_up_per_order(cadenza_sim):
    await cadenza_sim.refuse_websocket(503)
    orders = cadenza_sim.create_orders(40)
    async with CadenzaClient(**settings(cadenza_sim)) as client:
        results = await asyncio.wait_for(
            client.cancel_many([o.trade_order_id for o in orders], concurrency=40, timeout=STEP),
            STEP,
        )
    assert all(isinstance(r, CancelResult) and r.source == "rest" for r in results), results
    assert look_ups(cadenza_sim) < 40
    assert listings(cadenza_sim) < 20


@pytest.mark.cadenza_sim(cancel_delay=0.05)  # the event proves it: the channel is asked for
async def test_an_idle_accounts_channel_is_released_and_subscribed_again_on_demand(cadenza_sim):
    other = cadenza_sim.add_account()
    pinned = cadenza_sim.add_account()
    async with CadenzaClient(**settings(cadenza_sim, channel_idle_release=0.2)) as client:
        await client.subscribe_account(pinned)
        first = cadenza_sim.create_order(account_id=other)
        await client.cancel_and_confirm(first.trade_order_id, trading_account_id=other)
        stream = client._stream
        await cadenza_sim.wait_for(lambda: stream.is_live("tradingAccount:" + other), timeout=STEP)

        # Nothing pending on it for 0.2 s: released (the configured and the pinned stay).
        await cadenza_sim.wait_for(
            lambda: "tradingAccount:" + other not in stream.channels, timeout=STEP
        )
        assert "tradingAccount:" + cadenza_sim.trading_account_id in stream.channels
        assert "tradingAccount:" + pinned in stream.channels

        # A later cancel on it subscribes again and is proven.
        later = cadenza_sim.create_order(account_id=other)
        result = await client.cancel_and_confirm(later.trade_order_id, trading_account_id=other)
        assert result.cancelled
        await cadenza_sim.wait_for(lambda: stream.is_live("tradingAccount:" + other), timeout=STEP)


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_no_channel_is_released_while_order_updates_has_a_reader(cadenza_sim):
    other = cadenza_sim.add_account()
    async with CadenzaClient(**settings(cadenza_sim, channel_idle_release=0.1)) as client:
        updates = client.order_updates()
        reader = asyncio.ensure_future(updates.__anext__())
        await asyncio.sleep(0)
        order = cadenza_sim.create_order(account_id=other)
        await client.cancel_and_confirm(order.trade_order_id, trading_account_id=other)
        stream = client._stream
        # A sweep that takes every channel for idle (used before an hour from now)
        # releases none: the reader keeps every channel.
        loop = asyncio.get_running_loop()
        assert client._canceller.release_idle(loop.time() + 3600) == 0
        assert "tradingAccount:" + other in stream.channels
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await updates.aclose()
        # With the reader gone, the next cancel's channel is released once idle.
        again = cadenza_sim.create_order(account_id=other)
        await client.cancel_and_confirm(again.trade_order_id, trading_account_id=other)
        await cadenza_sim.wait_for(
            lambda: "tradingAccount:" + other not in stream.channels, timeout=STEP
        )
