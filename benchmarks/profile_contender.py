"""Profile one contender's bulk cancels against the simulator (in its own process).

Run: ``.venv/bin/python benchmarks/profile_contender.py NAME [--bulk N]`` under a
sampling profiler, for example::

    .venv/bin/py-spy record -r 2000 -f speedscope -o /tmp/sdk.json -- \\
        .venv/bin/python benchmarks/profile_contender.py sdk_http
    .venv/bin/pyinstrument benchmarks/profile_contender.py sdk_http

It prints the CPU microseconds per confirmed cancel of the bulk window.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import NAMES, make
from run_all import Simulator, list_open_ids


async def run(name: str, bulk: int, concurrency: int, sim: Simulator) -> None:
    assert sim.target is not None
    ids = await list_open_ids(sim.target, bulk + 100)
    contender = make(name)
    await contender.start(sim.target)
    try:
        for oid in ids[:100]:
            await contender.cancel_and_confirm(oid)
        cpu = time.process_time()
        confirmed = await contender.cancel_many(ids[100:], concurrency)
        cpu = time.process_time() - cpu
    finally:
        await contender.aclose()
    print(f"{name}: {cpu / confirmed * 1e6:.0f} us CPU per confirmed cancel ({confirmed:,})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", choices=NAMES)
    p.add_argument("--bulk", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--cancel-delay", type=float, default=0.0)
    p.add_argument("--wire", choices=("current", "legacy"), default="current")
    args = p.parse_args()
    with Simulator(args.bulk + 100, args.cancel_delay, args.wire) as sim:
        asyncio.run(run(args.name, args.bulk, args.concurrency, sim))


if __name__ == "__main__":
    main()
