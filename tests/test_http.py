"""HttpApi against a real aiohttp server on loopback: request shape and every error row."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import socket
import sys
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aioresponses import aioresponses
from support import ACCOUNT_ID, ORDER_ID, SEED_ORDER, ScriptedApi, envelope

from cadenza_async._auth import TokenSource
from cadenza_async._ratelimit import RateGate
from cadenza_async.config import ClientConfig, RetryPolicy, Timeouts
from cadenza_async.errors import (
    ApiError,
    ApiNotFoundError,
    AuthenticationError,
    ClientClosedError,
    InvalidRequestError,
    OrderNotCancellableError,
    OrderNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
)
from cadenza_async.http import CANCEL_PATH, LIST_PATH, SUBMIT_PATH, HttpApi, parse_retry_after
from cadenza_async.models import NewOrder

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002, max_retry_after=5.0)


def make_http(url: str, token="tok-1", **changes) -> HttpApi:
    config = ClientConfig(
        token=token,
        api_url=url,
        ws_url="ws://127.0.0.1:9/connection/websocket",
        retry=changes.pop("retry", FAST_RETRY),
        **changes,
    )
    return HttpApi(config, TokenSource(config.token), RateGate(config.max_rate))


@pytest.fixture
async def http(api: ScriptedApi) -> AsyncIterator[HttpApi]:
    client = make_http(api.url)
    try:
        yield client
    finally:
        await client.aclose()


def error_body(errno: int, error: str, **extra) -> bytes:
    return msgspec.json.encode(
        {"data": None, "success": False, "errno": errno, "error": error, **extra}
    )


# -- request shape ----------------------------------------------------------------------


async def test_cancel_posts_json_order_id_with_bearer_token(api, http):
    order = await http.cancel_order(ORDER_ID, ACCOUNT_ID)

    assert order.trade_order_id == ORDER_ID
    assert order.status == "CANCELLED"
    [req] = api.requests
    assert req.method == "POST"
    assert req.path == CANCEL_PATH
    assert req.headers["Authorization"] == "Bearer tok-1"
    assert req.headers["Content-Type"] == "application/json"
    # The current API's CancelTradeOrderRequest: both fields, always.
    assert msgspec.json.decode(req.body) == {
        "tradeOrderId": ORDER_ID,
        "tradingAccountId": ACCOUNT_ID,
    }


async def test_requests_reuse_one_pooled_connection(api, http):
    for _ in range(3):
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)

    assert len(api.requests) == 3
    assert len({r.peer for r in api.requests}) == 1  # same client socket: kept alive


async def test_get_order_looks_up_the_list_endpoint_by_id(api, http):
    api.reply(body=envelope([SEED_ORDER]))

    order = await http.get_order(ORDER_ID, ACCOUNT_ID)

    assert order.trade_order_id == ORDER_ID
    [req] = api.requests
    assert (req.method, req.path) == ("GET", LIST_PATH)
    assert req.query == {"tradeOrderId": ORDER_ID, "tradingAccountId": ACCOUNT_ID}
    assert req.headers["Authorization"] == "Bearer tok-1"


async def test_get_order_percent_encodes_plus_in_the_query(api, http):
    api.reply(body=envelope([{**SEED_ORDER, "tradeOrderId": "a+b"}]))

    order = await http.get_order("a+b")

    assert order.trade_order_id == "a+b"
    assert api.requests[0].query == {"tradeOrderId": "a+b"}


async def test_get_order_with_empty_list_raises_not_found_with_the_order_id(api, http):
    api.reply(body=envelope([]))

    with pytest.raises(OrderNotFoundError) as info:
        await http.get_order(ORDER_ID)
    assert info.value.order_id == ORDER_ID


async def test_list_orders_passes_filters_and_returns_pagination(api, http):
    body = msgspec.json.encode(
        {
            "data": [SEED_ORDER, {**SEED_ORDER, "tradeOrderId": "o-2", "status": "OPEN"}],
            "success": True,
            "errno": 0,
            "error": None,
            "pagination": {"offset": 0, "limit": 2, "total": 5, "hasNext": True, "cursor": "c1"},
        }
    )
    api.reply(body=body)

    page = await http.list_orders(
        trading_account_id=ACCOUNT_ID, order_status="OPEN", limit=2, offset=0
    )

    assert [o.trade_order_id for o in page.orders] == [ORDER_ID, "o-2"]
    assert page.pagination is not None
    assert (page.pagination.total, page.pagination.has_next, page.pagination.cursor) == (
        5,
        True,
        "c1",
    )
    assert api.requests[0].query == {
        "tradingAccountId": ACCOUNT_ID,
        "orderStatus": "OPEN",
        "limit": "2",
        "offset": "0",
    }


async def test_submit_order_posts_the_order_with_decimal_strings(api, http):
    api.reply(body=envelope({**SEED_ORDER, "status": "OPEN"}))

    order = await http.submit_order(
        NewOrder(
            trading_account_id=ACCOUNT_ID,
            instrument_id="BINANCE:BTC/USDT",
            order_side="BUY",
            order_type="LIMIT",
            quantity="0.001",
            limit_price="50000.00",
            time_in_force="GTC",
        )
    )

    assert order.status == "OPEN"
    [req] = api.requests
    assert (req.method, req.path) == ("POST", SUBMIT_PATH)
    assert msgspec.json.decode(req.body) == {
        "tradingAccountId": ACCOUNT_ID,
        "instrumentId": "BINANCE:BTC/USDT",
        "orderSide": "BUY",
        "orderType": "LIMIT",
        "quantity": "0.001",
        "limitPrice": "50000.00",
        "timeInForce": "GTC",
    }


# -- the seed's error table, plus 403 ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected", "errno"),
    [
        pytest.param(400, error_body(-1, "Missing order ID"), InvalidRequestError, -1, id="400"),
        pytest.param(
            400,
            error_body(-111001, "Order is already filled and cannot be cancelled"),
            OrderNotCancellableError,
            -111001,
            id="400-cannot-cancel-errno",
        ),
        pytest.param(
            400,
            error_body(-5, "Order already cancelled"),
            OrderNotCancellableError,
            -5,
            id="400-cannot-cancel-text",
        ),
        pytest.param(401, error_body(-2, "Unauthorized"), AuthenticationError, -2, id="401"),
        pytest.param(403, error_body(-3, "Forbidden"), PermissionDeniedError, -3, id="403"),
        pytest.param(404, error_body(-4, "Order not found"), OrderNotFoundError, -4, id="404"),
        pytest.param(404, b"<html>not found</html>", ApiNotFoundError, None, id="404-html"),
        pytest.param(404, b'{"detail": "Not Found"}', ApiNotFoundError, None, id="404-json"),
        pytest.param(418, error_body(-9, "teapot"), UnexpectedResponseError, -9, id="418"),
    ],
)
async def test_error_status_maps_to_typed_error_without_retry(
    api, http, status, body, expected, errno
):
    api.reply(status, body)

    with pytest.raises(expected) as info:
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)

    error = info.value
    assert type(error) is expected
    assert error.status == status
    assert error.errno == errno
    assert error.order_id == ORDER_ID
    assert len(api.requests) == 1  # 4xx is never retried


async def test_not_cancellable_error_keeps_the_server_message(api, http):
    api.reply(400, error_body(-111001, "Order is already filled and cannot be cancelled"))

    with pytest.raises(OrderNotCancellableError) as info:
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    assert info.value.message == "Order is already filled and cannot be cancelled"


async def test_request_id_comes_from_envelope_details(api, http):
    api.reply(404, error_body(-4, "nope", details={"code": "E404", "requestId": "req-42"}))

    with pytest.raises(OrderNotFoundError) as info:
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    assert info.value.request_id == "req-42"
    assert "req-42" in str(info.value)


async def test_request_id_falls_back_to_the_response_header(api, http):
    api.reply(403, error_body(-3, "forbidden"), headers={"X-Request-Id": "hdr-7"})

    with pytest.raises(PermissionDeniedError) as info:
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    assert info.value.request_id == "hdr-7"


# -- 429 --------------------------------------------------------------------------------


async def test_429_pauses_the_gate_for_retry_after_then_succeeds(api, http):
    api.reply(429, error_body(-429, "slow down"), headers={"Retry-After": "0.05"})

    order = await http.cancel_order(ORDER_ID, ACCOUNT_ID)

    assert order.status == "CANCELLED"
    assert len(api.requests) == 2
    assert http._gate.paused_until > 0.0  # the pause was shared through the gate


async def test_429_pause_holds_back_other_callers_sharing_the_gate(api):
    gate = RateGate()
    config = ClientConfig(token="t", api_url=api.url, ws_url="ws://127.0.0.1:9/c", retry=FAST_RETRY)
    http = HttpApi(config, TokenSource("t"), gate)
    impatient = HttpApi(config.with_changes(retry=RetryPolicy(attempts=1)), TokenSource("t"), gate)
    try:
        api.reply(429, error_body(0, "slow"), headers={"Retry-After": "30"})
        with pytest.raises(RateLimitError):
            # attempts=1 keeps this caller from waiting; the pause stays for everyone
            await impatient.cancel_order(ORDER_ID, ACCOUNT_ID)
        assert gate.paused_until > 0.0
        blocked = asyncio.ensure_future(http.cancel_order(ORDER_ID, ACCOUNT_ID))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not blocked.done()
        assert len(api.requests) == 1  # the second caller sent nothing while paused
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
    finally:
        await http.aclose()
        await impatient.aclose()


class _ShiftedGate(RateGate):
    """A gate whose pause fits the budget but whose wake-up comes ``shift`` seconds off its end."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift

    async def wait_unpaused(self, budget: float | None = None) -> None:
        assert budget is not None
        await asyncio.sleep(budget + self.shift)


