"""Shared test helpers (no tests, no fixtures): the seed order, a scripted REST server, clients.

The fixtures built on these live in ``conftest.py`` (``api``, ``open_client``);
test files import the plain names from here: ``from support import ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestServer
from anyio.from_thread import BlockingPortal

from cadenza_async import BlockingCadenzaClient, CadenzaClient
from cadenza_async.testing import CadenzaSimulator

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
    Started and stopped by the ``api`` fixture.
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


# -- clients on the simulator ----------------------------------------------------------------


def client_for(sim: CadenzaSimulator, **options: Any) -> CadenzaClient:
    """A CadenzaClient on ``sim`` (its token, URLs and account), not entered yet.

    ``options`` go to the constructor and win over the simulator's values
    (``trading_account_id=None`` subscribes nothing at start). Use it as
    ``async with client_for(sim) as client:``; the ``open_client`` fixture
    gives one that is entered and closed after the test.
    """
    settings: dict[str, Any] = {
        "token": sim.token,
        "api_url": sim.api_url,
        "ws_url": sim.ws_url,
        "trading_account_id": sim.trading_account_id,
        **options,
    }
    return CadenzaClient(**settings)


def cancels_of(sim: CadenzaSimulator, order_id: str) -> list[str]:
    """How each cancel of ``order_id`` reached the simulator (``"http"`` or ``"ws"``)."""
    return [via for oid, via in sim.cancel_requests if oid == order_id]


def _server_side(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return "aiohttp/web" in filename or "cadenza_async/testing" in filename


def other_tasks() -> set[asyncio.Task[Any]]:
    """The running tasks but this one and the in-process simulator's own.

    The simulator's per-connection handlers end a few loop turns after the
    client closed its sockets (Python 3.12 schedules that later than 3.11):
    they are the server's, not the client's.
    """
    return {
        t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not _server_side(t)
    }


# -- what no public surface shows yet ---------------------------------------------------------
# Each reads a private attribute of CadenzaClient, here and nowhere else in the
# shared tests, so a public surface that appears replaces it in one place.


def has_update_reader(client: CadenzaClient) -> bool:
    """True once an ``order_updates()`` reader has registered (and until it stops)."""
    return bool(client._updates)


def waiters_held(client: CadenzaClient) -> int:
    """The confirmation waiters the client holds, resolved ones included until released.

    ``stats().pending_cancels`` counts only the unresolved ones: this also
    sees a waiter a caller forgot to release.
    """
    return len(client._registry)


# -- waiting on conditions, always bounded ------------------------------------------------------

#: Seconds past a deadline a call may take to return on a busy two-core machine: the loop's
#: scheduling slack (tens of ms, see the README) with room for other work on the machine.
#: Deadline tests bound their wall-clock window with it (and say so); no other test has one.
DEADLINE_SLACK = 0.25


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Wait until ``predicate()`` is truthy (checked every millisecond); its value.

    Raises ``AssertionError`` after ``timeout`` seconds: a bound, not a pace (the
    condition usually holds within a few loop turns).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"condition not met within {timeout:g}s")
        await asyncio.sleep(0.001)


async def turns_until(predicate: Callable[[], Any], turns: int = 100) -> Any:
    """Wait until ``predicate()`` is truthy, at most ``turns`` loop turns; its value.

    For what needs no time at all, only other tasks to run a step (a task
    started, a callback run): raises ``AssertionError`` past the bound.
    """
    for _ in range(turns):
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0)
    raise AssertionError(f"condition not met within {turns} loop turns")


@contextlib.contextmanager
def clock_jumped(seconds: float) -> Iterator[None]:
    """The running loop's clock reads ``seconds`` later, as after a loop stalled that long.

    Timers keep their times, so each one due within the jump runs at its next turn:
    what a stalled loop does, with no real stall (no ``time.sleep``).
    """
    loop = asyncio.get_running_loop()
    real = loop.time
    loop.time = lambda: real() + seconds  # type: ignore[method-assign]
    try:
        yield
    finally:
        del loop.time  # type: ignore[method-assign]


T = TypeVar("T")


class ThreadedSim:
    """A simulator running on a loop thread of its own; every call goes through its portal."""

    def __init__(self, portal: BlockingPortal, sim: CadenzaSimulator) -> None:
        self.portal = portal
        self.sim = sim

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.portal.call(lambda: fn(*args, **kwargs))

    def order_ids(self, n: int, **kwargs: Any) -> list[str]:
        orders = self.call(self.sim.create_orders, n, **kwargs)
        return [o.trade_order_id for o in orders]

    def status(self, order_id: str) -> str | None:
        order = self.call(self.sim.get_order, order_id)
        return None if order is None else order.status

    def client(self, **options: Any) -> BlockingCadenzaClient:
        return BlockingCadenzaClient(
            token=self.sim.token,
            api_url=self.sim.api_url,
            ws_url=self.sim.ws_url,
            trading_account_id=self.sim.trading_account_id,
            **options,
        )
