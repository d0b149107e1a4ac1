"""CadenzaClient.cancel / get_order end to end, input checks before I/O, and the lifecycle."""

from __future__ import annotations

import msgspec
import pytest
from support import ACCOUNT_ID, ORDER_ID, SEED_ORDER, ScriptedApi, envelope

from cadenza_async import (
    CadenzaClient,
    ClientClosedError,
    ConfigurationError,
    OrderNotFoundError,
    Timeouts,
    TradeOrder,
)
from cadenza_async.config import RetryPolicy

WS = "ws://127.0.0.1:9/connection/websocket"


@pytest.fixture
async def client(api: ScriptedApi):
    # HTTP-only use: no ``async with`` (that would connect the order stream first). The
    # default account is the seed order's: its cancel needs no look-up of its account.
    c = CadenzaClient(token="tok", api_url=api.url, ws_url=WS, trading_account_id=ACCOUNT_ID)
    try:
        yield c
    finally:
        await c.aclose()


async def test_cancel_returns_the_order_from_the_http_reply(api, client):
    order = await client.cancel(ORDER_ID)

    assert isinstance(order, TradeOrder)
    assert order.trade_order_id == ORDER_ID
    assert order.status == "CANCELLED"
    assert order.cancellation_time == 1703052700000
    [req] = api.requests
    assert (req.method, req.path) == ("POST", "/api/v3/tradeOrder/cancel")
    assert req.headers["Authorization"] == "Bearer tok"


async def test_cancel_with_trading_account_id_sends_it(api, client):
    await client.cancel(ORDER_ID, trading_account_id=ACCOUNT_ID)

    assert msgspec.json.decode(api.requests[0].body)["tradingAccountId"] == ACCOUNT_ID


async def test_cancel_sends_the_configured_default_account(api, client):
    await client.cancel(ORDER_ID)

    # The current API requires the account in the body: the default one, first.
    assert msgspec.json.decode(api.requests[0].body) == {
        "tradeOrderId": ORDER_ID,
        "tradingAccountId": ACCOUNT_ID,
    }


async def test_cancel_without_any_account_looks_the_order_up_first(api):
    api.reply(body=envelope([SEED_ORDER]))  # the look-up names the order's account
    client = CadenzaClient(token="tok", api_url=api.url, ws_url=WS)
    try:
        await client.cancel(ORDER_ID)
    finally:
        await client.aclose()

    look_up, cancel = api.requests
    assert (look_up.method, look_up.query) == ("GET", {"tradeOrderId": ORDER_ID})
    assert msgspec.json.decode(cancel.body) == {
        "tradeOrderId": ORDER_ID,
        "tradingAccountId": ACCOUNT_ID,
    }


async def test_cancel_off_the_default_account_finds_the_orders_own_and_sends_again(api):
    other = "660e8400-e29b-41d4-a716-446655440009"
    api.reply(404, envelope(None, success=False, errno=-111002, error="Order not found"))
    api.reply(body=envelope([{**SEED_ORDER, "tradingAccountId": other}]))
    api.reply(body=envelope({**SEED_ORDER, "tradingAccountId": other}))
    client = CadenzaClient(token="tok", api_url=api.url, ws_url=WS, trading_account_id=ACCOUNT_ID)
    try:
        order = await client.cancel(ORDER_ID)
    finally:
        await client.aclose()

    assert order.trading_account_id == other
    guess, look_up, cancel = api.requests
    assert msgspec.json.decode(guess.body)["tradingAccountId"] == ACCOUNT_ID
    assert look_up.query == {"tradeOrderId": ORDER_ID}
    assert msgspec.json.decode(cancel.body)["tradingAccountId"] == other


async def test_cancel_naming_its_account_is_not_retried_on_another(api, client):
    api.reply(404, envelope(None, success=False, errno=-111002, error="Order not found"))

    with pytest.raises(OrderNotFoundError):
        await client.cancel(ORDER_ID, trading_account_id=ACCOUNT_ID)

    assert len(api.requests) == 1  # the caller's account is not a guess: no look-up


async def test_get_order_returns_the_listed_order(api, client):
    api.reply(body=envelope([{**SEED_ORDER, "status": "PENDING_CANCEL"}]))

    order = await client.get_order(ORDER_ID)

    assert order.status == "PENDING_CANCEL"
    assert api.requests[0].query == {"tradeOrderId": ORDER_ID}


async def test_list_and_submit_go_through_the_client(api, client):
    api.reply(body=envelope([SEED_ORDER]))
    page = await client.list_orders(trading_account_id=ACCOUNT_ID)
    assert [o.trade_order_id for o in page.orders] == [ORDER_ID]

    api.reply(body=envelope({**SEED_ORDER, "status": "OPEN"}))
    order = await client.submit_order(
        trading_account_id=ACCOUNT_ID,
        instrument_id="BINANCE:BTC/USDT",
        order_side="BUY",
        order_type="LIMIT",
        quantity="0.001",
        limit_price="50000",
    )
    assert order.status == "OPEN"


