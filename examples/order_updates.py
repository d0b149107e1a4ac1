"""Streaming order updates while cancelling.

``client.order_updates()`` yields every order update on the subscribed
accounts as it arrives over the WebSocket. It never slows the stream down: a
reader that falls behind loses the oldest updates (logged and counted in
``client.stats().updates_dropped``). The iteration ends when the client closes.

Runs against an exchange simulator started in the process, whatever the
environment says. ``--live ID [ID ...]`` uses the API named by the
``CADENZA_*`` variables instead (updates of ``CADENZA_TRADING_ACCOUNT_ID``)
and cancels only the orders you pass: it never places an order on a live API.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

from cadenza_async import CadenzaClient, CadenzaError, ConfigurationError
from cadenza_async.testing import CadenzaSimulator

INSTRUMENT = "BINANCE:BTC/USDT"


async def print_updates(client: CadenzaClient) -> int:
    seen = 0
    async for order in client.order_updates():  # ends when the client closes
        seen += 1
        print(f"update: {order.trade_order_id} {order.status}")
    return seen


async def cancel_and_confirm(client: CadenzaClient, order_id: str) -> None:
    try:
        result = await client.cancel_and_confirm(order_id)
    except CadenzaError as exc:
        print(f"failed: {order_id} {type(exc).__name__}")
        return
    print(f"confirmed: {result.order_id} {result.status}")


async def watch_while(client: CadenzaClient, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` with a reader printing updates beside it; close; count what it saw."""
    async with client:
        # The reader runs beside the strategy; we own the task and await it below.
        reader = asyncio.create_task(print_updates(client))
        try:
            await work()
        except BaseException:
            reader.cancel()
            raise
    # Leaving the block closed the client: the reader printed what it had and stopped.
    seen = await reader
    print(f"{seen} order updates received")


async def simulated() -> None:
    async with CadenzaSimulator(cancel_delay=0.02) as sim:
        client = CadenzaClient(
            token=sim.token,
            api_url=sim.api_url,
            ws_url=sim.ws_url,
            trading_account_id=sim.trading_account_id,
        )

        async def work() -> None:
            for _ in range(3):
                order = await client.submit_order(
                    instrument_id=INSTRUMENT,
                    order_side="BUY",
                    order_type="LIMIT",
                    quantity="0.001",
                    limit_price="1000",
                )
                await cancel_and_confirm(client, order.trade_order_id)

        await watch_while(client, work)


async def live(order_ids: list[str]) -> None:
    """Cancel the given orders on the live API while printing updates; nothing is placed."""
    client = CadenzaClient.from_env()

    async def work() -> None:
        for order_id in order_ids:
            await cancel_and_confirm(client, order_id)

    await watch_while(client, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", action="store_true", help="use the CADENZA_* API: cancel only")
    parser.add_argument("order_ids", nargs="*", metavar="ID", help="with --live: orders to cancel")
    args = parser.parse_args()
    if not args.live:
        if args.order_ids:
            parser.error("order ids are for --live; the simulator places its own orders")
        asyncio.run(simulated())
    elif not args.order_ids:
        parser.error("--live cancels only the orders you name: pass their ids")
    else:
        try:
            asyncio.run(live(args.order_ids))
        except ConfigurationError as exc:  # no CADENZA_TOKEN, an unsafe URL, ...
            parser.error(str(exc))


if __name__ == "__main__":
    main()
