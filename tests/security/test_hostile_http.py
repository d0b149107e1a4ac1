"""HTTP against hostile servers on loopback: bounded replies, no token in errors, no resent submit.

Memory is measured with tracemalloc around the call (the server runs in the
same process, so its allocations count too): a reply refused at the cap must
cost a small fraction of the body the server offers.
"""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import lru_cache
from typing import Any

import msgspec
import pytest
from aiohttp import web
from support import ACCOUNT_ID, ORDER_ID, SEED_ORDER, ScriptedApi, envelope

from cadenza_async import (
    ApiError,
    AuthenticationError,
    CadenzaClient,
    RateLimitError,
    ResponseTooLargeError,
    RetryPolicy,
    Timeouts,
    UnexpectedResponseError,
)
from cadenza_async._auth import TokenSource
from cadenza_async._ratelimit import RateGate
from cadenza_async.config import ClientConfig
from cadenza_async.http import HttpApi

MiB = 2**20
TOKEN = "sekret-" + "Q7wZ9xK2mV4pL8rT3nB6yH1cF5gJ0dS"
WS = "ws://127.0.0.1:9/connection/websocket"
# A refused reply may cost the cap plus buffers, never the body: 100 MiB offered, < 16 MiB used.
MEMORY_BOUND = 16 * MiB


def fragments(secret: str, size: int = 8) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def assert_no_fragment(secret: str, *texts: str) -> None:
    for text in texts:
        for piece in fragments(secret):
            assert piece not in text, f"{piece!r} of the token in {text[:200]!r}"


def make_http(url: str, token: Any = TOKEN, **changes: Any) -> HttpApi:
    config = ClientConfig(
        token=token,
        api_url=url,
        ws_url=WS,
        retry=changes.pop("retry", RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002)),
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


async def peak_memory(call: Callable[[], Awaitable[Any]]) -> tuple[BaseException | None, int]:
    """Run ``call``; the exception it raised (or None) and the traced peak in bytes."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    error: BaseException | None = None
    try:
        await call()
    except Exception as exc:
        error = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return error, peak


def streaming(
    total: int, *, chunk: int = MiB, declare_length: bool, headers: dict[str, str] | None = None
) -> tuple[Callable[[web.Request], Awaitable[web.StreamResponse]], list[int]]:
    """A handler that streams ``total`` zero bytes; the list holds how many it managed to send."""
    block = bytes(chunk)
    sent = [0]

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_type = "application/json"
        if declare_length:
            resp.content_length = total
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            while sent[0] < total:
                piece = block[: min(chunk, total - sent[0])]
                await resp.write(piece)
                sent[0] += len(piece)
        except (ConnectionError, OSError):
            pass  # the client hung up: that is the point
        return resp

    return handler, sent


@lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """400 MiB of zeros, gzip-compressed (about 400 KB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MiB)
    body = b"".join(packer.compress(zeros) for _ in range(400)) + packer.flush()
    assert len(body) < MiB
    return body


# ------------------------------------------------------------------ bounded replies


async def test_a_100_mib_reply_with_content_length_is_refused_unread(api, http):
    handler, sent = streaming(100 * MiB, declare_length=True)
    api.handle(handler)

    error, peak = await peak_memory(lambda: http.cancel_order(ORDER_ID, ACCOUNT_ID))

    assert isinstance(error, ResponseTooLargeError), error
    assert isinstance(error, UnexpectedResponseError)
    assert error.status == 200
    assert error.limit == 4 * MiB
    assert "104857600 bytes" in str(error)
    assert peak < MEMORY_BOUND, f"peak {peak / MiB:.1f} MiB"
    assert len(api.requests) == 1  # not retried
    assert sent[0] < 100 * MiB


async def test_a_100_mib_chunked_reply_is_read_only_up_to_the_cap(api, http):
    handler, sent = streaming(100 * MiB, chunk=64 * 1024, declare_length=False)
    api.handle(handler)

    error, peak = await peak_memory(lambda: http.cancel_order(ORDER_ID, ACCOUNT_ID))

    assert isinstance(error, ResponseTooLargeError), error
    assert "reading stopped" in str(error)
    assert peak < MEMORY_BOUND, f"peak {peak / MiB:.1f} MiB"
    assert sent[0] < 100 * MiB  # the connection was dropped, not drained
    assert len(api.requests) == 1


async def test_a_gzip_bomb_is_refused_without_inflating_it(api, http):
    bomb = gzip_bomb()

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    api.handle(handler)

    error, peak = await peak_memory(lambda: http.cancel_order(ORDER_ID, ACCOUNT_ID))

    assert isinstance(error, ResponseTooLargeError), error
    assert "gzip" in str(error)
    assert peak < MEMORY_BOUND, f"peak {peak / MiB:.1f} MiB"
    assert api.requests[0].headers["Accept-Encoding"] == "identity"


async def test_a_chunked_gzip_bomb_is_refused_too(api, http):
    handler, _ = streaming(
        len(gzip_bomb()), declare_length=False, headers={"Content-Encoding": "gzip"}
    )
    api.handle(handler)

    error, peak = await peak_memory(lambda: http.cancel_order(ORDER_ID, ACCOUNT_ID))

    assert isinstance(error, ResponseTooLargeError), error
    assert peak < MEMORY_BOUND


