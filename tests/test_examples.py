"""Every script in examples/ runs as is against its embedded simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# The line each example prints when it did what it shows.
EXPECTED = {
    "cancel_and_confirm.py": [
        "round 1: quote @ 1000.00 -> cancelled (proved by ws",
        "round 3: quote @ 999.00 -> NOT cancelled: FILLED",
        "done: 5 quotes, position 0.001 filled",
    ],
    "fire_and_forget.py": [
        "background cancel of 00000000-0000-4000-8000-000000000000 failed: OrderNotFoundError",
        "after close: 20 outcomes: 20 CANCELLED",
        "the exchange applied 20 cancels",
    ],
    "bulk_cancel.py": [
        "00000000-0000-4000-8000-000000000000: failed with OrderNotFoundError",
        "cancel_many: 20/21 cancelled, errors in place",
        "cancel_many_iter: {'CANCELLED': 30}",
    ],
    "order_updates.py": ["9 order updates received"],
}


def test_every_example_has_expectations():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_offline_and_shows_its_point(name):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for line in EXPECTED[name]:
        assert line in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stderr
