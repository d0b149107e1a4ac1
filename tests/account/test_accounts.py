"""Trading accounts and health over the simulator: statuses, updates, pending work ended, probes."""

from __future__ import annotations

import asyncio
import time

import pytest
from account_support import BTC, account_client

from cadenza_async.account import TradingAccountUnavailableError


async def test_trading_accounts_are_listed_with_their_status():
    async with account_client() as (sim, client):
        (account,) = await client.get_trading_accounts()
        assert account.trading_account_id == sim.trading_account_id
        assert account.status == "ACTIVE"
        assert account.available
        assert account.external_id


async def test_a_disabled_account_fails_a_pending_submit_at_once_not_at_its_deadline():
    for wire in ("current", "legacy"):
        async with account_client(wire=wire, accept_delay=30.0) as (sim, client):
            pending = asyncio.ensure_future(
                client.submit_and_confirm(
                    instrument_id=BTC,
                    order_side="BUY",
                    order_type="LIMIT",
                    quantity="1",
                    limit_price="40000",
                    timeout=20.0,
                )
            )
            await sim.wait_for(lambda: sim.submits_applied == 1)
            started = time.monotonic()
            sim.accounts.set_status(sim.trading_account_id, "INACTIVE")
            with pytest.raises(TradingAccountUnavailableError) as caught:
                await asyncio.wait_for(pending, 5.0)
            assert time.monotonic() - started < 2.0
            assert caught.value.status == "INACTIVE"
            assert caught.value.trading_account_id == sim.trading_account_id
            assert caught.value.order_id  # the submit's clientOrderId


async def test_a_disconnected_account_fails_a_pending_cancel():
    async with account_client(cancel_delay=30.0) as (sim, client):
        order = sim.create_order()
        pending = asyncio.ensure_future(
            client.cancel_and_confirm(order.trade_order_id, timeout=20.0)
        )
        await sim.wait_for(lambda: sim.pending_cancels == 1)
        sim.accounts.set_status(sim.trading_account_id, "DISCONNECTED")
        with pytest.raises(TradingAccountUnavailableError) as caught:
            await asyncio.wait_for(pending, 5.0)
        assert caught.value.order_id == order.trade_order_id


async def test_account_updates_are_surfaced_and_an_active_one_fails_nothing():
    async with account_client(cancel_delay=30.0) as (sim, client):
        order = sim.create_order()
        pending = asyncio.ensure_future(
            client.cancel_and_confirm(order.trade_order_id, timeout=20.0)
        )
        try:
            await sim.wait_for(lambda: sim.pending_cancels == 1)
            updates = client.trading_account_updates()
            reading = asyncio.ensure_future(anext(updates))
            await asyncio.sleep(0)
            sim.accounts.set_status(sim.trading_account_id, "ACTIVE")
            update = await asyncio.wait_for(reading, 5.0)
            await updates.aclose()
            assert update.status == "ACTIVE"
            assert update.trading_account_id == sim.trading_account_id
            assert not pending.done()
            assert client.stats().account_events.get("trading_account") == 1
        finally:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)


async def test_the_live_portfolio_shows_the_account_status():
    async with account_client() as (sim, client):
        async with client.portfolio(sim.trading_account_id) as live:
            await live.wait_ready(5.0)
            sim.accounts.set_status(sim.trading_account_id, "LOCKED")
            await sim.wait_for(lambda: live.account is not None)
            assert live.account.status == "LOCKED"
            assert not live.account.available


@pytest.mark.parametrize(
    ("state", "status"), [("healthy", 200), ("degraded", 200), ("unhealthy", 503)]
)
async def test_health_is_typed_and_a_503_is_an_answer(state, status):
    async with account_client() as (sim, client):
        sim.accounts.health_status = state
        health = await client.health()
        assert health.status == state
        assert health.http_status == status
        assert health.healthy == (state == "healthy")
        assert set(health.checks) == {"database", "temporal", "redis"}
        assert isinstance(health.timestamp, int)
        assert health.version