@pytest.mark.parametrize("declare_length", [True, False])
async def test_a_reply_of_exactly_the_cap_is_read_and_one_byte_more_is_refused(api, declare_length):
    limit = 4096
    body = envelope(SEED_ORDER)
    exact = body + b" " * (limit - len(body))  # JSON allows trailing whitespace

    def answer(payload: bytes) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse()
            resp.content_type = "application/json"
            if declare_length:
                resp.content_length = len(payload)
            else:
                resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(payload)
            await resp.write_eof()
            return resp

        return handler

    api.handle(answer(exact))
    api.handle(answer(exact + b" "))
    http = make_http(api.url, max_response_size=limit)
    try:
        order = await http.cancel_order(ORDER_ID, ACCOUNT_ID)
        assert order.trade_order_id == ORDER_ID
        with pytest.raises(ResponseTooLargeError):
            await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    finally:
        await http.aclose()


async def test_the_connection_is_usable_again_after_a_refused_reply(api, http):
    handler, _ = streaming(10 * MiB, declare_length=False)
    api.handle(handler)
    with pytest.raises(ResponseTooLargeError):
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)

    order = await http.cancel_order(ORDER_ID, ACCOUNT_ID)  # a fresh connection, a normal answer

    assert order.trade_order_id == ORDER_ID


def test_max_response_size_is_validated():
    from cadenza_async import ConfigurationError

    with pytest.raises(ConfigurationError):
        ClientConfig(token="t", max_response_size=10)
    with pytest.raises(ConfigurationError):
        ClientConfig(token="t", max_response_size=True)  # type: ignore[arg-type]
    assert ClientConfig(token="t").max_response_size == 4 * MiB


# ------------------------------------------------------------------ tokens echoed by the server


def echo_error(status: int, text: str) -> bytes:
    return msgspec.json.encode({"data": None, "success": False, "errno": -1, "error": text})


ECHOES = [
    f"bad request header: Authorization: Bearer {TOKEN}",
    f"token {TOKEN} is not valid",
    f"token {TOKEN[:19]}... is not valid",  # a server that truncates still leaks a prefix
    f'{{"token":"{TOKEN}"}}',
]


@pytest.mark.parametrize("text", ECHOES)
async def test_a_401_that_echoes_the_token_does_not_put_it_in_the_error(api, http, text):
    api.reply(401, echo_error(401, text), headers={"X-Request-Id": f"req-{TOKEN}"})

    with pytest.raises(AuthenticationError) as info:
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)

    assert api.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    error = info.value
    assert_no_fragment(TOKEN, str(error), repr(error), error.message, str(error.request_id))
    assert "***" in error.message


@pytest.mark.parametrize("status", [400, 403, 404, 409, 500, 302])
async def test_every_error_status_scrubs_an_echoed_token(api, status):
    headers = {"Location": f"https://elsewhere.example/?token={TOKEN}"} if status == 302 else None
    api.reply(status, echo_error(status, f"Authorization: Bearer {TOKEN}"), headers=headers)
    http = make_http(api.url, retry=RetryPolicy(attempts=1))
    try:
        with pytest.raises(ApiError) as info:
            await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    finally:
        await http.aclose()
    assert_no_fragment(TOKEN, str(info.value), repr(info.value))


async def test_a_success_false_envelope_that_echoes_the_token_is_scrubbed(api, http):
    api.reply(200, echo_error(200, f"session {TOKEN} closed"))

    with pytest.raises(ApiError) as info:
        await http.cancel_order(ORDER_ID, ACCOUNT_ID)

    assert_no_fragment(TOKEN, str(info.value), repr(info.value))


async def test_a_refreshed_token_echoed_after_the_retry_is_scrubbed_too(api):
    tokens = iter(["first-" + TOKEN, "second-" + TOKEN[::-1]])
    handed: list[str] = []

    def provider() -> str:
        handed.append(next(tokens))
        return handed[-1]

    async def echo(request: web.Request) -> web.StreamResponse:
        header = request.headers["Authorization"]
        return web.Response(status=401, body=echo_error(401, f"refused {header}"))

    api.handle(echo)
    api.handle(echo)
    http = make_http(api.url, token=provider)
    try:
        with pytest.raises(AuthenticationError) as info:
            await http.cancel_order(ORDER_ID, ACCOUNT_ID)
    finally:
        await http.aclose()
    assert len(handed) == 2
    for token in handed:
        assert_no_fragment(token, str(info.value), repr(info.value))


# ------------------------------------------------------------------ submit and 429


async def test_a_429_on_submit_order_sends_exactly_one_post(api):
    api.reply(429, echo_error(429, "slow down"), headers={"Retry-After": "0"})
    client = CadenzaClient(
        token=TOKEN,
        api_url=api.url,
        ws_url=WS,
        trading_account_id=ACCOUNT_ID,
        timeouts=Timeouts(connect=1.0, request=2.0),
        retry=RetryPolicy(attempts=5, base_delay=0.001, max_delay=0.002),
    )
    try:
        with pytest.raises(RateLimitError) as info:
            await client.submit_order(
                instrument_id="BINANCE:BTC/USDT",
                order_side="BUY",
                order_type="LIMIT",
                quantity="0.01",
                limit_price="50000",
                client_order_id="client-1",
            )
    finally:
        await client.aclose()
    assert info.value.retry_after == 0.0
    assert [(r.method, r.path) for r in api.requests] == [("POST", "/api/v3/tradeOrder/submit")]