@pytest.mark.parametrize(
    "shift",
    [
        0.01,  # the loop wakes the wait past the deadline
        -0.001,  # the pause ends 1 ms before it: too late to be answered (nor likely read)
    ],
)
async def test_a_pause_that_uses_the_time_up_is_a_rate_limit_and_sends_nothing(api, shift):
    """Not a TransportError: the rate limit used the time up, and nothing went out."""
    gate = _ShiftedGate(shift)
    gate.pause_for(0.05)
    config = ClientConfig(token="t", api_url=api.url, ws_url="ws://127.0.0.1:9/c", retry=FAST_RETRY)
    http = HttpApi(config, TokenSource("t"), gate)
    try:
        deadline = asyncio.get_running_loop().time() + 0.05
        with pytest.raises(RateLimitError) as info:
            await http.cancel_order(ORDER_ID, ACCOUNT_ID, deadline=deadline)
        assert info.value.maybe_sent is False
        assert "not sent" in str(info.value)
        assert api.requests == []
    finally:
        await http.aclose()


async def test_429_exhausting_attempts_raises_rate_limit_error_with_retry_after(api, http):
    for _ in range(3):
        api.reply(429, error_body(-429, "too many"), headers={"Retry-After": "0"})

    with pytest.raises(RateLimitError) as info:
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)

    assert info.value.retry_after == 0.0
    assert info.value.status == 429
    assert len(api.requests) == FAST_RETRY.attempts


