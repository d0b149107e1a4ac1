"""Where the SDK's bulk cancels spend time in Python's cyclic garbage collector.

Run: ``.venv/bin/python benchmarks/gc_probe.py [--cancels N] [--concurrency C]``

Against the simulator (in its own process), each variant runs N cancels
through the harness's worker pool at concurrency C and reports CPU per cancel,
the collector's time per cancel and its collections per generation:

- ``raw``: the hand-written client;
- ``sdk``: ``CadenzaClient.cancel_and_confirm`` as shipped (the send runs in the job's task);
- ``sdk-many``: ``CadenzaClient.cancel_many`` as shipped (its workers drive the jobs: the
  send runs in the worker's task, no task per order);
- ``sdk-inline``: the same job driven by the caller itself, an experiment that
  breaks the SDK's rules (proof before a slow reply waits for the reply; a
  caller that leaves cancels a shared request) and exists only to show where
  the collections come from;
- ``sdk-inline+task``: the experiment plus one empty task per cancel, to show
  that the task object itself is not the cause.

Also prints the net growth of GC-tracked objects per cancel with the collector
off. ``--threshold N`` sets the collector's first threshold (``gc.set_threshold``)
for the whole run, as an application may. See ``benchmarks/PROFILE.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import make, worker_pool
from run_all import GcMeter, Simulator, list_open_ids

from cadenza_async import cancels
from cadenza_async.models import CancelResult

VARIANTS = ("raw", "sdk", "sdk-many", "sdk-inline", "sdk-inline+task")
WARMUP = 100


async def _nothing() -> None:
    return None


def _inline(with_task: bool) -> Any:
    """``Canceller.cancel_and_confirm`` with the job driven by the caller (experiment only)."""

    async def cancel_and_confirm(
        self: cancels.Canceller,
        order_id: str,
        *,
        trading_account_id: str | None = None,
        timeout: float | None = None,
    ) -> CancelResult:
        timeout = self._check_call(order_id, trading_account_id, timeout)
        started = asyncio.get_running_loop().time()
        registry = self._registry
        waiter, created = registry.register(order_id, started, account_id=trading_account_id)
        try:
            if created:
                job = cancels._Job(started + timeout)
                waiter.handle = job
            else:
                job = cancels._job(waiter)
            if with_task:
                self._tasks.spawn(_nothing(), "empty")
            await self._drive(waiter, job)
            await self._wait(waiter, job, started + timeout)
            return self._result(waiter, started)
        finally:
            registry.release(waiter)

    return cancel_and_confirm


async def run(variant: str, ids: list[str], sim: Simulator, concurrency: int) -> str:
    assert sim.target is not None
    shipped = cancels.Canceller.cancel_and_confirm
    if variant.startswith("sdk-inline"):
        cancels.Canceller.cancel_and_confirm = _inline(variant.endswith("+task"))  # type: ignore[method-assign]
    try:
        contender = make("raw" if variant == "raw" else "sdk_http")
        await contender.start(sim.target)
        try:
            for oid in ids[:WARMUP]:
                await contender.cancel_and_confirm(oid)
            work = ids[WARMUP:]
            gc.collect()
            with GcMeter() as meter:
                cpu = time.process_time()
                if variant == "sdk-many":
                    await contender.cancel_many(work, concurrency)
                else:
                    await worker_pool(work, contender.cancel_and_confirm, concurrency)
                cpu = time.process_time() - cpu
        finally:
            await contender.aclose()
    finally:
        cancels.Canceller.cancel_and_confirm = shipped  # type: ignore[method-assign]
    n = len(work)
    return (
        f"{variant:16} {cpu / n * 1e6:7.1f} us CPU/cancel  {meter.seconds / n * 1e6:5.1f} us in the GC"
        f"  collections (gen 0/1/2) {meter.collections}"
    )


async def net_growth(name: str, ids: list[str], sim: Simulator, concurrency: int) -> str:
    """Tracked objects per cancel that outlive it, with the collector off."""
    assert sim.target is not None
    contender = make(name)
    await contender.start(sim.target)
    try:
        for oid in ids[:WARMUP]:
            await contender.cancel_and_confirm(oid)
        gc.collect()
        gc.disable()
        try:
            before = gc.get_count()[0]
            await worker_pool(ids[WARMUP:], contender.cancel_and_confirm, concurrency)
            after = gc.get_count()[0]
        finally:
            gc.enable()
    finally:
        await contender.aclose()
    return f"{name:16} net growth {(after - before) / (len(ids) - WARMUP):5.1f} tracked objects per cancel"


async def main_async(args: argparse.Namespace, sim: Simulator) -> None:
    assert sim.target is not None
    per = args.cancels + WARMUP
    ids = await list_open_ids(sim.target, per * (len(VARIANTS) + 2))
    chunks = [ids[i * per : (i + 1) * per] for i in range(len(VARIANTS) + 2)]
    for variant, chunk in zip(VARIANTS, chunks, strict=False):
        print(await run(variant, chunk, sim, args.concurrency), flush=True)
    for name, chunk in zip(("raw", "sdk_http"), chunks[len(VARIANTS) :], strict=True):
        print(await net_growth(name, chunk, sim, args.concurrency), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cancels", type=int, default=4_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--threshold", type=int, default=None, help="gc.set_threshold(N) first")
    args = p.parse_args()
    if args.threshold is not None:
        gc.set_threshold(args.threshold, *gc.get_threshold()[1:])
    per = args.cancels + WARMUP
    with Simulator(per * (len(VARIANTS) + 2) + 100, 0.0) as sim:
        asyncio.run(main_async(args, sim))


if __name__ == "__main__":
    main()
