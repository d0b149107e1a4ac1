"""The simulator's REST fault switches over real sockets: per-endpoint delays, hangs, outages,
late cancel answers, endpoint-filtered 429s, and the count of cancels in flight per order."""

from __future__ import annotations

import asyncio
import json
import math
import time

import aiohttp
import pytest

from cadenza_async.models import OrderStatus, decode_envelope, decode_order
from cadenza_async.testing import CadenzaSimulator

CANCEL = "/api/v3/tradeOrder/cancel"
LIST = "/api/v3/tradeOrder/list"
SUBMIT = "/api/v3/tradeOrder/submit"
RPC_CANCEL = "command.trade_order.cancel"


@pytest.fixture
async def sim():
    async with CadenzaSimulator() as simulator:
        yield simulator


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def call(http, sim, method, path, *, timeout=5.0, **kwargs):
    headers = {"Authorization": f"Bearer {sim.token}"}
    async with http.request(
        method,
        sim.api_url + path,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout),
        **kwargs,
    ) as resp:
        return resp.status, decode_envelope(await resp.read()), resp.headers


async def cancel(http, sim, order_id, **kwargs):
    body = {"tradeOrderId": order_id, "tradingAccountId": sim.trading_account_id}
    return await call(http, sim, "POST", CANCEL, json=body, **kwargs)


async def timed(awaitable):
    started = time.monotonic()
    result = await awaitable
    return result, time.monotonic() - started


async def ws_connect(http, sim):
    """A raw Centrifugo connection, connected and subscribed to the default account."""
    ws = await http.ws_connect(sim.ws_url)
    await ws.send_str(
        json.dumps({"id": 1, "connect": {"token": sim.token}})
        + "\n"
        + json.dumps(
            {"id": 2, "subscribe": {"channel": f"tradingAccount:{sim.trading_account_id}"}}
        )
    )
    seen = set()
    while seen != {1, 2}:
        for line in (await ws.receive_str(timeout=5)).split("\n"):
            seen.add(json.loads(line).get("id"))
    return ws


async def next_message(ws) -> dict:
    return json.loads(await ws.receive_str(timeout=5))


# ---- delay_rest -----------------------------------------------------------------


async def test_delay_rest_holds_only_the_named_endpoint(sim, http):
    order = sim.create_order()
    sim.delay_rest(0.3, endpoint="cancel")
    (status, _, _), list_took = await timed(call(http, sim, "GET", LIST))
    assert status == 200
    assert list_took < 0.25
    (status, env, _), cancel_took = await timed(cancel(http, sim, order.trade_order_id))
    assert status == 200
    assert decode_order(env.data).status == OrderStatus.CANCELLED
    assert cancel_took >= 0.29


async def test_delay_rest_for_all_endpoints_and_zero_turns_it_off(sim, http):
    sim.delay_rest(0.2)
    (status, _, _), took = await timed(
        call(http, sim, "POST", SUBMIT, json={"orderSide": "BUY", "quantity": "1"})
    )
    assert (status, took >= 0.19) == (200, True)
    sim.delay_rest(0)
    (status, _, _), took = await timed(call(http, sim, "GET", LIST))
    assert (status, took < 0.15) == (200, True)


async def test_delay_rest_inf_hangs_until_the_delay_is_turned_off(sim, http):
    sim.delay_rest(math.inf, endpoint="list")
    task = asyncio.ensure_future(call(http, sim, "GET", LIST))
    await sim.wait_for(lambda: sim.rest_requests)
    done, _ = await asyncio.wait([task], timeout=0.2)
    assert not done  # hung
    assert (await call(http, sim, "POST", CANCEL, json={}))[0] == 400  # other endpoints answer
    sim.delay_rest(0, endpoint="list")
    status, env, _ = await asyncio.wait_for(task, 2)
    assert (status, env.success) == (200, True)


async def test_hung_rest_calls_are_answered_503_at_stop_and_leave_no_task_behind(http):
    sim = CadenzaSimulator()
    async with sim:
        order = sim.create_order()
        sim.delay_rest(math.inf)
        calls = [
            asyncio.ensure_future(cancel(http, sim, order.trade_order_id)),
            asyncio.ensure_future(call(http, sim, "GET", LIST)),
        ]
        await sim.wait_for(lambda: len(sim.rest_requests) == 2)
        started = time.monotonic()
    stop_took = time.monotonic() - started
    answers = await asyncio.wait_for(asyncio.gather(*calls), 2)
    assert [status for status, _, _ in answers] == [503, 503]
    assert stop_took < 0.9  # not the server's 1 s shutdown timeout
    assert sim.cancel_requests == []  # a hung cancel never reached the exchange
    assert sim.get_order(order.trade_order_id).status == OrderStatus.OPEN
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_slow_rest_is_delay_rest_on_every_endpoint(sim, http):
    sim.slow_rest(0.2)
    for method, path in (("GET", LIST), ("POST", CANCEL)):
        (_, _, _), took = await timed(call(http, sim, method, path, json={}))
        assert took >= 0.19
    sim.slow_rest(0)
    (_, _, _), took = await timed(call(http, sim, "GET", LIST))
    assert took < 0.15