async def test_429_with_retry_after_beyond_the_cap_raises_at_once(api, http):
    api.reply(429, error_body(0, "later"), headers={"Retry-After": "3600"})

    with pytest.raises(RateLimitError) as info:
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)

    assert info.value.retry_after == 3600.0
    assert len(api.requests) == 1


async def test_429_on_submit_is_not_retried(api, http):
    api.reply(429, error_body(0, "slow"), headers={"Retry-After": "0"})

    with pytest.raises(RateLimitError):
        await http.submit_order(
            NewOrder(
                trading_account_id=ACCOUNT_ID,
                instrument_id="X:A/B",
                order_side="BUY",
                order_type="MARKET",
                quantity="1",
            )
        )
    assert len(api.requests) == 1


def test_retry_after_reads_seconds_and_http_dates():
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 12, usegmt=True)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(date, now=now) == pytest.approx(12.0)
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(None) is None


# -- 5xx --------------------------------------------------------------------------------


async def test_5xx_is_retried_then_raises_server_error(api, http):
    for status in (500, 502, 503):
        api.reply(status, error_body(-500, "boom"))

    with pytest.raises(ServerError) as info:
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)

    assert info.value.status == 503
    assert info.value.message == "boom"
    assert len(api.requests) == FAST_RETRY.attempts


