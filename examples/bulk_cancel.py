"""Bulk cancels: many orders, bounded concurrency, one outcome per order.

``cancel_many`` returns one item per input, in input order: a
``CancelResult`` or that order's exception (it never raises for one order's
failure). ``cancel_many_iter`` yields the same outcomes as they complete.

Runs against an exchange simulator started in the process, whatever the
environment says. ``--live ID [ID ...]`` uses the API named by the
``CADENZA_*`` variables instead and cancels only the orders you pass: it
never places an order on a live API.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter

from cadenza_async import CadenzaClient, CadenzaError, CancelResult, ConfigurationError
from cadenza_async.testing import CadenzaSimulator

INSTRUMENT = "BINANCE:BTC/USDT"
NOT_AN_ORDER = "00000000-0000-4000-8000-000000000000"


async def place(client: CadenzaClient, n: int) -> list[str]:
    """``n`` resting orders (on the simulator only)."""
    orders = await asyncio.gather(
        *(
            client.submit_order(
                instrument_id=INSTRUMENT,
                order_side="BUY",
                order_type="LIMIT",
                quantity="0.001",
                limit_price="1000",
            )
            for _ in range(n)
        )
    )
    return [order.trade_order_id for order in orders]


async def cancel_in_order(client: CadenzaClient, ids: list[str]) -> None:
    # cancel_many: results line up with the input, errors in place.
    results = await client.cancel_many(ids, concurrency=8)
    for order_id, outcome in zip(ids, results, strict=True):
        if isinstance(outcome, CadenzaError):
            print(f"{order_id}: failed with {type(outcome).__name__}")
    cancelled = sum(isinstance(r, CancelResult) and r.cancelled for r in results)
    print(f"cancel_many: {cancelled}/{len(ids)} cancelled, errors in place")


async def cancel_as_completed(client: CadenzaClient, ids: list[str]) -> None:
    # cancel_many_iter: outcomes as they complete, e.g. for a progress bar.
    tally: Counter[str] = Counter()
    async for outcome in client.cancel_many_iter(ids, concurrency=16):
        tally[outcome.status if isinstance(outcome, CancelResult) else "error"] += 1
        if sum(tally.values()) % 10 == 0:
            print(f"  {sum(tally.values())}/{len(ids)} done")
    print(f"cancel_many_iter: {dict(tally)}")


async def simulated() -> None:
    async with (
        CadenzaSimulator(cancel_delay=0.02) as sim,
        CadenzaClient(
            token=sim.token,
            api_url=sim.api_url,
            ws_url=sim.ws_url,
            trading_account_id=sim.trading_account_id,
        ) as client,
    ):
        ids = await place(client, 20)
        ids.insert(10, NOT_AN_ORDER)
        await cancel_in_order(client, ids)
        await cancel_as_completed(client, await place(client, 30))


async def live(order_ids: list[str]) -> None:
    """Cancel the given orders on the live API; nothing is placed."""
    async with CadenzaClient.from_env() as client:
        await cancel_in_order(client, order_ids)


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
