"""The simulator's REST endpoints, called with plain aiohttp: envelope, error table, list, submit."""

from __future__ import annotations

import aiohttp
import pytest

from cadenza_async.models import OrderStatus, decode_envelope, decode_order, decode_order_list
from cadenza_async.testing import ERRNO_NOT_CANCELLABLE, CadenzaSimulator

CANCEL = "/api/v3/tradeOrder/cancel"


def body(order) -> dict[str, str]:
    """A cancel's body as the current API requires it: the order and its account."""
    return {"tradeOrderId": order.trade_order_id, "tradingAccountId": order.trading_account_id}


LIST = "/api/v3/tradeOrder/list"
SUBMIT = "/api/v3/tradeOrder/submit"


@pytest.fixture
async def sim():
    async with CadenzaSimulator() as simulator:
        yield simulator


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(http, sim, method, path, *, token=None, **kwargs):
    headers = auth(sim.token if token is None else token) if token != "" else {}
    async with http.request(method, sim.api_url + path, headers=headers, **kwargs) as resp:
        body = await resp.read()
        return resp.status, decode_envelope(body), resp.headers


async def test_cancel_answers_the_seed_envelope_with_the_cancelled_order(sim, http):
    order = sim.create_order(quantity="0.001")
    status, env, _ = await call(http, sim, "POST", CANCEL, json=body(order))
    assert status == 200
    assert (env.success, env.errno, env.error) == (True, 0, None)
    cancelled = decode_order(env.data)
    assert cancelled.trade_order_id == order.trade_order_id
    assert cancelled.status == OrderStatus.CANCELLED
    assert cancelled.cancellation_time is not None
    assert cancelled.executed_quantity == "0"
    assert sim.cancel_requests == [(order.trade_order_id, "http")]
    assert sim.cancels_applied[order.trade_order_id] == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"tradeOrderId": ""},
        {"tradeOrderId": 12},
        {"tradeOrderId": "../x"},
        {"tradeOrderId": "a" * 200},
    ],
)
async def test_missing_or_malformed_order_id_is_400_invalid_request(sim, http, body):
    status, env, _ = await call(http, sim, "POST", CANCEL, json=body)
    assert status == 400
    assert env.success is False
    assert env.errno != ERRNO_NOT_CANCELLABLE
    assert "invalid request" in (env.error or "").lower()


async def test_body_that_is_not_json_is_400(sim, http):
    status, env, _ = await call(http, sim, "POST", CANCEL, data=b"{not json")
    assert status == 400
    assert env.success is False


async def test_cancel_of_filled_order_is_400_cannot_cancel_with_errno(sim, http):
    order = sim.create_order(status="FILLED", executed_quantity="1")
    status, env, _ = await call(http, sim, "POST", CANCEL, json=body(order))
    assert status == 400
    assert env.errno == ERRNO_NOT_CANCELLABLE == -111001
    assert env.error == "Order is already filled and cannot be cancelled"
    assert decode_envelope(b'{"data":null}').data == env.data
    assert sim.cancels_applied[order.trade_order_id] == 0


async def test_second_cancel_of_cancelled_order_is_cannot_cancel(sim, http):
    order = sim.create_order()
    first, _, _ = await call(http, sim, "POST", CANCEL, json=body(order))
    second, env, _ = await call(http, sim, "POST", CANCEL, json=body(order))
    assert (first, second) == (200, 400)
    assert env.errno == ERRNO_NOT_CANCELLABLE
    assert "cancelled" in (env.error or "")
    assert sim.cancels_applied[order.trade_order_id] == 1


@pytest.mark.parametrize("token", ["", "sim-unknown"])
async def test_missing_or_unknown_token_is_401(sim, http, token):
    order = sim.create_order()
    status, env, _ = await call(http, sim, "POST", CANCEL, token=token, json=body(order))
    assert status == 401
    assert env.success is False
    assert sim.get_order(order.trade_order_id).status == OrderStatus.OPEN


async def test_expired_token_is_401(sim, http):
    token = sim.issue_token(ttl=60)
    order = sim.create_order()
    ok, _, _ = await call(http, sim, "GET", LIST, token=token)
    sim.expire_token(token)
    status, _, _ = await call(http, sim, "POST", CANCEL, token=token, json=body(order))
    assert (ok, status) == (200, 401)


async def test_order_of_an_account_the_token_does_not_own_is_403(sim, http):
    other = sim.create_order(account_id="e15e0000-0000-4000-8000-000000000001")
    status, env, _ = await call(http, sim, "POST", CANCEL, json=body(other))
    assert status == 403
    assert env.success is False
    assert sim.get_order(other.trade_order_id).status == OrderStatus.OPEN


async def test_unknown_order_is_404(sim, http):
    status, env, _ = await call(
        http,
        sim,
        "POST",
        CANCEL,
        json={
            "tradeOrderId": "00000000-0000-4000-8000-00000000dead",
            "tradingAccountId": sim.trading_account_id,
        },
    )
    assert status == 404
    assert env.error == "Order not found"


async def test_account_given_with_the_cancel_must_match_the_order(sim, http):
    order = sim.create_order()
    second = sim.add_account()
    status, _, _ = await call(
        http,
        sim,
        "POST",
        CANCEL,
        json={"tradeOrderId": order.trade_order_id, "tradingAccountId": second},
    )
    assert status == 404
    status, _, _ = await call(
        http,
        sim,
        "POST",
        CANCEL,
        json={
            "tradeOrderId": order.trade_order_id,
            "tradingAccountId": "e15e0000-0000-4000-8000-000000000002",  # not the token's
        },
    )
    assert status == 403
    status, _, _ = await call(
        http,
        sim,
        "POST",
        CANCEL,
        json={"tradeOrderId": order.trade_order_id, "tradingAccountId": "not-mine"},
    )
    assert status == 400  # account ids are UUIDs