async def test_5xx_then_success_returns_the_order(api, http):
    api.reply(503, b"upstream down")

    order = await http.cancel_order(ORDER_ID, ACCOUNT_ID)

    assert order.status == "CANCELLED"
    assert len(api.requests) == 2


async def test_5xx_on_submit_is_not_retried(api, http):
    api.reply(503, error_body(0, "down"))

    with pytest.raises(ServerError):
        await http.submit_order(
            NewOrder(
                trading_account_id=ACCOUNT_ID,
                instrument_id="X:A/B",
                order_side="BUY",
                order_type="MARKET",
                quantity="1",
            )
        )
    assert len(api.requests) == 1


# -- 401 and the token provider ---------------------------------------------------------


async def test_401_refreshes_the_token_once_and_retries_with_it(api):
    calls = []

    async def provider():
        calls.append(1)
        return f"tok-{len(calls)}"

    http = make_http(api.url, token=provider)
    try:
        api.reply(401, error_body(-2, "expired"))
        order = await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    finally:
        await http.aclose()

    assert order.status == "CANCELLED"
    assert len(calls) == 2
    assert [r.headers["Authorization"] for r in api.requests] == ["Bearer tok-1", "Bearer tok-2"]


async def test_look_up_sends_bearer_and_accept_but_no_content_type(api, http):
    api.reply(200, envelope([SEED_ORDER]))
    await http.get_order(ORDER_ID)
    [req] = api.requests
    assert req.method == "GET"
    assert req.headers["Authorization"] == "Bearer tok-1"
    assert req.headers["Accept"] == "application/json"
    assert "Content-Type" not in req.headers


async def test_request_in_flight_keeps_its_token_when_another_refreshes(api):
    calls = []

    async def provider():
        calls.append(1)
        return f"tok-{len(calls)}"

    release = asyncio.Event()

    async def held(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(body=envelope(SEED_ORDER))

    http = make_http(api.url, token=provider)
    try:
        api.handle(held)
        api.reply(401, error_body(-2, "expired"))
        first = asyncio.ensure_future(http.cancel_order("held", ACCOUNT_ID))
        await asyncio.wait_for(api.received.wait(), timeout=5)
        await http.cancel_order("refreshed", ACCOUNT_ID)  # 401, refresh, retried with tok-2
        release.set()
        await asyncio.wait_for(first, 5)
        await http.cancel_order("after", ACCOUNT_ID)
    finally:
        release.set()
        await http.aclose()

    assert [r.headers["Authorization"] for r in api.requests] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
        "Bearer tok-2",
    ]


async def test_second_401_raises_authentication_error_without_a_refresh_loop(api):
    calls = []

    def provider():
        calls.append(1)
        return f"tok-{len(calls)}"

    http = make_http(api.url, token=provider)
    try:
        api.reply(401, error_body(-2, "expired"))
        api.reply(401, error_body(-2, "still expired"))
        with pytest.raises(AuthenticationError) as info:
            await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    finally:
        await http.aclose()

    assert info.value.message == "the REST API refused the token: still expired"
    assert len(calls) == 2
    assert len(api.requests) == 2


async def test_401_with_a_fixed_string_token_is_not_retried(api, http):
    api.reply(401, error_body(-2, "bad token"))

    with pytest.raises(AuthenticationError):
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    assert len(api.requests) == 1


# -- redirects, bodies --------------------------------------------------------------------


async def test_redirect_is_not_followed_and_second_host_sees_nothing(api, http):
    other = ScriptedApi()
    await other.server.start_server()
    try:
        api.reply(307, b"", headers={"Location": other.url + CANCEL_PATH})
        with pytest.raises(UnexpectedResponseError) as info:
            await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    finally:
        await other.server.close()

    assert info.value.status == 307
    assert "not followed" in info.value.message
    assert other.requests == []
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>hello</html>", id="html"),
        pytest.param(b"[1, 2, 3]", id="array"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[" * 30_000 + b"]" * 30_000, id="deeply-nested"),
    ],
)
async def test_200_with_a_body_that_is_not_the_envelope_raises_unexpected_response(api, http, body):
    api.reply(200, body)

    with pytest.raises(UnexpectedResponseError) as info:
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    assert info.value.status == 200


