"""Shared set-up of the market tests: a simulator and a client on it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

from cadenza_async import CadenzaClient
from cadenza_async.testing import CadenzaSimulator

BTC = "BINANCE:BTC/USDT"
ETH = "BINANCE:ETH/USDT"


@contextlib.asynccontextmanager
async def market_client(**sim_options) -> AsyncIterator[tuple[CadenzaSimulator, CadenzaClient]]:
    async with CadenzaSimulator(**sim_options) as sim:
        async with CadenzaClient(
            token=sim.token,
            api_url=sim.api_url,
            ws_url=sim.ws_url,
            trading_account_id=sim.trading_account_id,
            reconnect_min_delay=0.01,
            reconnect_max_delay=0.05,
        ) as client:
            yield sim, client


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (polling the loop, bounded) until ``predicate()``; AssertionError at the bound."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def as_dict(levels) -> dict[Decimal, Decimal]:
    return {level.price: level.quantity for level in levels}
