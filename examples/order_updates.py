"""Streaming order updates while cancelling.

``client.order_updates()`` yields every order update on the subscribed
accounts as it arrives over the WebSocket. It never slows the stream down: a
reader that falls behind loses the oldest updates (logged and counted in
``client.updates_dropped``). The iteration ends when the client closes.

Runs against a local simulator unless ``CADENZA_TOKEN`` (and the other
``CADENZA_*`` variables) are set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from cadenza_async import CadenzaClient
from cadenza_async.testing import CadenzaSimulator

INSTRUMENT = os.environ.get("CADENZA_INSTRUMENT_ID", "BINANCE:BTC/USDT")


@contextlib.asynccontextmanager
async def open_client() -> AsyncIterator[CadenzaClient]:
    """The real API when CADENZA_TOKEN is set, otherwise a simulator on loopback."""
    if os.environ.get("CADENZA_TOKEN"):
        async with CadenzaClient.from_env() as client:
            yield client
        return
    async with (
        CadenzaSimulator(cancel_delay=0.02) as sim,
        CadenzaClient(
            token=sim.token,
            api_url=sim.api_url,
            ws_url=sim.ws_url,
            trading_account_id=sim.trading_account_id,
        ) as client,
    ):
        yield client


async def print_updates(client: CadenzaClient) -> int:
    seen = 0
    async for order in client.order_updates():  # ends when the client closes
        seen += 1
        print(f"update: {order.trade_order_id} {order.status}")
    return seen


async def main() -> None:
    async with open_client() as client:
        # The reader runs beside the strategy; we own the task and await it below.
        reader = asyncio.create_task(print_updates(client))
        try:
            for _ in range(3):
                order = await client.submit_order(
                    instrument_id=INSTRUMENT,
                    order_side="BUY",
                    order_type="LIMIT",
                    quantity="0.001",
                    limit_price="1000",
                )
                result = await client.cancel_and_confirm(order.trade_order_id)
                print(f"confirmed: {result.order_id} {result.status}")
        except BaseException:
            reader.cancel()
            raise
    # Leaving the block closed the client: the reader printed what it had and stopped.
    seen = await reader
    print(f"{seen} order updates received")


if __name__ == "__main__":
    asyncio.run(main())
