"""A quoting loop that re-quotes only once the old quote is proven gone.

A market maker that moves its quote must not have two quotes live at once.
``cancel_and_confirm`` returns when the exchange has processed the cancel
(confirmed by the order-update event, not by the HTTP reply), and tells you
whether the order was cancelled or filled first: both are outcomes, not errors.

Run it as is: it starts an exchange simulator in the process and trades
there, whatever the environment says. ``--live ID [ID ...]`` uses the API
named by ``CADENZA_TOKEN``, ``CADENZA_API_URL``, ``CADENZA_WS_URL`` and
``CADENZA_TRADING_ACCOUNT_ID`` instead, and only cancels (with confirmation)
the orders whose ids you pass: it never places an order on a live API.
"""

from __future__ import annotations

import argparse
import asyncio
from decimal import Decimal

from cadenza_async import CadenzaClient, CadenzaError, ConfigurationError
from cadenza_async.testing import CadenzaSimulator

INSTRUMENT = "BINANCE:BTC/USDT"


async def quoting_loop(client: CadenzaClient, sim: CadenzaSimulator) -> None:
    """Five quotes, each pulled (and proven gone) before the next goes out."""
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
        if round_no == 3:
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


async def simulated() -> None:
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
        await quoting_loop(client, sim)


async def live(order_ids: list[str]) -> None:
    """Cancel the given orders on the live API, each proven final; nothing is placed."""
    async with CadenzaClient.from_env() as client:
        for order_id in order_ids:
            try:
                result = await client.cancel_and_confirm(order_id, timeout=10.0)
            except CadenzaError as exc:
                print(f"{order_id}: failed with {type(exc).__name__}: {exc}")
                continue
            verdict = "cancelled" if result.cancelled else f"NOT cancelled: {result.status}"
            print(f"{order_id}: {verdict} (proved by {result.source})")


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
