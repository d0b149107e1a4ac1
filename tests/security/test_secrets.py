"""A canary token must never leak: not in logs at DEBUG, reprs, errors or their chains.

"Leak" means any run of 8 or more of the canary's characters, not only the
whole token: a logger or a server that truncates still gives a prefix away.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket

import pytest
from aiohttp import web
from support import ACCOUNT_ID, ORDER_ID, ScriptedApi, envelope

from cadenza_async import CadenzaClient, CadenzaError
from cadenza_async.config import RetryPolicy, Timeouts

# No hex digits after the prefix: a run of the canary cannot match an order id by chance.
CANARY = "canary-" + "".join(secrets.choice("GHJKLMNPQRSTVWXYZ") for _ in range(32))
FRAGMENT = 8
WS = "ws://127.0.0.1:9/connection/websocket"
LOGGERS = [
    None,  # root
    "aiohttp",
    "aiohttp.client",
    "aiohttp.access",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.internal",
    "asyncio",
    "cadenza_async",
    "cadenza_async.http",
]


def chain(exc: BaseException | None):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        yield from chain(exc.__cause__)
        exc = exc.__context__


def canary_piece_in(text: str) -> str | None:
    """The first FRAGMENT-long run of the canary found in ``text``, or None."""
    for i in range(len(CANARY) - FRAGMENT + 1):
        if CANARY[i : i + FRAGMENT] in text:
            return CANARY[i : i + FRAGMENT]
    return None


def assert_no_canary(*objects: object) -> None:
    for obj in objects:
        texts = [repr(obj), str(obj)]
        if isinstance(obj, BaseException):
            for link in chain(obj):
                texts += [repr(link), str(link), repr(link.args), repr(vars(link))]
        for text in texts:
            piece = canary_piece_in(text)
            assert piece is None, f"canary {piece!r} leaked via {type(obj).__name__}: {text[:200]}"


@pytest.fixture
def debug_logs(caplog):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_canary_token_leaks_nowhere_across_success_and_failures(api: ScriptedApi, debug_logs):
    calls = []

    async def provider() -> str:
        calls.append(1)
        return f"{CANARY}-{len(calls)}"

    release = asyncio.Event()

    async def never_answers(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=204)

    errors: list[BaseException] = []
    client = CadenzaClient(
        token=provider,
        api_url=api.url,
        ws_url=WS,
        trading_account_id=ACCOUNT_ID,  # (the cancel needs no look-up of its account first)
        timeouts=Timeouts(connect=1.0, request=0.2),
        retry=RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001),
    )
    try:
        await client.cancel(ORDER_ID)  # success
        api.reply(401, envelope(None, success=False, errno=-2, error="expired"))
        api.reply(401, envelope(None, success=False, errno=-2, error="expired"))
        api.reply(500, b"oops")
        api.reply(500, b"oops")
        api.handle(never_answers)
        api.handle(never_answers)
        for _ in range(3):  # 401 twice, 500 exhausted, timeout
            try:
                await client.cancel(ORDER_ID)
            except CadenzaError as exc:
                errors.append(exc)
        assert_no_canary(client, client.config, client._tokens, client._http)
    finally:
        release.set()
        await client.aclose()

    refused = CadenzaClient(
        token=CANARY,
        api_url=f"http://127.0.0.1:{_closed_port()}",
        ws_url=WS,
        retry=RetryPolicy(attempts=1),
    )
    try:
        await refused.cancel(ORDER_ID)
    except CadenzaError as exc:
        errors.append(exc)
    finally:
        await refused.aclose()

    assert [type(e).__name__ for e in errors] == [
        "AuthenticationError",
        "ServerError",
        "TransportError",
        "TransportError",
    ]
    assert all(r.headers["Authorization"].startswith(f"Bearer {CANARY}") for r in api.requests)
    assert_no_canary(*errors)
    assert debug_logs.records, "DEBUG logging captured nothing: the test would prove nothing"
    for record in debug_logs.records:
        text = record.getMessage() + repr(record.args) + repr(record.exc_info)
        assert canary_piece_in(text) is None, f"canary in log {record.name}: {text[:200]}"


async def test_failing_provider_error_hides_the_providers_message(api, debug_logs):
    def provider() -> str:
        raise RuntimeError(f"vault said no for {CANARY}")

    client = CadenzaClient(token=provider, api_url=api.url, ws_url=WS)
    try:
        with pytest.raises(CadenzaError) as info:
            await client.cancel(ORDER_ID)
    finally:
        await client.aclose()

    assert api.requests == []
    assert_no_canary(info.value)
    assert all(canary_piece_in(r.getMessage()) is None for r in debug_logs.records)


def test_the_canary_check_catches_a_piece_of_the_token():
    assert canary_piece_in(f"Bearer {CANARY[:19]}...") is not None
    assert canary_piece_in(f"...{CANARY[-8:]}") is not None
    assert canary_piece_in(f"{CANARY[:7]} 770e8400-e29b-41d4") is None
    with pytest.raises(AssertionError):
        assert_no_canary(RuntimeError(f"token {CANARY[5:20]} refused"))


def test_string_token_is_not_in_client_or_config_reprs():
    client = CadenzaClient(token=CANARY, api_url="https://api.example.com", ws_url="wss://w/c")
    assert_no_canary(client, client.config, client._tokens, client._http, client._gate)
