"""``benchmarks/bench_submit.py --quick`` runs end to end and reports every contender (no timings asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_reports_the_sdk_beside_the_hand_written_submit(tmp_path: Path) -> None:
    out = tmp_path / "submit.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_submit.py"),
            "--quick",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())["figures"]
    assert set(figures) == {"raw", "sdk_http", "sdk_ws"}
    for name, f in figures.items():
        assert f["bulk_done"] == 100, name
        assert f["seq_cpu_us"] > 0
    assert "| sdk_http |" in proc.stdout
    assert "1.00x" in proc.stdout  # raw is the unit of every ratio
