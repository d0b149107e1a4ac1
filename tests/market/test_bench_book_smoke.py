"""``benchmarks/bench_book.py --quick`` runs end to end: every contender, both processes (no timings asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Run by `make bench` before its timings (the bench extra installed), not by `make test`.
pytestmark = pytest.mark.bench


def test_a_quick_run_measures_every_contender_and_ends_with_every_book_equal(tmp_path: Path):
    out = tmp_path / "book.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_book.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["cpu_ns_per_level"]) == {
        "cadenza",
        "cadenza_sync",
        "ccxt",
        "c_float",
        "c_decimal",
    }
    assert set(result["frame_to_book_ns_per_level"]) == {"cadenza", "ccxt", "ccxt_exchange"}
    books = result["many_books"]
    # correctness, not speed: every publication applied, every book equal to the simulator's
    assert books["updates"] > 0
    assert books["not_applied"] == 0
    assert books["books_equal_to_simulator"] == books["books"] == 20