# ---- rest_outage ------------------------------------------------------------------


async def test_rest_outage_answers_its_status_for_its_time_then_recovers(sim, http):
    order = sim.create_order()
    sim.rest_outage(0.4, status=502, endpoints=["cancel"])
    status, env, _ = await cancel(http, sim, order.trade_order_id)
    assert (status, env.success, env.errno) == (502, False, -100500)
    assert env.error == "Bad gateway"
    assert (await call(http, sim, "GET", LIST))[0] == 200  # not in the outage
    assert (await cancel(http, sim, order.trade_order_id))[0] == 502
    assert sim.rest_outage_answers == 2
    assert sim.cancel_requests == []
    await asyncio.sleep(0.45)  # the outage's length is the behaviour under test
    status, env, _ = await cancel(http, sim, order.trade_order_id)
    assert (status, decode_order(env.data).status) == (200, OrderStatus.CANCELLED)
    assert sim.rest_outage_answers == 2
    assert sim.cancels_applied[order.trade_order_id] == 1


async def test_rest_outage_of_every_endpoint_and_its_early_end(sim, http):
    sim.rest_outage(60)
    for method, path in (("GET", LIST), ("POST", SUBMIT), ("POST", CANCEL)):
        status, env, _ = await call(http, sim, method, path, json={})
        assert (status, env.success, env.error) == (503, False, "Service unavailable")
    assert sim.rest_outage_answers == 3
    sim.rest_outage(0)
    assert (await call(http, sim, "GET", LIST))[0] == 200


# ---- delay_cancel_reply --------------------------------------------------------------


async def test_late_cancel_answer_comes_after_the_cancel_was_applied_and_published(sim, http):
    order = sim.create_order()
    ws = await ws_connect(http, sim)
    try:
        sim.delay_cancel_reply(0.4)
        started = time.monotonic()
        answer = asyncio.ensure_future(cancel(http, sim, order.trade_order_id))
        push = await next_message(ws)
        assert push["push"]["pub"]["data"]["data"]["status"] == "CANCELLED"
        assert sim.get_order(order.trade_order_id).status == OrderStatus.CANCELLED
        assert not answer.done()
        status, env, _ = await asyncio.wait_for(answer, 2)
        assert time.monotonic() - started >= 0.39
        assert (status, decode_order(env.data).status) == (200, OrderStatus.CANCELLED)
        assert sim.cancels_applied[order.trade_order_id] == 1
    finally:
        await ws.close()


async def test_late_cancel_answer_applies_to_the_rpc_reply_too(sim, http):
    order = sim.create_order()
    ws = await ws_connect(http, sim)
    try:
        sim.delay_cancel_reply(0.3)
        started = time.monotonic()
        data = {"tradeOrderId": order.trade_order_id, "tradingAccountId": sim.trading_account_id}
        await ws.send_str(json.dumps({"id": 3, "rpc": {"method": RPC_CANCEL, "data": data}}))
        push = await next_message(ws)
        assert push["push"]["pub"]["data"]["data"]["status"] == "CANCELLED"
        reply = await next_message(ws)
        assert time.monotonic() - started >= 0.29
        assert reply["id"] == 3
        assert reply["rpc"]["data"]["data"]["status"] == "CANCELLED"
        assert sim.cancel_requests == [(order.trade_order_id, "ws")]
    finally:
        await ws.close()


async def test_late_cancel_answers_also_hold_errors_and_zero_turns_it_off(sim, http):
    filled = sim.create_order(status="FILLED")
    sim.delay_cancel_reply(0.2)
    (status, _, _), took = await timed(cancel(http, sim, filled.trade_order_id))
    assert (status, took >= 0.19) == (400, True)
    sim.delay_cancel_reply(0)
    (status, _, _), took = await timed(cancel(http, sim, filled.trade_order_id))
    assert (status, took < 0.15) == (400, True)


# ---- max_concurrent_cancels --------------------------------------------------------------


