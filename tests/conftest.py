"""Shared test fixtures: a scripted REST server on loopback that records every request."""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

ORDER_ID = "770e8400-e29b-41d4-a716-446655440002"
ACCOUNT_ID = "550e8400-e29b-41d4-a716-446655440000"

# The seed's example order (spec/seed-cancel-order.txt).
SEED_ORDER: dict[str, Any] = {
    "tradeOrderId": ORDER_ID,
    "tradingAccountId": ACCOUNT_ID,
    "venue": "BINANCE",
    "instrumentId": "BINANCE:BTC/USDT",
    "baseAsset": "BTC",
    "quoteAsset": "USDT",
    "orderSide": "BUY",
    "orderType": "LIMIT",
    "timeInForce": "GTC",
    "status": "CANCELLED",
    "limitPrice": "50000.00",
    "quantity": "0.001",
    "executedQuantity": "0",
    "executedCost": "0",
    "createdAt": 1703052635110,
    "updatedAt": 1703052700000,
    "cancelledAt": 1703052700000,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def envelope(data: Any = None, *, success: bool = True, errno: int = 0, error: Any = None) -> bytes:
    return msgspec.json.encode({"data": data, "success": success, "errno": errno, "error": error})


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int] | None = None


class ScriptedApi:
    """A real aiohttp server on 127.0.0.1 that answers from a script and records requests.

    Queue answers with :meth:`reply` (status/body/headers) or :meth:`handle`
    (any handler); when the queue is empty it answers 200 with the seed order.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: deque[Handler] = deque()
        self.received = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def reply(
        self, status: int = 200, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> None:
        payload = envelope(SEED_ORDER) if body is None else body

        async def answer(request: web.Request) -> web.StreamResponse:
            return web.Response(
                status=status, body=payload, headers=headers, content_type="application/json"
            )

        self.script.append(answer)

    def handle(self, handler: Handler) -> None:
        self.script.append(handler)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                await request.read(),
                request.transport.get_extra_info("peername") if request.transport else None,
            )
        )
        self.received.set()
        if self.script:
            return await self.script.popleft()(request)
        return web.Response(body=envelope(SEED_ORDER), content_type="application/json")


@pytest.fixture
async def api() -> AsyncIterator[ScriptedApi]:
    scripted = ScriptedApi()
    await scripted.server.start_server()
    try:
        yield scripted
    finally:
        await scripted.server.close()


def pytest_configure(config: pytest.Config) -> None:
    if sys.version_info < (3, 11):
        # CPython 3.10's asyncio SSL transport is not closed when its socket is
        # reset mid-record (the TLS fault tests do that on purpose); 3.11
        # rewrote it. Its ResourceWarning comes from __del__, whenever the
        # object happens to be collected, so it is ignored by name on 3.10 only.
        config.addinivalue_line(
            "filterwarnings",
            "ignore:Exception ignored in. <function _SSLProtocolTransport.__del__"
            ":pytest.PytestUnraisableExceptionWarning",
        )
