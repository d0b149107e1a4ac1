"""Open and close CadenzaClient many times against one simulator; print memory at checkpoints.

Run by tests/test_leaks.py as ``python -X dev -W error tests/leak_cycles.py N``. Every
10th cycle also cancels an order (``cancel_and_confirm``) and every 7th starts a
fire-and-forget cancel that the close must drain. Prints one JSON line per
checkpoint: ``{"cycle": n, "rss": bytes, "traced": bytes (simulator excluded), "tasks": n}``.

``CADENZA_LEAK_INJECT=1`` keeps every closed client alive and leaves one task
pending per cycle: a deliberate leak, so that the test shows its checks can fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import sys
import tracemalloc

from cadenza_async import CadenzaClient
from cadenza_async.testing import CadenzaSimulator

CHECKPOINTS = (100, 1000)
INJECT = os.environ.get("CADENZA_LEAK_INJECT") == "1"
_kept: list[object] = []  # what the injected leak holds on to


def rss() -> int:
    """Resident set size now, from /proc (Linux), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def client_held() -> int:
    """Traced bytes, less what the simulator (its orders, its request log) and this file hold."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (
            tracemalloc.Filter(False, "*/cadenza_async/testing/*"),
            tracemalloc.Filter(False, __file__),
            tracemalloc.Filter(False, tracemalloc.__file__),
        )
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def main(cycles: int) -> None:
    tracemalloc.start()
    async with CadenzaSimulator(cancel_delay=0.0) as sim:
        baseline = len(asyncio.all_tasks())
        for cycle in range(1, cycles + 1):
            client = CadenzaClient(
                token=sim.token,
                api_url=sim.api_url,
                ws_url=sim.ws_url,
                trading_account_id=sim.trading_account_id,
            )
            async with client:
                if cycle % 10 == 0:
                    order = sim.create_order()
                    result = await client.cancel_and_confirm(order.trade_order_id)
                    assert result.cancelled
                if cycle % 7 == 0:
                    client.cancel_nowait(sim.create_order().trade_order_id)
            if INJECT:
                _kept.append(client)
                _kept.append(asyncio.ensure_future(asyncio.Event().wait()))
            if cycle in CHECKPOINTS or cycle == cycles:
                await sim.wait_for(lambda: sim.connections == 0, timeout=5.0)
                # The simulator's handler of the last connection may still be returning.
                with contextlib.suppress(TimeoutError):
                    await sim.wait_for(lambda: len(asyncio.all_tasks()) <= baseline, 2.0)
                gc.collect()
                print(
                    json.dumps(
                        {
                            "cycle": cycle,
                            "rss": rss(),
                            "traced": client_held(),
                            "tasks": len(asyncio.all_tasks()) - baseline,
                        }
                    ),
                    flush=True,
                )
    tracemalloc.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
