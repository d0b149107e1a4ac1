"""Helpers for the reliability matrix (spec/reliability.md): clients on the simulator, checks, gates.

A plain module imported by the ``test_rel_*`` files (it holds no tests);
what every test file shares is in ``tests/support.py``.

Everything here waits on conditions with bounded timeouts; nothing sleeps
to synchronise. ``STEP`` bounds a single await so a hang fails one test
instead of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from oracle import is_final
from support import client_for, has_update_reader

import cadenza_async.client as client_module
from cadenza_async import CadenzaClient, CancelResult
from cadenza_async.config import RetryPolicy, Timeouts
from cadenza_async.errors import CadenzaError
from cadenza_async.stream import OrderStream
from cadenza_async.testing import CadenzaSimulator

STEP = 5.0
T = TypeVar("T")


async def wait_until(predicate: Callable[[], T], timeout: float = STEP, what: str = "") -> T:
    """Poll ``predicate`` until truthy; ``AssertionError`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"not met within {timeout:g}s: {what or predicate}")
        await asyncio.sleep(0.002)


def lookups(sim: CadenzaSimulator) -> list[str | None]:
    """The order ids the simulator was asked about by REST look-up (``GET .../list``)."""
    return [
        query.get("tradeOrderId") for method, _path, query in sim.rest_requests if method == "GET"
    ]


def assert_consistent(sim: CadenzaSimulator, order_id: str, outcome: object) -> None:
    """``outcome`` is exactly one proven result or a typed error, and agrees with the exchange.

    A :class:`CancelResult` must show the terminal status the simulator has
    now (nothing invented), and a cancelled order was cancelled once; an
    error must be a :class:`CadenzaError` (or ``ValueError`` for a bad id).
    """
    final = sim.get_order(order_id)
    if isinstance(outcome, CancelResult):
        assert final is not None, f"{order_id}: a result for an order the exchange never had"
        assert is_final(outcome.status), f"{order_id}: result with non-terminal {outcome.status}"
        assert outcome.status == final.status, (
            f"{order_id}: result says {outcome.status}, exchange says {final.status}"
        )
        assert outcome.cancelled == (final.status == "CANCELLED")
        if outcome.cancelled:
            assert sim.cancels_applied[order_id] <= 1
        assert outcome.source in ("ws", "http", "rest")
    else:
        assert isinstance(outcome, (CadenzaError, ValueError)), (
            f"{order_id}: untyped outcome {type(outcome).__name__}: {outcome!r}"
        )


def seed_stream_rng(monkeypatch: pytest.MonkeyPatch, rng: random.Random) -> list[OrderStream]:
    """Make the client build its OrderStream with ``rng`` for the reconnect jitter.

    The rest of the stream's tuning (``ping_grace``, reconnect delays,
    ``max_message_size``) are client settings; only the random source is
    not, so a test that predicts the jitter patches the class the client
    instantiates. Returns the streams built, in order.
    """
    built: list[OrderStream] = []

    class SeededStream(OrderStream):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "rng": rng})
            built.append(self)

    monkeypatch.setattr(client_module, "OrderStream", SeededStream)
    return built


#: The rows' client settings: short timeouts and quick retries, so a fault shows fast.
QUICK: dict[str, Any] = {
    "timeouts": Timeouts(connect=3.0, request=2.0, confirm=STEP),
    "retry": RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05),
    "drain_timeout": 2.0,
}


def client_on(sim: CadenzaSimulator, **options: Any) -> CadenzaClient:
    """A client on the simulator with the ``QUICK`` settings (``options`` win), not entered yet.

    Use it as ``async with client_on(sim) as client:``.
    """
    return client_for(sim, **{**QUICK, **options})


class UpdateLog:
    """Reads ``client.order_updates()`` in an owned task and records (order id, status)."""

    def __init__(self, client: CadenzaClient) -> None:
        self.seen: list[tuple[str, str]] = []
        self._client = client
        self._changed = asyncio.Event()
        self._iter = client.order_updates()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> UpdateLog:
        self._task = asyncio.ensure_future(self._read())
        await wait_until(
            lambda: has_update_reader(self._client), what="order_updates reader registered"
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._iter.aclose()

    async def _read(self) -> None:
        async for order in self._iter:
            self.seen.append((order.trade_order_id, order.status))
            self._changed.set()

    def of(self, order_id: str) -> list[str]:
        return [status for oid, status in self.seen if oid == order_id]

    async def wait(self, predicate: Callable[[], bool], timeout: float = STEP) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)


class HandshakeGate:
    """A loopback TCP front for the WebSocket endpoint that fails the first handshakes on script.

    ``script`` lists what the first connections get: ``"503"`` (an HTTP 503
    answer to the upgrade request) or ``"close"`` (accepted, then closed
    without a word). Later connections are piped to ``target_port``. Records
    each connection's start time, its request head, and the most connections
    open at once.
    """

    def __init__(self, target_port: int, script: list[str]) -> None:
        self._target_port = target_port
        self._script = list(script)
        self.attempts: list[float] = []
        self.heads: list[bytes] = []
        self.live = 0
        self.max_live = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> HandshakeGate:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.attempts.append(time.monotonic())
        self.live += 1
        self.max_live = max(self.max_live, self.live)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP)
            self.heads.append(head)
            action = self._script.pop(0) if self._script else "pass"
            if action == "503":
                writer.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
                await writer.drain()
            elif action == "pass":
                await self._pipe(head, reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        finally:
            self.live -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _pipe(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        up_writer.write(head)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        try:
            await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()
