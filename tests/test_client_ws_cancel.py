"""cancel_via="ws": the RPC cancel uses the given account, else the default one, else HTTP."""

from __future__ import annotations

import json

import pytest
from support import cancels_of, client_for

from cadenza_async import (
    OrderNotCancellableError,
    OrderNotFoundError,
    PermissionDeniedError,
)
from cadenza_async.errors import error_for_rpc


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_ws_cancel_without_an_account_uses_the_default_account(cadenza_sim):
    order = cadenza_sim.create_order()
    async with client_for(cadenza_sim, cancel_via="ws") as client:
        result = await client.cancel_and_confirm(order.trade_order_id)
    assert result.cancelled
    assert cancels_of(cadenza_sim, order.trade_order_id) == ["ws"]


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_ws_cancel_of_an_order_on_another_account_finds_its_account_and_sends_again(
    cadenza_sim,
):
    other = cadenza_sim.add_account()
    order = cadenza_sim.create_order(account_id=other)
    async with client_for(cadenza_sim, cancel_via="ws") as client:
        result = await client.cancel_and_confirm(order.trade_order_id)
    assert result.cancelled
    assert result.order.trading_account_id == other
    # the guess on the default account was refused; a look-up by id named the order's
    # own account, and the cancel went again over the RPC with it
    assert cancels_of(cadenza_sim, order.trade_order_id) == ["ws", "ws"]
    looked_up = [q for m, _, q in cadenza_sim.rest_requests if m == "GET"]
    by_id = {"tradeOrderId": order.trade_order_id}
    # (then the gap look-up: the other account's channel went live after the send)
    assert looked_up == [by_id, by_id | {"tradingAccountId": other}]
    assert cadenza_sim.cancels_applied[order.trade_order_id] == 1


async def test_ws_cancel_with_an_explicit_wrong_account_is_a_typed_error(cadenza_sim):
    other = cadenza_sim.add_account()
    order = cadenza_sim.create_order(account_id=other)
    async with client_for(cadenza_sim, cancel_via="ws") as client:
        with pytest.raises((OrderNotFoundError, PermissionDeniedError)):
            await client.cancel_and_confirm(
                order.trade_order_id, trading_account_id=cadenza_sim.trading_account_id
            )
    assert cancels_of(cadenza_sim, order.trade_order_id) == ["ws"]
    assert cadenza_sim.cancels_applied[order.trade_order_id] == 0


@pytest.mark.parametrize(
    ("code", "message", "status", "kind"),
    [
        (-111001, "Order is already filled", 400, OrderNotCancellableError),
        (-111002, "Order not found", 404, OrderNotFoundError),
        (-100403, "Forbidden", 403, PermissionDeniedError),
        (102, "unknown", 0, OrderNotFoundError),
        (7, "already cancelled", 0, OrderNotCancellableError),
    ],
)
def test_rpc_errors_map_to_the_http_error_of_the_same_meaning(code, message, status, kind):
    mapped = error_for_rpc(code, message, status=status)
    assert type(mapped) is kind
    assert mapped.errno == code
    assert mapped.status == (status or None)


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_stats_count_what_confirmed_each_cancel(cadenza_sim):
    orders = cadenza_sim.create_orders(3)
    async with client_for(cadenza_sim, cancel_via="http") as client:
        before = client.stats()
        for order in orders:
            await client.cancel_and_confirm(order.trade_order_id)
        after = client.stats()
    assert before.confirmed_by == {"ws": 0, "http": 0, "rest": 0}
    assert after.confirmed_by["ws"] == 3  # HTTP said PENDING_CANCEL, the events confirmed
    assert after.stream_connected
    assert after.pending_cancels == 0
    assert after.bad_events == 0


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_a_channel_the_server_unsubscribed_is_subscribed_again_by_the_next_cancel(
    cadenza_sim,
):
    first, second = cadenza_sim.create_orders(2)
    account = cadenza_sim.trading_account_id
    async with client_for(cadenza_sim, cancel_via="http") as client:
        await client.cancel_and_confirm(first.trade_order_id)
        stream = client._stream
        channel = f"tradingAccount:{account}"
        # the server drops the subscription for good (code < 2500: stay unsubscribed)
        push = {"push": {"channel": channel, "unsubscribe": {"code": 2000, "reason": "x"}}}
        await cadenza_sim.send_raw(json.dumps(push))
        await cadenza_sim.wait_for(lambda: channel not in stream.channels)
        result = await client.cancel_and_confirm(second.trade_order_id)
        assert channel in stream.channels  # subscribed again
    assert result.cancelled
    # proven by the event or the one look-up that closes the resubscription gap,
    # not by the final look-up at the 10 s deadline
    assert result.latency < 5.0
