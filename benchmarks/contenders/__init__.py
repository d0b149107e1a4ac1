"""The four clients the benchmark compares, behind one small interface.

Each contender module exposes ``make() -> Contender``. A contender connects
to a simulator (``start``), cancels one order and waits for the exchange's
proof (``cancel_and_confirm``), cancels many with bounded concurrency
(``cancel_many``, returns how many were confirmed), and closes (``aclose``).

``raw`` and ``peer`` are what a user writes without this SDK; ``sdk_http``
and ``sdk_ws`` are ``CadenzaClient`` with ``cancel_via="http"`` / ``"ws"``;
``sdk_otel`` is ``sdk_http`` instrumented with OpenTelemetry (the ``otel``
extra on, to compare with it off).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

NAMES = ("raw", "peer", "sdk_http", "sdk_ws", "sdk_otel")

#: Statuses after which an order can no longer change (the API's terminal set).
TERMINAL = frozenset({"CANCELLED", "FILLED", "REJECTED", "EXPIRED", "REVOKED", "REPLACED"})


@dataclass(frozen=True)
class Target:
    """Where the simulator listens and who we are on it."""

    api_url: str
    ws_url: str
    token: str
    account: str


class Contender(Protocol):
    name: str

    async def start(self, target: Target) -> None: ...

    async def cancel_and_confirm(self, order_id: str) -> None: ...

    async def cancel_many(self, order_ids: list[str], concurrency: int) -> int: ...

    async def aclose(self) -> None: ...


def make(name: str) -> Contender:
    """A fresh, unstarted contender by name (imports only that contender's libraries)."""
    if name not in NAMES:
        raise ValueError(f"unknown contender {name!r}; choose from {', '.join(NAMES)}")
    module = importlib.import_module(f"contenders.{name}")
    contender: Contender = module.make()
    return contender


async def worker_pool(
    order_ids: Iterable[str], one: Callable[[str], Awaitable[object]], concurrency: int
) -> int:
    """Run ``one`` over the ids with ``concurrency`` workers; how many succeeded.

    The pattern a careful user writes for bulk work: a fixed set of workers
    pulling from one iterator (no task per order, no semaphore queue).
    """
    ids = iter(order_ids)
    done = 0
    failed: list[BaseException] = []

    async def worker() -> None:
        nonlocal done
        for oid in ids:
            try:
                await one(oid)
            except Exception as exc:
                failed.append(exc)
            else:
                done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if failed and not done:
        raise failed[0]
    return done
