"""Running a simulator until cancelled: the body of ``python -m cadenza_async.testing`` and ``cadenza-async sim``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .simulator import CadenzaSimulator

__all__ = ["serve"]


async def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    orders: int = 0,
    out: Callable[[str], Any] = print,
    started: Callable[[CadenzaSimulator], Any] | None = None,
    market_rate: float = 0.0,
    **sim_options: Any,
) -> None:
    """Run a :class:`CadenzaSimulator` until the task is cancelled (Ctrl-C).

    Prints ``api_url``, ``ws_url``, ``token`` and ``trading_account_id`` (one
    ``name: value`` line each) through ``out``, after creating ``orders`` open
    orders on the default account. ``started`` is called with the running
    simulator. ``market_rate`` > 0 moves every book of the simulated market
    that many times a second. ``sim_options`` go to :class:`CadenzaSimulator`. Raises
    ``OSError`` when the port is taken.
    """
    async with CadenzaSimulator(host=host, port=port, **sim_options) as sim:
        if orders:
            sim.create_orders(orders)
        out(f"api_url: {sim.api_url}")
        out(f"ws_url: {sim.ws_url}")
        out(f"token: {sim.token}")
        out(f"trading_account_id: {sim.trading_account_id}")
        out(f"orders: {orders}")
        if started is not None:
            started(sim)
        if market_rate > 0:
            sim.market.run(market_rate)
            out(f"market: {', '.join(sim.market.instruments)} moving {market_rate:g}/s")
        await asyncio.Event().wait()
