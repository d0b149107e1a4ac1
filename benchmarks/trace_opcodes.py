"""Count the Python bytecode instructions one contender executes per sequential confirmed cancel.

Run: ``.venv/bin/python benchmarks/trace_opcodes.py NAME [--cancels N] [--top K]``

A deterministic companion to the CPU figures of ``run_all.py`` (which a shared
machine makes noisy): after a warm-up, ``sys.settrace`` with opcode events
counts every bytecode executed in this process during N sequential
``cancel_and_confirm`` calls against the simulator (in its own process), per
function and per module. C code (msgspec, json's scanner, the socket calls) is
not counted: compare with the cachegrind figures in ``benchmarks/PROFILE.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import NAMES, make
from run_all import Simulator, list_open_ids

WARMUP = 50


def _where(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "python3.11/", "python3.12/", "python3.13/"):
        if marker in filename:
            return filename.split(marker)[-1]
    return filename


async def trace(
    name: str, cancels: int, sim: Simulator, concurrency: int = 0
) -> collections.Counter[str]:
    assert sim.target is not None
    ids = await list_open_ids(sim.target, cancels + WARMUP)
    counts: collections.Counter[str] = collections.Counter()

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        key = f"{_where(frame.f_code.co_filename)}:{frame.f_code.co_name}"

        def local(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "opcode":
                counts[key] += 1
            return local

        return local

    contender = make(name)
    await contender.start(sim.target)
    try:
        for oid in ids[:WARMUP]:
            await contender.cancel_and_confirm(oid)
        sys.settrace(tracer)
        try:
            if concurrency:
                await contender.cancel_many(ids[WARMUP:], concurrency)
            else:
                for oid in ids[WARMUP:]:
                    await contender.cancel_and_confirm(oid)
        finally:
            sys.settrace(None)
    finally:
        await contender.aclose()
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", choices=NAMES)
    p.add_argument("--cancels", type=int, default=300)
    p.add_argument("--top", type=int, default=40)
    p.add_argument(
        "--bulk", type=int, default=0, metavar="C", help="cancel_many at concurrency C instead"
    )
    args = p.parse_args()
    with Simulator(args.cancels + WARMUP + 100, 0.0) as sim:
        counts = asyncio.run(trace(args.name, args.cancels, sim, args.bulk))
    n = args.cancels
    modules: collections.Counter[str] = collections.Counter()
    for key, value in counts.items():
        modules[key.rsplit(":", 1)[0]] += value
    kind = f"bulk (concurrency {args.bulk})" if args.bulk else "sequential"
    print(f"{args.name}: {sum(counts.values()) / n:,.0f} bytecodes per {kind} cancel")
    print("\nper module")
    for module, value in modules.most_common(args.top):
        print(f"{value / n:9.1f}  {module}")
    print("\nper function")
    for key, value in counts.most_common(args.top):
        print(f"{value / n:9.1f}  {key}")


if __name__ == "__main__":
    main()
