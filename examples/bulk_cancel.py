"""Bulk cancels: many orders, bounded concurrency, one outcome per order.

``cancel_many`` returns one item per input, in input order: a
``CancelResult`` or that order's exception (it never raises for one order's
failure). ``cancel_many_iter`` yields the same outcomes as they complete.

Runs against a local simulator unless ``CADENZA_TOKEN`` (and the other
``CADENZA_*`` variables) are set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator

from cadenza_async import CadenzaClient, CadenzaError, CancelResult
from cadenza_async.testing import CadenzaSimulator

INSTRUMENT = os.environ.get("CADENZA_INSTRUMENT_ID", "BINANCE:BTC/USDT")
NOT_AN_ORDER = "00000000-0000-4000-8000-000000000000"


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


async def place(client: CadenzaClient, n: int) -> list[str]:
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


async def main() -> None:
    async with open_client() as client:
        # 1. cancel_many: results line up with the input, errors in place.
        ids = await place(client, 20)
        ids.insert(10, NOT_AN_ORDER)
        results = await client.cancel_many(ids, concurrency=8)
        for order_id, outcome in zip(ids, results, strict=True):
            if isinstance(outcome, CadenzaError):
                print(f"{order_id}: failed with {type(outcome).__name__}")
        cancelled = sum(isinstance(r, CancelResult) and r.cancelled for r in results)
        print(f"cancel_many: {cancelled}/{len(ids)} cancelled, errors in place")

        # 2. cancel_many_iter: outcomes as they complete, e.g. for a progress bar.
        ids = await place(client, 30)
        tally: Counter[str] = Counter()
        async for outcome in client.cancel_many_iter(ids, concurrency=16):
            tally[outcome.status if isinstance(outcome, CancelResult) else "error"] += 1
            if sum(tally.values()) % 10 == 0:
                print(f"  {sum(tally.values())}/{len(ids)} done")
        print(f"cancel_many_iter: {dict(tally)}")


if __name__ == "__main__":
    asyncio.run(main())