async def test_200_with_success_false_raises_a_typed_api_error(api, http):
    api.reply(200, error_body(-7, "something odd"))

    with pytest.raises(ApiError) as info:
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    assert type(info.value) is UnexpectedResponseError
    assert (info.value.errno, info.value.message) == (-7, "something odd")


async def test_200_with_success_false_cannot_cancel_raises_not_cancellable(api, http):
    api.reply(200, error_body(-111001, "Order already cancelled"))

    with pytest.raises(OrderNotCancellableError):
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)


async def test_200_whose_data_is_not_an_order_raises_unexpected_response(api, http):
    api.reply(200, envelope({"orderId": ORDER_ID, "status": "OPEN"}))  # no tradeOrderId

    with pytest.raises(UnexpectedResponseError):
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)


# -- transport ----------------------------------------------------------------------------


def assert_no_aiohttp_context(exc: BaseException) -> None:
    """No aiohttp exception anywhere in the context chain (none at all on 3.11+).

    Python 3.10 can attach a stale handled exception (the CancelledError or
    OSError under aiohttp's timer) as ``__context__``; it is suppressed and
    is never an aiohttp exception, whose repr could hold the token.
    """
    if sys.version_info >= (3, 11):
        assert exc.__context__ is None
        return
    assert exc.__suppress_context__
    seen = exc.__context__
    while seen is not None:
        assert not isinstance(seen, aiohttp.ClientError), repr(seen)
        seen = seen.__context__


async def test_request_timeout_raises_transport_error_without_aiohttp_context(api):
    release = asyncio.Event()

    async def never_answers(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=204)

    http = make_http(
        api.url,
        timeouts=Timeouts(connect=1.0, request=0.1),
        retry=RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001),
    )
    api.handle(never_answers)
    api.handle(never_answers)
    try:
        with pytest.raises(TransportError) as info:
            await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    finally:
        release.set()
        await http.aclose()

    assert "timed out" in str(info.value)
    assert info.value.__cause__ is None
    assert_no_aiohttp_context(info.value)
    assert len(api.requests) == 2  # the idempotent cancel was retried once


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_connection_refused_raises_transport_error_after_retries():
    http = make_http(f"http://127.0.0.1:{_closed_port()}")
    try:
        with pytest.raises(TransportError) as info:
            await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    finally:
        await http.aclose()

    assert info.value.order_id == ORDER_ID
    assert_no_aiohttp_context(info.value)
    assert "aiohttp" not in repr(info.value.__cause__)


async def test_connection_reset_on_cancel_is_retried_then_succeeds():
    """A raw TCP server drops the first connection after reading the request."""
    connections = []
    body = envelope(SEED_ORDER)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")
        if len(connections) > 1:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = make_http(f"http://127.0.0.1:{port}")
    try:
        order = await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    finally:
        await http.aclose()
        server.close()
        await server.wait_closed()

    assert order.status == "CANCELLED"
    assert len(connections) == 2


async def test_transport_error_on_submit_is_not_retried():
    url = "https://api.example.test"
    http = make_http(url)
    try:
        with aioresponses() as mocked:
            mocked.post(url + SUBMIT_PATH, exception=aiohttp.ServerDisconnectedError())
            mocked.post(url + SUBMIT_PATH, body=envelope(SEED_ORDER))
            with pytest.raises(TransportError):
                await http.submit_order(
                    NewOrder(
                        trading_account_id=ACCOUNT_ID,
                        instrument_id="X:A/B",
                        order_side="BUY",
                        order_type="MARKET",
                        quantity="1",
                    )
                )
            calls = sum(len(v) for v in mocked.requests.values())
    finally:
        await http.aclose()

    assert calls == 1