async def test_submit_without_any_account_raises_before_io(api):
    client = CadenzaClient(token="tok", api_url=api.url, ws_url=WS)
    try:
        with pytest.raises(ValueError):
            await client.submit_order(
                instrument_id="X:A/B", order_side="BUY", order_type="MARKET", quantity="1"
            )
    finally:
        await client.aclose()
    assert api.requests == []


BAD_IDS = [
    pytest.param("", id="empty"),
    pytest.param(None, id="none"),
    pytest.param(12345, id="int"),
    pytest.param(b"abc", id="bytes"),
    pytest.param("x" * 10_000, id="10k-chars"),
    pytest.param("../x", id="dot-dot-slash"),
    pytest.param("a/b", id="slash"),
    pytest.param("a\r\nb", id="crlf"),
    pytest.param("a b", id="space"),
    pytest.param("a\tb", id="tab"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("a\x1bb", id="escape"),
    pytest.param("a?b=c", id="query"),
    pytest.param("a#b", id="fragment"),
    pytest.param("a%2Fb", id="percent"),
    pytest.param("ордер", id="non-ascii"),
]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_bad_order_id_raises_value_error_and_sends_nothing(api, client, bad):
    with pytest.raises(ValueError):
        await client.cancel(bad)
    with pytest.raises(ValueError):
        await client.get_order(bad)
    assert api.requests == []


@pytest.mark.parametrize("bad", ["", "a/b", "a\r\nb", 7])
async def test_bad_account_id_raises_value_error_and_sends_nothing(api, client, bad):
    with pytest.raises(ValueError):
        await client.cancel(ORDER_ID, trading_account_id=bad)
    with pytest.raises(ValueError):
        await client.list_orders(trading_account_id=bad)
    assert api.requests == []


@pytest.mark.parametrize(
    ("api_url", "ws_url"),
    [
        pytest.param("http://api.example.com", "wss://ws.example.com/c", id="http-remote"),
        pytest.param("https://api.example.com", "ws://ws.example.com/c", id="ws-remote"),
        pytest.param("ftp://api.example.com", "wss://ws.example.com/c", id="other-scheme"),
        pytest.param("http://10.0.0.1:8080", "wss://ws.example.com/c", id="http-private-ip"),
    ],
)
def test_insecure_urls_to_remote_hosts_are_refused(api_url, ws_url):
    with pytest.raises(ConfigurationError):
        CadenzaClient(token="t", api_url=api_url, ws_url=ws_url)


def test_insecure_urls_are_allowed_when_explicitly_asked():
    client = CadenzaClient(
        token="t",
        api_url="http://api.example.com",
        ws_url="ws://ws.example.com/c",
        allow_insecure=True,
    )
    assert client.config.api_url == "http://api.example.com"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.8.9.10"])
def test_plain_http_to_loopback_is_allowed(host):
    client = CadenzaClient(token="t", api_url=f"http://{host}:8080/", ws_url=f"ws://{host}:8000/c")
    assert client.config.api_url == f"http://{host}:8080"


async def test_closed_client_refuses_every_call_and_sends_nothing(api):
    client = CadenzaClient(token="tok", api_url=api.url, ws_url=WS, trading_account_id=ACCOUNT_ID)
    await client.cancel(ORDER_ID)
    await client.aclose()
    await client.aclose()  # idempotent

    for call in (
        lambda: client.cancel(ORDER_ID),
        lambda: client.get_order(ORDER_ID),
        lambda: client.list_orders(),
    ):
        with pytest.raises(ClientClosedError):
            await call()
    with pytest.raises(ClientClosedError):
        async with client:
            pass
    assert len(api.requests) == 1
    assert "closed" in repr(client)


async def test_client_created_and_closed_without_requests_leaves_nothing_open(api):
    client = CadenzaClient(token="tok", api_url=api.url, ws_url=WS)
    assert client._http._session is None
    await client.aclose()
    assert api.requests == []


async def test_entering_a_client_whose_stream_cannot_connect_still_cancels_over_http(api):
    # A risk system must be able to pull its orders while the event stream is down.
    client = CadenzaClient(
        token="tok",
        api_url=api.url,
        ws_url=WS,
        trading_account_id=ACCOUNT_ID,
        timeouts=Timeouts(connect=0.3),
    )
    async with client:
        assert not client.stats().stream_connected
        order = await client.cancel(ORDER_ID)
        assert order.trade_order_id == ORDER_ID
    assert client.closed
    [req] = api.requests
    assert (req.method, req.path) == ("POST", "/api/v3/tradeOrder/cancel")


async def test_client_exposes_tokens_gate_and_http_for_the_layers_above(api):
    client = CadenzaClient(
        token="tok", api_url=api.url, ws_url=WS, max_rate=50.0, retry=RetryPolicy(attempts=1)
    )
    try:
        assert client._gate.rate == 50.0
        assert await client._tokens.get() == "tok"
        assert client._http._gate is client._gate
        assert client._http._tokens is client._tokens
    finally:
        await client.aclose()