async def test_max_concurrent_cancels_counts_http_and_rpc_in_flight_together(sim, http):
    together, alone = sim.create_order(), sim.create_order()
    ws = await ws_connect(http, sim)
    try:
        sim.delay_cancel_reply(0.3)
        data = {"tradeOrderId": together.trade_order_id, "tradingAccountId": sim.trading_account_id}
        await ws.send_str(json.dumps({"id": 3, "rpc": {"method": RPC_CANCEL, "data": data}}))
        await sim.wait_for(lambda: sim.cancel_requests)
        status, _, _ = await cancel(http, sim, together.trade_order_id)  # while the RPC is held
        assert status == 400  # "cannot cancel": the RPC cancelled it already
        sim.delay_cancel_reply(0)
        await cancel(http, sim, alone.trade_order_id)
        await cancel(http, sim, alone.trade_order_id)
        assert sim.max_concurrent_cancels == {together.trade_order_id: 2, alone.trade_order_id: 1}
        assert sorted(via for _, via in sim.cancel_requests) == ["http", "http", "http", "ws"]
    finally:
        await ws.close()


async def test_a_cancel_whose_http_client_gave_up_no_longer_counts_as_in_flight(sim, http):
    order = sim.create_order()
    sim.delay_rest(0.6, endpoint="cancel")
    with pytest.raises(asyncio.TimeoutError):
        await cancel(http, sim, order.trade_order_id, timeout=0.1)
    await sim.wait_for(lambda: sim._cancels.in_flight(order.trade_order_id) == 0)
    sim.delay_rest(0, endpoint="cancel")
    status, _, _ = await cancel(http, sim, order.trade_order_id)  # the first is still held
    assert status == 200
    # The held request still reaches the exchange, as it would on a real slow server.
    await sim.wait_for(lambda: len(sim.cancel_requests) == 2)
    assert sim.max_concurrent_cancels == {order.trade_order_id: 1}
    assert sim.cancels_applied[order.trade_order_id] == 1


async def test_a_held_rpc_cancel_ends_with_its_connection(sim, http):
    order = sim.create_order()
    ws = await ws_connect(http, sim)
    sim.delay_cancel_reply(math.inf)
    data = {"tradeOrderId": order.trade_order_id, "tradingAccountId": sim.trading_account_id}
    await ws.send_str(json.dumps({"id": 3, "rpc": {"method": RPC_CANCEL, "data": data}}))
    await sim.wait_for(lambda: sim.cancel_requests)
    assert sim._cancels.in_flight(order.trade_order_id) == 1
    await ws.close()
    await sim.wait_for(lambda: sim.connections == 0)
    assert sim._cancels.in_flight(order.trade_order_id) == 0
    assert sim._cancels.reply_delay.holding == 0


# ---- endpoint filters and validation ------------------------------------------------------


async def test_rate_limit_for_one_endpoint_leaves_the_others_alone(sim, http):
    order = sim.create_order()
    sim.rate_limit_next_rest(1, retry_after=0.5, endpoint="cancel")
    assert (await call(http, sim, "GET", LIST))[0] == 200
    status, env, headers = await cancel(http, sim, order.trade_order_id)
    assert (status, headers["Retry-After"], env.success) == (429, "0.5", False)
    assert (await cancel(http, sim, order.trade_order_id))[0] == 200


async def test_queued_faults_are_used_in_order_by_the_calls_they_match(sim, http):
    sim.fail_next_rest(1, status=500, endpoint="submit")
    sim.rate_limit_next_rest(1, retry_after=2)
    assert (await call(http, sim, "GET", LIST))[0] == 429  # the any-endpoint fault
    assert (await call(http, sim, "GET", LIST))[0] == 200
    body = {"orderSide": "BUY", "quantity": "1"}
    assert (await call(http, sim, "POST", SUBMIT, json=body))[0] == 500
    assert (await call(http, sim, "POST", SUBMIT, json=body))[0] == 200


@pytest.mark.parametrize(
    "switch",
    [
        lambda sim: sim.delay_rest(1, endpoint="cancels"),
        lambda sim: sim.delay_rest(-1),
        lambda sim: sim.delay_rest(math.nan),
        lambda sim: sim.rest_outage(1, endpoints=["cancel", "orders"]),
        lambda sim: sim.rest_outage(1, status=200),
        lambda sim: sim.rate_limit_next_rest(1, 1.0, endpoint="x"),
        lambda sim: sim.fail_next_rest(1, 503, endpoint="x"),
        lambda sim: sim.delay_cancel_reply(-0.5),
    ],
)
async def test_switches_refuse_unknown_endpoints_and_bad_values(sim, switch):
    with pytest.raises(ValueError):
        switch(sim)
