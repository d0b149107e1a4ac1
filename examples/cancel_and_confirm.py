"""A quoting loop that re-quotes only once the old quote is proven gone.

A market maker that moves its quote must not have two quotes live at once.
``cancel_and_confirm`` returns when the exchange has processed the cancel
(confirmed by the order-update event, not by the HTTP reply), and tells you
whether the order was cancelled or filled first: both are outcomes, not errors.

Run it as is: without ``CADENZA_TOKEN`` it starts a local exchange simulator.
With ``CADENZA_TOKEN``, ``CADENZA_API_URL``, ``CADENZA_WS_URL`` and
``CADENZA_TRADING_ACCOUNT_ID`` set it trades on that API (small limit orders
far from the market on ``CADENZA_INSTRUMENT_ID``, default BINANCE:BTC/USDT).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from decimal import Decimal

from cadenza_async import CadenzaClient
from cadenza_async.testing import CadenzaSimulator

INSTRUMENT = os.environ.get("CADENZA_INSTRUMENT_ID", "BINANCE:BTC/USDT")


@contextlib.asynccontextmanager
async def open_client() -> AsyncIterator[tuple[CadenzaClient, CadenzaSimulator | None]]:
    """The real API when CADENZA_TOKEN is set, otherwise a simulator on loopback."""
    if os.environ.get("CADENZA_TOKEN"):
        async with CadenzaClient.from_env() as client:
            yield client, None
        return
    # cancel_delay: the exchange takes 20 ms to process a cancel, like a real venue.
    async with (
        CadenzaSimulator(cancel_delay=0.02) as sim,
        CadenzaClient(
            token=sim.token,
            api_url=sim.api_url,
            ws_url=sim.ws_url,
            trading_account_id=sim.trading_account_id,
        ) as client,
    ):
        yield client, sim


async def main() -> None:
    async with open_client() as (client, sim):
        price = Decimal("1000.00")  # far below the market: the quote rests
        filled = Decimal("0")
        for round_no in range(1, 6):
            quote = await client.submit_order(
                instrument_id=INSTRUMENT,
                order_side="BUY",
                order_type="LIMIT",
                quantity="0.001",
                limit_price=price,
                time_in_force="GTC",
            )
            if sim is not None and round_no == 3:
                sim.fill(quote.trade_order_id)  # the simulated market trades through our quote

            # The market moved: pull the quote, and wait until the exchange says it is gone.
            result = await client.cancel_and_confirm(quote.trade_order_id, timeout=10.0)
            if result.cancelled:
                what = "cancelled"
            else:  # FILLED (or REJECTED, EXPIRED, ...): the quote is gone, but it traded
                filled += result.order.executed_quantity_decimal or 0
                what = f"NOT cancelled: {result.status}"
            print(
                f"round {round_no}: quote @ {price} -> {what} "
                f"(proved by {result.source} after {result.latency * 1000:.1f} ms)"
            )
            price -= Decimal("0.50")  # only now is it safe to quote again
        print(f"done: 5 quotes, position {filled} filled")


if __name__ == "__main__":
    asyncio.run(main())
