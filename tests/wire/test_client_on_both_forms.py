"""The client on a server of each wire generation: proven by the event, submitted over RPC, no bad event.

Each test runs once against the simulator speaking the current official
models and once against the legacy form, over real sockets. The client
writes the current form by default and the legacy one with ``wire="legacy"``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from support import client_for, has_update_reader

from cadenza_async import CadenzaClient
from cadenza_async.models import TradeOrder
from cadenza_async.testing import CadenzaSimulator

FORMS = ["current", "legacy"]
STEP = 5.0


@contextlib.asynccontextmanager
async def on(wire: str, **options: object) -> AsyncIterator[tuple[CadenzaSimulator, CadenzaClient]]:
    async with (
        CadenzaSimulator(wire=wire, cancel_delay=0.05) as sim,
        client_for(sim, wire=wire, **options) as client,
    ):
        yield sim, client
        stats = client.stats()
        assert stats.bad_events == 0, stats.bad_event_shapes


@pytest.mark.parametrize("wire", FORMS)
@pytest.mark.parametrize("via", ["http", "ws"])
async def test_a_cancel_is_proven_by_the_event(wire, via):
    async with on(wire, cancel_via=via) as (sim, client):
        order = sim.create_order()
        result = await asyncio.wait_for(client.cancel_and_confirm(order.trade_order_id), STEP)
        assert (result.cancelled, result.source) == (True, "ws")
        assert sim.cancel_requests == [(order.trade_order_id, via)]
        assert type(result.order.updated_at) is int
        assert result.order.cancellation_time is not None


@pytest.mark.parametrize("wire", FORMS)
async def test_a_submit_over_rpc_is_accepted_and_proven(wire):
    async with on(wire, submit_via="ws") as (sim, client):
        sim.accept_delay = 0.05  # the reply says SUBMITTED; the event proves it
        result = await asyncio.wait_for(
            client.submit_and_confirm(
                instrument_id="BINANCE:BTC/USDT",
                order_side="BUY",
                order_type="LIMIT",
                quantity="0.01",
                limit_price="50000",
                time_in_force="GTC",
            ),
            STEP,
        )
        assert (result.accepted, result.status, result.source) == (True, "OPEN", "ws")
        assert sim.submit_requests == [(result.client_order_id, "ws")]
        assert sim.submits_applied == 1


@pytest.mark.parametrize("wire", FORMS)
async def test_order_updates_yield_the_events_with_their_times(wire):
    async with on(wire) as (sim, client):
        updates = client.order_updates()
        first = asyncio.ensure_future(anext(updates))
        await until(lambda: has_update_reader(client))
        order = sim.create_order()
        sim.set_status(order.trade_order_id, "CANCELLED")
        seen: TradeOrder = await asyncio.wait_for(first, STEP)
        await updates.aclose()
        stored = sim.get_order(order.trade_order_id)
        assert stored is not None
        assert (seen.trade_order_id, seen.status) == (order.trade_order_id, "CANCELLED")
        assert seen.updated_at == stored.updated_at  # to the millisecond, as an int
        assert seen.cancellation_time == stored.cancelled_at


@pytest.mark.parametrize("wire", FORMS)
async def test_a_cancel_without_any_known_account_looks_the_order_up_first(wire):
    async with on(wire, trading_account_id=None) as (sim, client):
        order = sim.create_order()
        result = await asyncio.wait_for(client.cancel_and_confirm(order.trade_order_id), STEP)
        assert result.cancelled
        cancels = [body for _, path, body in sim.rest_requests if path.endswith("/cancel")]
        assert cancels == [
            {"tradeOrderId": order.trade_order_id, "tradingAccountId": sim.trading_account_id}
        ]


@pytest.mark.parametrize("wire", FORMS)
async def test_a_cancel_guessing_the_default_account_wrong_finds_the_orders_own(wire):
    async with on(wire) as (sim, client):
        other = sim.add_account()
        order = sim.create_order(account_id=other)
        result = await asyncio.wait_for(client.cancel_and_confirm(order.trade_order_id), STEP)
        assert result.cancelled
        accounts = [
            body["tradingAccountId"] for _, p, body in sim.rest_requests if p.endswith("/cancel")
        ]
        assert accounts == [sim.trading_account_id, other]  # the guess, then the order's own


async def until(predicate, timeout: float = STEP) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "not met in time"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("wire", FORMS)
async def test_an_event_that_does_not_decode_is_counted_logged_once_and_proven_by_rest_at_once(
    wire, caplog
):
    caplog.set_level("WARNING", logger="cadenza_async.stream")
    async with (
        CadenzaSimulator(wire=wire, cancel_delay=1000) as sim,
        client_for(sim, wire=wire) as client,
    ):
        order = sim.create_order()
        task = asyncio.ensure_future(client.cancel_and_confirm(order.trade_order_id, timeout=10))
        await sim.wait_for(lambda: sim.get_order(order.trade_order_id).status == "PENDING_CANCEL")
        # The exchange cancels it, and the only event about it is one the SDK cannot read.
        sim.set_status(order.trade_order_id, "CANCELLED", publish=False)
        bad = {"tradeOrderId": order.trade_order_id, "status": "CANCELLED", "updatedAt": "soon"}
        sim.publish_raw_order_update(None, {"data": bad})
        sim.publish_raw_order_update(None, {"data": bad})

        result = await asyncio.wait_for(task, STEP)

        # Proven by REST at once, not by the final look-up at 9 s (the channel is live:
        # nothing else would have looked).
        assert (result.cancelled, result.source) == (True, "rest")
        assert result.latency < 5.0
        stats = client.stats()
        assert stats.bad_events == 2
        [(shape, count)] = stats.bad_event_shapes.items()
        assert count == 2
        assert "updatedAt" in shape
        assert "soon" not in shape  # the field and the type it saw, never the value
    logged = [r for r in caplog.records if "malformed order event" in r.getMessage()]
    assert len(logged) == 1  # once per shape


async def test_portfolio_and_account_payloads_on_the_channel_are_counted_apart_never_as_bad():
    async with on("current") as (sim, client):
        marker = sim.create_order()
        portfolio = {"data": {"tradingAccountId": sim.trading_account_id, "balances": []}}
        account = {"data": {"tradingAccountId": sim.trading_account_id, "nickname": "main"}}
        legacy = {"metadata": {"eventType": "event.portfolio.updated"}, "data": {"balances": []}}
        for payload in (portfolio, account, legacy):
            sim.publish_raw_order_update(None, payload)
        # an order event after them: once it is proven, the three were handled
        result = await asyncio.wait_for(client.cancel_and_confirm(marker.trade_order_id), STEP)
        assert result.source == "ws"
        await until(lambda: sum(client.stats().account_events.values()) == 3)
        assert client.stats().account_events == {"portfolio": 2, "trading_account": 1}
        # (on() checks that no bad event was counted)
