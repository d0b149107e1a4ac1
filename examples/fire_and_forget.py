"""Fire-and-forget cancels: start them now, let the client see them through.

``client.cancel_nowait(order_id)`` returns a ``CancelHandle`` at once. The
client keeps every background cancel alive until it has an outcome; leaving
``async with`` waits for them (up to ``drain_timeout``), so a cancel fired just
before shutdown still reaches the exchange. A failure nobody awaited is logged
and handed to ``on_background_error``.

Runs against a local simulator unless ``CADENZA_TOKEN`` (and the other
``CADENZA_*`` variables) are set.
"""

from __future__ import annotations

import asyncio
import logging
import os

from cadenza_async import CadenzaClient, ClientConfig
from cadenza_async.testing import CadenzaSimulator

INSTRUMENT = os.environ.get("CADENZA_INSTRUMENT_ID", "BINANCE:BTC/USDT")
NOT_AN_ORDER = "00000000-0000-4000-8000-000000000000"


def on_background_error(exc: BaseException, order_id: str) -> None:
    # Called for a background cancel that failed while nobody was awaiting it.
    print(f"background cancel of {order_id} failed: {type(exc).__name__}")


async def run(config: ClientConfig) -> None:
    outcomes: list[str] = []
    async with CadenzaClient(config=config, on_background_error=on_background_error) as client:
        orders = [
            await client.submit_order(
                instrument_id=INSTRUMENT,
                order_side="SELL",
                order_type="LIMIT",
                quantity="0.001",
                limit_price="1000000",
            )
            for _ in range(20)
        ]
        handles = []
        for order in orders:
            handle = client.cancel_nowait(order.trade_order_id)  # returns at once
            # Optional: be told when it is done (this counts as observing the outcome).
            handle.add_done_callback(
                lambda h: outcomes.append(h.result().status if h.exception() is None else "error")
            )
            handles.append(handle)
        # Nobody watches this one: its failure goes to on_background_error.
        client.cancel_nowait(NOT_AN_ORDER)
        in_flight = sum(not h.done() for h in handles)
        print(
            f"fired {len(handles) + 1} cancels; {in_flight} still in flight at the end of the block"
        )
    # The block has ended: every background cancel has its outcome.
    print(f"after close: {len(outcomes)} outcomes: {outcomes.count('CANCELLED')} CANCELLED")


async def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)  # the on_background_error line is enough here
    if os.environ.get("CADENZA_TOKEN"):
        await run(ClientConfig.from_env())
        return
    async with CadenzaSimulator(cancel_delay=0.02) as sim:
        await run(
            ClientConfig(
                token=sim.token,
                api_url=sim.api_url,
                ws_url=sim.ws_url,
                trading_account_id=sim.trading_account_id,
            )
        )
        applied = sum(sim.cancels_applied.values())
        print(f"the exchange applied {applied} cancels")


if __name__ == "__main__":
    asyncio.run(main())
