"""Shared pieces of the account tests: a simulator with a client on it, and a bounded wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from cadenza_async import CadenzaClient
from cadenza_async.testing import CadenzaSimulator

BTC = "BINANCE:BTC/USDT"
ETH = "BINANCE:ETH/USDT"


@contextlib.asynccontextmanager
async def account_client(
    client_options: dict[str, Any] | None = None, **sim_options: Any
) -> AsyncIterator[tuple[CadenzaSimulator, CadenzaClient]]:
    async with CadenzaSimulator(**sim_options) as sim:
        async with CadenzaClient(
            token=sim.token,
            api_url=sim.api_url,
            ws_url=sim.ws_url,
            trading_account_id=sim.trading_account_id,
            wire=sim.wire,
            reconnect_min_delay=0.01,
            reconnect_max_delay=0.05,
            **(client_options or {}),
        ) as client:
            yield sim, client


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait (polling the loop, bounded) until ``predicate()``; AssertionError at the bound."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def rest_paths(sim: CadenzaSimulator) -> list[str]:
    return [path for _method, path, _body in sim.rest_requests]
