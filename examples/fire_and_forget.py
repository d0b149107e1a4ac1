"""Fire-and-forget cancels: start them now, let the client see them through.

``client.cancel_nowait(order_id)`` returns a ``CancelHandle`` at once. The
client keeps every background cancel alive until it has an outcome; leaving
``async with`` waits for them (up to ``drain_timeout``), so a cancel fired just
before shutdown still reaches the exchange. A failure nobody awaited is logged
and handed to ``on_background_error``.

Runs against an exchange simulator started in the process, whatever the
environment says. ``--live ID [ID ...]`` uses the API named by the
``CADENZA_*`` variables instead and cancels only the orders you pass: it
never places an order on a live API.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from cadenza_async import CadenzaClient, CancelHandle, ClientConfig, ConfigurationError
from cadenza_async.testing import CadenzaSimulator

INSTRUMENT = "BINANCE:BTC/USDT"
NOT_AN_ORDER = "00000000-0000-4000-8000-000000000000"


def on_background_error(exc: BaseException, order_id: str) -> None:
    # Called for a background cancel that failed while nobody was awaiting it.
    print(f"background cancel of {order_id} failed: {type(exc).__name__}")


def fire(client: CadenzaClient, order_ids: list[str], outcomes: list[str]) -> list[CancelHandle]:
    handles = []
    for order_id in order_ids:
        handle = client.cancel_nowait(order_id)  # returns at once
        # Optional: be told when it is done (this counts as observing the outcome).
        handle.add_done_callback(
            lambda h: outcomes.append(h.result().status if h.exception() is None else "error")
        )
        handles.append(handle)
    return handles


async def simulated() -> None:
    async with CadenzaSimulator(cancel_delay=0.02) as sim:
        config = ClientConfig(
            token=sim.token,
            api_url=sim.api_url,
            ws_url=sim.ws_url,
            trading_account_id=sim.trading_account_id,
        )
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
            handles = fire(client, [order.trade_order_id for order in orders], outcomes)
            # Nobody watches this one: its failure goes to on_background_error.
            client.cancel_nowait(NOT_AN_ORDER)
            in_flight = sum(not h.done() for h in handles)
            print(
                f"fired {len(handles) + 1} cancels; {in_flight} still in flight "
                "at the end of the block"
            )
        # The block has ended: every background cancel has its outcome.
        print(f"after close: {len(outcomes)} outcomes: {outcomes.count('CANCELLED')} CANCELLED")
        applied = sum(sim.cancels_applied.values())
        print(f"the exchange applied {applied} cancels")


async def live(order_ids: list[str]) -> None:
    """Fire cancels for the given orders on the live API; nothing is placed."""
    outcomes: list[str] = []
    async with CadenzaClient.from_env(on_background_error=on_background_error) as client:
        fire(client, order_ids, outcomes)
        print(f"fired {len(order_ids)} cancels")
    print(f"after close: {len(outcomes)} outcomes: {outcomes.count('CANCELLED')} CANCELLED")


def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)  # the on_background_error line is enough here
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
