"""The command line as a process: `python -m`, pipes closed by their reader, Ctrl-C, the simulator."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import sys

import pytest
from cli_support import cli_env, start_cli

from cadenza_async import __version__
from cadenza_async.cli import _sim

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pipes")


async def _bash(script: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _cli_command(*args: str) -> str:
    return shlex.join([sys.executable, "-X", "dev", "-m", "cadenza_async.cli", *args])


async def test_python_m_runs_the_command_line_and_prints_the_version():
    proc = await start_cli("--version", env=cli_env())
    out, _err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert out.decode().strip() == f"cadenza-async {__version__}"


async def test_json_into_head_ends_quietly_with_141(cadenza_sim):
    cadenza_sim.create_orders(1000)
    script = f'{_cli_command("orders", "--json")} | head -n 1; echo "status=${{PIPESTATUS[0]}}" >&2'

    code, out, err = await _bash(script, cli_env(cadenza_sim))

    assert code == 0
    [line] = out.splitlines()
    assert json.loads(line)["status"] == "OPEN"
    assert "status=141" in err
    assert "Traceback" not in err
    assert "BrokenPipe" not in err


@pytest.mark.cadenza_sim(cancel_delay=0.005)
async def test_cancel_many_into_head_still_cancels_every_order(cadenza_sim):
    ids = [o.trade_order_id for o in cadenza_sim.create_orders(300)]
    script = (
        f"printf '%s\\n' {' '.join(ids)} | {_cli_command('cancel-many', '-', '--json')}"
        ' | head -n 1; echo "status=${PIPESTATUS[1]}" >&2'
    )

    code, out, err = await _bash(script, cli_env(cadenza_sim))

    assert code == 0
    assert len(out.splitlines()) == 1
    assert "status=141" in err
    assert "Traceback" not in err
    assert all(cadenza_sim.get_order(oid).status == "CANCELLED" for oid in ids)


@pytest.mark.cadenza_sim(cancel_delay=0.3)
async def test_ctrl_c_during_cancel_many_prints_a_partial_summary_and_exits_130(cadenza_sim):
    ids = [o.trade_order_id for o in cadenza_sim.create_orders(30)]
    proc = await start_cli(
        "cancel-many", *ids, "--concurrency", "2", "--plain", env=cli_env(cadenza_sim)
    )
    try:
        await cadenza_sim.wait_for(
            lambda: sum(cadenza_sim.get_order(oid).status == "CANCELLED" for oid in ids) >= 2,
            timeout=20,
        )
        await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    text = out.decode()
    assert proc.returncode == 130
    assert "Summary" in text
    assert "no outcome (interrupted)" in text
    assert "interrupted: " in err.decode()
    assert "Traceback" not in err.decode()


async def test_ctrl_c_ends_watch_with_130(cadenza_sim):
    proc = await start_cli("watch", "--plain", env=cli_env(cadenza_sim))
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
        assert b"watching order updates" in line
        proc.send_signal(signal.SIGINT)
        _out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert proc.returncode == 130
    assert b"Traceback" not in err


async def test_sim_prints_some_order_ids_and_no_warning_on_loopback():
    proc = await start_cli("sim", "--port", "0", "--orders", "7", env=cli_env())
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not any(line.startswith("# order ids:") for line in lines):
            raw = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert raw, lines
            lines.append(raw.decode().strip())
        proc.send_signal(signal.SIGINT)
        _out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    [shown] = [line for line in lines if line.startswith("# order ids:")]
    ids = shown.removeprefix("# order ids: ").split(" (")[0].split()
    assert len(ids) == _sim.SHOWN_ORDER_IDS
    assert shown.endswith("(and 2 more)")
    assert proc.returncode == 0
    assert b"warning" not in err
    assert b"Traceback" not in err
