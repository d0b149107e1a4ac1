"""``benchmarks/run_all.py --quick`` runs end to end and reports every contender (no timings asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = {"raw", "peer", "sdk_http", "sdk_ws", "sdk_otel"}


def test_quick_run_writes_results_for_every_contender(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n\n## Performance\n\n<!-- bench:start -->\nSTALE-TABLE\n<!-- bench:end -->\ntail\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run_all.py"),
            "--quick",
            "--out",
            str(tmp_path),
            "--readme",
            str(readme),
        ],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    assert set(result["contenders"]) == CONTENDERS
    for name, figures in result["contenders"].items():
        (round_,) = figures["rounds"]
        assert round_["bulk_confirmed"] == round_["bulk_requested"], name
        assert figures["seq_median_us"] > 0
        assert 0 <= round_["bulk_gc_us"] <= round_["bulk_cpu_us"], name
        assert len(round_["bulk_gc_collections"]) == 3, name
    assert set(result["rss"]) == CONTENDERS
    assert set(result["micro"]["ingest"]) == {"10", "1000", "100000"}
    assert len(result["targets"]) == 9
    assert (tmp_path / "latency.png").stat().st_size > 0
    text = readme.read_text()
    assert "STALE-TABLE" not in text
    assert text.endswith("<!-- bench:end -->\ntail\n")
    assert "| sdk_ws |" in text
    assert "of which in the GC" in text
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout


def test_scale_bench_runs_and_proves_every_cancel(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_scale.py"),
            "--accounts",
            "1,3",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for row in json.loads(out.read_text()):
        assert row["cancel_all_failed"] == 0
        assert row["cancel_all_orders"] == 100 * row["accounts"]
        for kind in ("recovered", "lost"):
            assert row[f"reconnect_{kind}_proven"] == row[f"reconnect_{kind}_pending"]
        # history lost: one listing per account, no order looked up on its own
        assert row["reconnect_lost_requests"]["list"] <= row["accounts"]


def test_gc_probe_reports_every_variant(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gc_probe.py"), "--cancels", "40"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for variant in ("raw", "sdk", "sdk-many", "sdk-inline", "sdk-inline+task"):
        assert any(line.split()[0] == variant and "collections" in line for line in lines)
    assert sum("net growth" in line for line in lines) == 2
