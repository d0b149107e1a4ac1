"""Row 31: 1,000 client open/close cycles in a subprocess leave no task, socket or memory behind.

The subprocess (``tests/leak_cycles.py``) runs with ``-X dev -W error``: asyncio
debug mode, ResourceWarnings on, every warning an error. It opens and closes
a :class:`~cadenza_async.CadenzaClient` against one simulator 1,000 times (a
confirmed cancel every 10th cycle, a fire-and-forget cancel drained by the
close every 7th) and reports memory at cycles 100 and 1,000.

Margins (documented, not tuned to pass): between cycle 100 and 1,000 the
traced Python memory (the simulator's own allocations, which grow with
every order it creates, filtered out) may grow by at most 256 KB (~290 bytes a cycle: a leak
of one small object per cycle, such as a session, a task or a waiter, is
bigger than that) and the RSS by at most 16 MB (allocator arenas and
fragmentation; a leaked aiohttp session or websocket costs far more over 900
cycles).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("leak_cycles.py")
CYCLES = 1000
TRACED_MARGIN = 256 * 1024
RSS_MARGIN = 16 * 1024 * 1024
FORBIDDEN = (
    "Task was destroyed but it is pending",
    "Unclosed",
    "ResourceWarning",
    "never retrieved",
    "was never awaited",
)


def run_cycles(cycles: int, *, inject: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CADENZA_LEAK_INJECT": "1" if inject else "0"}
    return subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(SCRIPT), str(cycles)],
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
        env=env,
    )


def leaks_found(proc: subprocess.CompletedProcess[str], cycles: int) -> list[str]:
    """What the run shows leaked: warnings, tasks left, memory over the margins."""
    found = [f"stderr: {text}" for text in FORBIDDEN if text in proc.stderr]
    if proc.returncode != 0:
        found.append(f"exit {proc.returncode}: {proc.stderr[-3000:]}")
    points = {p["cycle"]: p for p in map(json.loads, proc.stdout.split("\n")[:-1])}
    if set(points) != {100, cycles}:
        return [*found, f"checkpoints {sorted(points)}"]
    early, late = points[100], points[cycles]
    traced_growth = late["traced"] - early["traced"]
    rss_growth = late["rss"] - early["rss"]
    print(f"traced growth {traced_growth} B, rss growth {rss_growth} B over {cycles - 100} cycles")
    if traced_growth > TRACED_MARGIN:
        found.append(f"traced memory grew {traced_growth} B")
    if rss_growth > RSS_MARGIN:
        found.append(f"RSS grew {rss_growth} B")
    if late["tasks"] > 0:
        found.append(f"{late['tasks']} tasks left after the clients closed")
    return found


@pytest.mark.timeout(150)
def test_thousand_open_close_cycles_leave_no_tasks_warnings_or_memory_growth() -> None:
    proc = run_cycles(CYCLES)
    print(proc.stdout)
    assert leaks_found(proc, CYCLES) == []


@pytest.mark.timeout(150)
def test_the_leak_checks_catch_an_injected_leak() -> None:
    # The checks above must be able to fail: keep every closed client and leave a
    # pending task per cycle, and they must say so.
    proc = run_cycles(300, inject=True)
    found = leaks_found(proc, 300)
    assert any(f.startswith("traced memory grew") for f in found), found
    assert any("tasks left" in f for f in found), found
