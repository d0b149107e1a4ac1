"""The proof engine, cancels and submits alike, over real sockets against the simulator.

Each test is a case where the two kinds of work used to behave differently (their
proof jobs were two copies that drifted); now there is one engine, and a submit
behaves as a cancel does, or better. Bounds are on counts of requests the
simulator saw and on deadlines, not on sleeps.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from support import client_for

from cadenza_async import PermissionDeniedError
from cadenza_async.testing import CadenzaSimulator

STEP = 10.0
LIST = "/api/v3/tradeOrder/list"
CANCEL = "/api/v3/tradeOrder/cancel"


def quote(price: str = "50000", **extra: object) -> dict[str, object]:
    return {
        "instrument_id": "BINANCE:BTC/USDT",
        "order_side": "BUY",
        "order_type": "LIMIT",
        "quantity": "0.01",
        "limit_price": price,
        "time_in_force": "GTC",
        **extra,
    }


def requests_to(sim: CadenzaSimulator, path: str) -> int:
    return sum(1 for _, p, _ in sim.rest_requests if p == path)


async def until(predicate, timeout: float = STEP) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "not met in time"
        await asyncio.sleep(0.005)


# --------------------------------------------------------------------------- degraded mode


async def test_pending_submits_with_the_stream_down_share_one_listing_of_their_account():
    async with CadenzaSimulator(accept_delay=2.0) as sim:
        sim.refuse_websocket(503)
        async with client_for(sim, timeouts={"connect": 0.3}) as client:
            assert not client.stats().stream_connected
            results = await asyncio.wait_for(
                client.submit_many([quote() for _ in range(100)], concurrency=100, timeout=8),
                STEP,
            )
            polls = client.stats().rest_polls
    assert all(r.accepted and r.source == "rest" for r in results)  # type: ignore[union-attr]
    listings = requests_to(sim, LIST)
    # 100 submits polled for ~2 s at 0.1, 0.3, 0.7, 1.5, 3.1 s: a few listings of the
    # account shared by all of them, not a look-up each (that was 495 requests)
    assert listings <= 12
    assert polls == listings  # stats().rest_polls counts the requests the server saw


async def test_a_cancel_in_degraded_mode_is_proven_within_the_polling_cap():
    async with CadenzaSimulator(cancel_delay=1000) as sim:
        sim.refuse_websocket(503)
        async with client_for(sim, timeouts={"connect": 0.3}) as client:
            order = sim.create_order()
            task = asyncio.ensure_future(
                client.cancel_and_confirm(order.trade_order_id, timeout=STEP)
            )
            await sim.wait_for(lambda: sim.cancels_applied.get(order.trade_order_id) == 1)
            # polls at 0.1, 0.3, 0.7, 1.5, 3.1 s after the send: by the fifth, they are spaced
            # at their cap (1.6 s, then 2 s)
            await until(lambda: requests_to(sim, LIST) >= 5)
            cancelled_at = time.monotonic()
            sim.set_status(order.trade_order_id, "CANCELLED")
            result = await asyncio.wait_for(task, STEP)
            proven_after = time.monotonic() - cancelled_at
    assert (result.cancelled, result.source) == (True, "rest")
    assert proven_after <= 2.0 + 0.5  # the cap between looks, plus a request's time


# --------------------------------------------------------------------------- bulk concurrency


async def test_submit_many_keeps_to_its_concurrency_on_the_server():
    async with CadenzaSimulator(accept_delay=0.05) as sim:
        # the event proves each submit before its reply: the worker must still wait for it
        sim.delay_submit_reply(0.2)
        async with client_for(sim) as client:
            results = await asyncio.wait_for(
                client.submit_many([quote() for _ in range(40)], concurrency=8), STEP
            )
    assert all(r.accepted for r in results)  # type: ignore[union-attr]
    assert sim.max_concurrent_submits == 8


async def test_cancel_all_open_ends_by_its_timeout(cadenza_sim):
    cadenza_sim.create_orders(30)
    async with client_for(cadenza_sim) as client:
        cadenza_sim.delay_rest(0.2, endpoint="cancel")
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcomes = await client.cancel_all_open(
            cadenza_sim.trading_account_id, concurrency=2, timeout=1.0
        )
        took = loop.time() - started
    assert took < 1.0 + 0.25  # the call's timeout, plus the documented slack
    assert len(outcomes) == 30  # one outcome per open order found, sent or not


# --------------------------------------------------------------------------- failures


async def test_a_submit_whose_reply_was_lost_is_never_sent_again_while_the_listing_fails():
    async with CadenzaSimulator() as sim:
        sim.refuse_websocket(503)  # no event: only a listing can tell what became of it
        sim.lose_next_submit_replies(1)  # placed; the connection dropped unanswered
        sim.fail_next_rest(3, 503, endpoint="list")  # and the listings answer 503 a while
        async with client_for(sim, timeouts={"connect": 0.3}) as client:
            result = await asyncio.wait_for(client.submit_and_confirm(**quote()), STEP)
    assert result.accepted
    assert sim.submit_requests == [(result.client_order_id, "http")]  # sent once, only
    assert sim.submits_applied == 1
    assert requests_to(sim, LIST) == 4  # three 503s, then the listing that found it


async def test_a_cancel_rides_out_a_burst_of_503s_within_its_deadline(cadenza_sim):
    order = cadenza_sim.create_order()
    async with client_for(cadenza_sim) as client:
        cadenza_sim.rest_outage(0.6, status=503, endpoints=["cancel"])
        result = await asyncio.wait_for(
            client.cancel_and_confirm(order.trade_order_id, timeout=5.0), STEP
        )
    assert result.cancelled
    assert requests_to(cadenza_sim, CANCEL) > 1  # tried again through the outage


async def test_a_bulk_cancel_rides_out_a_burst_of_503s(cadenza_sim):
    orders = cadenza_sim.create_orders(20)
    async with client_for(cadenza_sim) as client:
        cadenza_sim.rest_outage(0.6, status=503, endpoints=["cancel"])
        results = await asyncio.wait_for(
            client.cancel_many([o.trade_order_id for o in orders], timeout=5.0), STEP
        )
    assert all(r.cancelled for r in results)  # type: ignore[union-attr]


async def test_a_refused_channel_fails_the_pending_submits_of_its_account():
    async with CadenzaSimulator(accept_delay=5.0) as sim:
        other = sim.add_account()
        sim.refuse_subscribe(other, code=103)
        async with client_for(sim) as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(PermissionDeniedError) as caught:
                await client.submit_and_confirm(**quote(), trading_account_id=other, timeout=8)
            took = loop.time() - started
    assert caught.value.errno == 103
    assert took < 2.0  # at the refusal, not at the deadline


async def test_a_malformed_event_while_a_submit_waits_looks_it_up_at_once():
    async with CadenzaSimulator(accept_delay=1000) as sim:
        async with client_for(sim) as client:
            task = asyncio.ensure_future(client.submit_and_confirm(**quote(), timeout=8))
            await sim.wait_for(lambda: sim.submits_applied == 1)
            [order] = sim.live_orders_of("BINANCE:BTC/USDT")
            sim.set_status(order.trade_order_id, "OPEN", publish=False)
            bad = {"tradeOrderId": order.trade_order_id, "status": "OPEN", "updatedAt": "later"}
            sim.publish_raw_order_update(None, {"data": bad})
            result = await asyncio.wait_for(task, STEP)
    assert (result.accepted, result.source) == (True, "rest")
    assert result.latency < 4.0  # at the bad event, not at the final look-up (7 s)
