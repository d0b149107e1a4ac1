"""Peak RSS of one contender, measured in a fresh process.

Run by ``run_all.py``; reads ``{"name", "target", "ids", "concurrency"}``
as JSON on stdin and prints one JSON line: the RSS after imports, the peak
RSS (``VmHWM``) after connecting and cancelling ``ids`` at the given
concurrency, and how many cancels were confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from contenders import Target, make


async def probe(name: str, target: Target, ids: list[str], concurrency: int) -> int:
    contender = make(name)
    await contender.start(target)
    try:
        return await contender.cancel_many(ids, concurrency)
    finally:
        await contender.aclose()


def peak_rss() -> int:
    """This process's peak RSS in bytes.

    ``VmHWM`` where /proc has it: ``ru_maxrss`` survives ``execve`` on Linux,
    so in a child it can report the parent's peak instead of its own.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def main() -> None:
    spec = json.load(sys.stdin)
    name = spec["name"]
    make(name)  # import the contender's libraries before the baseline
    baseline = psutil.Process().memory_info().rss
    confirmed = asyncio.run(probe(name, Target(**spec["target"]), spec["ids"], spec["concurrency"]))
    peak = peak_rss()
    print(json.dumps({"name": name, "baseline": baseline, "peak": peak, "confirmed": confirmed}))


if __name__ == "__main__":
    main()
