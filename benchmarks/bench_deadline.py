"""How late past its deadline does ``cancel_and_confirm`` return, alone and under load?

Every call meets a server that never answers in time (the cancel endpoint
and the look-ups hang), so every call ends at its deadline with
``ConfirmationTimeout``, or with ``TransportError`` (not sent) when its request
was still waiting for one of the pool's connections (at 1,000 calls, past
the pool's 256). For 1, 100 and 1,000 concurrent calls (``timeout=1``)
it reports the overrun past the deadline: median, p99 and max, in
milliseconds. The simulator runs in the same process and loop (the worst
case: its handlers compete with the client for the loop).

    python benchmarks/bench_deadline.py [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import sys

from cadenza_async import CadenzaClient, ConfirmationTimeout, Timeouts, TransportError
from cadenza_async.testing import CadenzaSimulator

TIMEOUT = 1.0


async def overruns(concurrency: int) -> list[float]:
    async with CadenzaSimulator(cancel_delay=1000) as sim:
        orders = sim.create_orders(concurrency)
        async with CadenzaClient(
            token=sim.token,
            api_url=sim.api_url,
            ws_url=sim.ws_url,
            trading_account_id=sim.trading_account_id,
            timeouts=Timeouts(connect=5.0, request=5.0, confirm=TIMEOUT),
        ) as client:
            sim.delay_rest(math.inf, endpoint="cancel")
            sim.delay_rest(math.inf, endpoint="list")
            loop = asyncio.get_running_loop()

            async def one(order_id: str) -> float:
                started = loop.time()
                with contextlib.suppress(ConfirmationTimeout, TransportError):
                    await client.cancel_and_confirm(order_id, timeout=TIMEOUT)
                return loop.time() - started - TIMEOUT

            late = await asyncio.gather(*(one(o.trade_order_id) for o in orders))
            sim.delay_rest(0)
        return list(late)


def summary(late: list[float]) -> dict[str, float]:
    ordered = sorted(late)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p99_ms": p99 * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    figures = {}
    for n in (1, 100, 1000):
        figures[n] = summary(asyncio.run(overruns(n)))
        f = figures[n]
        print(
            f"{n:>5} concurrent calls: overrun median {f['median_ms']:.1f} ms, "
            f"p99 {f['p99_ms']:.1f} ms, max {f['max_ms']:.1f} ms"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({str(k): v for k, v in figures.items()}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