async def test_rate_limit_answers_429_with_retry_after_then_recovers(sim, http):
    order = sim.create_order()
    sim.rate_limit_next_rest(1, retry_after=2.5)
    status, env, headers = await call(http, sim, "POST", CANCEL, json=body(order))
    assert status == 429
    assert headers["Retry-After"] == "2.5"
    assert env.success is False
    assert sim.get_order(order.trade_order_id).status == OrderStatus.OPEN
    status, _, _ = await call(http, sim, "POST", CANCEL, json=body(order))
    assert status == 200


@pytest.mark.parametrize("code", [500, 502, 503])
async def test_fail_next_rest_answers_5xx_for_exactly_n_calls(sim, http, code):
    sim.fail_next_rest(2, status=code)
    statuses = [(await call(http, sim, "GET", LIST))[0] for _ in range(3)]
    assert statuses == [code, code, 200]


async def test_rest_requests_are_recorded(sim, http):
    order = sim.create_order()
    await call(http, sim, "POST", CANCEL, json=body(order))
    await call(http, sim, "GET", LIST, params={"tradeOrderId": order.trade_order_id})
    assert sim.rest_requests == [
        ("POST", CANCEL, body(order)),
        ("GET", LIST, {"tradeOrderId": order.trade_order_id}),
    ]


async def test_list_filters_by_id_and_status(sim, http):
    orders = sim.create_orders(3)
    sim.set_status(orders[1].trade_order_id, "FILLED", publish=False)
    status, env, _ = await call(
        http, sim, "GET", LIST, params={"tradeOrderId": orders[0].trade_order_id}
    )
    assert status == 200
    assert [o.trade_order_id for o in decode_order_list(env.data)] == [orders[0].trade_order_id]
    _, env, _ = await call(http, sim, "GET", LIST, params={"orderStatus": "FILLED"})
    assert [o.trade_order_id for o in decode_order_list(env.data)] == [orders[1].trade_order_id]
    _, env, _ = await call(
        http, sim, "GET", LIST, params={"tradeOrderId": "00000000-0000-4000-8000-00000000dead"}
    )
    assert decode_order_list(env.data) == []
    status, _, _ = await call(http, sim, "GET", LIST, params={"tradeOrderId": "unknown"})
    assert status == 400  # order ids are UUIDs


async def test_list_paginates_with_default_limit_50(sim, http):
    ids = [o.trade_order_id for o in sim.create_orders(120)]
    _, env, _ = await call(http, sim, "GET", LIST)
    assert env.pagination is not None
    assert (env.pagination.offset, env.pagination.limit, env.pagination.total) == (0, 50, 120)
    assert env.pagination.has_next is True
    seen = [o.trade_order_id for o in decode_order_list(env.data)]
    _, env, _ = await call(http, sim, "GET", LIST, params={"offset": "100", "limit": "50"})
    assert env.pagination.has_next is False
    last = [o.trade_order_id for o in decode_order_list(env.data)]
    assert seen == ids[:50]
    assert last == ids[100:]


async def test_list_hides_other_accounts_and_refuses_foreign_filters(sim, http):
    mine = sim.create_order()
    foreign = sim.create_order(account_id="f0e10000-0000-4000-8000-000000000001")
    _, env, _ = await call(http, sim, "GET", LIST)
    assert [o.trade_order_id for o in decode_order_list(env.data)] == [mine.trade_order_id]
    status, _, _ = await call(
        http, sim, "GET", LIST, params={"tradingAccountId": "f0e10000-0000-4000-8000-000000000001"}
    )
    assert status == 403
    status, _, _ = await call(
        http, sim, "GET", LIST, params={"tradeOrderId": foreign.trade_order_id}
    )
    assert status == 403
    status, _, _ = await call(http, sim, "GET", LIST, params={"limit": "abc"})
    assert status == 400


async def test_submit_creates_an_open_order_that_can_be_cancelled(sim, http):
    status, env, _ = await call(
        http,
        sim,
        "POST",
        SUBMIT,
        json={
            "tradingAccountId": sim.trading_account_id,
            "instrumentId": "BINANCE:ETH/USDT",
            "orderSide": "SELL",
            "orderType": "LIMIT",
            "quantity": "2.5",
            "limitPrice": "3000",
            "clientOrderId": "my-1",
        },
    )
    assert status == 200
    order = decode_order(env.data)
    assert order.status == OrderStatus.OPEN
    assert (order.base_asset, order.quote_asset, order.client_order_id) == ("ETH", "USDT", "my-1")
    stored = sim.get_order(order.trade_order_id)
    assert stored is not None
    assert (stored.status, stored.quantity, stored.updated_at) == (
        order.status,
        order.quantity,
        order.updated_at,
    )
    status, _, _ = await call(http, sim, "POST", CANCEL, json=body(order))
    assert status == 200


@pytest.mark.parametrize(
    "body",
    [
        {"orderSide": "BUY"},
        {"orderSide": "SIDEWAYS", "quantity": "1"},
        {"orderSide": "BUY", "quantity": "-1"},
        {"orderSide": "BUY", "quantity": 1},
    ],
)
async def test_submit_rejects_invalid_orders_with_400(sim, http, body):
    status, env, _ = await call(http, sim, "POST", SUBMIT, json=body)
    assert status == 400
    assert env.success is False
    assert sim.orders == []