async def test_tls_certificate_failure_is_a_transport_error_and_not_retried(tmp_path):
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    seen = []

    async def handler(request):
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=envelope(SEED_ORDER))

    app = web.Application()
    app.router.add_post(CANCEL_PATH, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    http = make_http(f"https://127.0.0.1:{port}")  # the test CA is not trusted
    try:
        with pytest.raises(TransportError) as info:
            await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    finally:
        await http.aclose()
        await runner.cleanup()

    assert "Certificate" in str(info.value) or "SSL" in str(info.value)
    assert seen == []  # the token never reached the server


# -- lifecycle ----------------------------------------------------------------------------


async def test_calls_after_aclose_raise_client_closed(api, http):
    await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    await http.aclose()
    await http.aclose()  # idempotent

    with pytest.raises(ClientClosedError):
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    assert len(api.requests) == 1


async def test_session_is_opened_lazily_in_the_running_loop(api):
    http = make_http(api.url)
    assert http._session is None
    try:
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)
        assert http._session is not None
    finally:
        await http.aclose()
    assert http._session is None


async def test_cancelling_a_call_mid_request_propagates_and_leaks_nothing(api, http):
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(body=envelope(SEED_ORDER))

    api.handle(slow)
    task = asyncio.ensure_future(http.cancel_order(ORDER_ID, ACCOUNT_ID))
    await asyncio.wait_for(api.received.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()

    order = await http.cancel_order(ORDER_ID, ACCOUNT_ID)  # the client is still usable
    assert order.status == "CANCELLED"


async def test_concurrent_cancels_share_the_session_and_all_succeed(api, http):
    orders = await asyncio.gather(*(http.cancel_order(f"order-{i}", ACCOUNT_ID) for i in range(50)))

    assert len(orders) == 50
    assert len(api.requests) == 50
    assert sorted(msgspec.json.decode(r.body)["tradeOrderId"] for r in api.requests) == sorted(
        f"order-{i}" for i in range(50)
    )


# -- deadlines ----------------------------------------------------------------------------


async def test_deadline_cuts_a_request_that_would_outlive_it(api):
    release = asyncio.Event()

    async def never_answers(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=204)

    http = make_http(api.url, timeouts=Timeouts(connect=1.0, request=30.0))
    api.handle(never_answers)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.2
    try:
        with pytest.raises(TransportError):
            await http.cancel_order(ORDER_ID, ACCOUNT_ID, deadline=deadline)
        ended = loop.time()
    finally:
        release.set()
        await http.aclose()

    # not the 30 s request timeout, and no retry started past the deadline
    assert deadline <= ended < deadline + 5.0
    assert len(api.requests) == 1


async def test_a_first_token_fetch_that_outlasts_the_deadline_ends_at_it_unsent(api):
    """The provider is asked for the first token within the call's deadline, as for a
    fresh one after a 401: a provider that hangs cannot hold a cancel past it."""
    asked = asyncio.Event()

    async def hanging_provider() -> str:
        asked.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    http = make_http(api.url, token=hanging_provider)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.2
    try:
        with pytest.raises(AuthenticationError, match="did not answer within"):
            await asyncio.wait_for(http.cancel_order(ORDER_ID, ACCOUNT_ID, deadline=deadline), 5)
        ended = loop.time()
    finally:
        await http.aclose()
    assert asked.is_set()
    assert deadline <= ended < deadline + 1.0
    assert api.requests == []


@pytest.fixture
def unconnectable_url():
    """A URL whose TCP connect hangs: a listener with its (zero) backlog already full."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    queued = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        queued.append(filler)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in [*queued, server]:
            sock.close()


@pytest.mark.parametrize("remaining", [0.1, 0.4])
async def test_a_request_still_connecting_at_the_deadline_was_not_sent(
    unconnectable_url, remaining
):
    """The deadline's cutoff can only say "may have been sent"; a request that never got a
    connection was not, and the caller learns that (maybe_sent=False), at the deadline."""
    from cadenza_async._http_send import _CONNECT_MARGIN

    http = make_http(unconnectable_url, timeouts=Timeouts(connect=30.0, request=30.0))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + remaining
    # The connect timeout ends _CONNECT_MARGIN before the deadline's cut. A loop stalled
    # past both runs them in one turn and the cut wins: the answer is then the cautious
    # "may have been sent", never a wrong "not sent". This probe tells the two cases apart.
    connect_ends = deadline - _CONNECT_MARGIN
    ran_at: list[float] = []
    probe = loop.call_at(connect_ends, lambda: ran_at.append(loop.time()))
    try:
        with pytest.raises(TransportError) as info:
            await asyncio.wait_for(http.cancel_order(ORDER_ID, ACCOUNT_ID, deadline=deadline), 5)
        ended = loop.time()
    finally:
        probe.cancel()
        await http.aclose()
    stalled = not ran_at or ran_at[0] >= deadline
    assert info.value.maybe_sent is False or stalled, (info.value, ran_at, deadline)
    assert deadline - 0.05 <= ended <= deadline + 0.5


async def test_passed_deadline_sends_nothing(api, http):
    deadline = asyncio.get_running_loop().time() - 0.001
    with pytest.raises(TransportError, match="deadline passed"):
        await http.cancel_order(ORDER_ID, ACCOUNT_ID, deadline=deadline)
    assert api.requests == []


async def _never_answer(request: web.Request) -> web.StreamResponse:
    await asyncio.Event().wait()  # (until the server stops)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("remaining", [0.15, 0.3])
async def test_an_attempt_ends_at_the_deadline_not_after_the_request_timeout(api, remaining):
    """A request that gets no answer ends at the call's deadline, not at the request timeout.

    (A deadline test: the budgets leave a loaded two-core machine time to connect on
    loopback first; with 50 ms the request was sometimes not yet sent at the deadline.)
    """
    http = make_http(api.url, timeouts=Timeouts(connect=1.0, request=30.0))
    api.handle(_never_answer)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(TransportError, match="timed out") as info:
            # (bounded here too: without a cutoff the call would wait 30 s)
            await asyncio.wait_for(
                http.cancel_order(ORDER_ID, ACCOUNT_ID, deadline=started + remaining), 5
            )
        assert remaining <= loop.time() - started < remaining + 0.5
        assert info.value.maybe_sent  # it may have been applied
        assert len(api.requests) == 1  # no time was left for another attempt
        if sys.version_info >= (3, 11):  # the cutoff's cancel was undone
            assert asyncio.current_task().cancelling() == 0
    finally:
        await http.aclose()


async def test_an_attempt_without_a_deadline_ends_after_the_request_timeout(api):
    http = make_http(
        api.url, timeouts=Timeouts(connect=1.0, request=0.2), retry=RetryPolicy(attempts=1)
    )
    api.handle(_never_answer)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(TransportError, match="timed out"):
            await asyncio.wait_for(http.cancel_order(ORDER_ID, ACCOUNT_ID), 5)
        assert 0.2 <= loop.time() - started < 1.0
    finally:
        await http.aclose()


async def test_cancelling_the_caller_during_a_request_is_a_cancel_not_a_timeout(api):
    http = make_http(api.url, timeouts=Timeouts(connect=1.0, request=30.0))
    api.handle(_never_answer)
    try:
        call = asyncio.ensure_future(http.cancel_order(ORDER_ID, ACCOUNT_ID))
        await api.received.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert len(http._cuts) <= 1  # (let go; dropped lazily)
    finally:
        await http.aclose()


async def test_a_fresh_token_that_expires_during_a_long_call_is_refreshed_again(api):
    # tok-1 is refused; tok-2 meets a 503 (the call goes on, retrying), then is
    # refused too (it expired meanwhile): one more refresh, and the call succeeds.
    calls = []

    def provider():
        calls.append(1)
        return f"tok-{len(calls)}"

    http = make_http(api.url, token=provider)
    try:
        api.reply(401, error_body(-2, "expired"))
        api.reply(503, error_body(-3, "busy"))
        api.reply(401, error_body(-2, "expired again"))
        order = await http.cancel_order(ORDER_ID, ACCOUNT_ID)  # then the default answer: CANCELLED
    finally:
        await http.aclose()

    assert order.status == "CANCELLED"
    assert [r.headers["Authorization"] for r in api.requests] == [
        "Bearer tok-1",
        "Bearer tok-2",
        "Bearer tok-2",
        "Bearer tok-3",
    ]
