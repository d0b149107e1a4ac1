"""The command line as a Unix tool: plain lines into pipes, `| head`, ids between commands, prompts."""

from __future__ import annotations

import asyncio
import io
import socket
import time

import pytest
from cli_support import clear_env, cli_env, start_cli

from cadenza_async import cli
from cadenza_async.cli import _commands, _output


async def test_orders_ids_feed_cancel_many_from_stdin(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    orders = cadenza_sim.create_orders(3)

    assert await cli.run(["orders", "--ids"]) == 0
    listed = capsys.readouterr().out
    assert sorted(listed.split()) == sorted(o.trade_order_id for o in orders)

    monkeypatch.setattr("sys.stdin", io.StringIO(listed))
    assert await cli.run(["cancel-many", "-", "--plain"]) == 0
    assert {cadenza_sim.get_order(o.trade_order_id).status for o in orders} == {"CANCELLED"}


async def test_cancel_many_reads_the_json_lines_of_orders(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    orders = cadenza_sim.create_orders(2)
    assert await cli.run(["orders", "--json"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(capsys.readouterr().out))

    assert await cli.run(["cancel-many", "-", "--plain"]) == 0
    assert {cadenza_sim.get_order(o.trade_order_id).status for o in orders} == {"CANCELLED"}


async def test_cancel_all_asks_first_and_a_no_cancels_nothing(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    order = cadenza_sim.create_order()
    asked: list[str] = []

    async def say_no(question: str) -> bool:
        asked.append(question)
        return False

    monkeypatch.setattr(_commands, "stdin_is_terminal", lambda: True)
    monkeypatch.setattr(_commands, "confirmed", say_no)

    assert await cli.run(["cancel-all", "--plain"]) == 1
    assert asked == [f"Cancel 1 open orders of {cadenza_sim.trading_account_id}? [y/N] "]
    assert cadenza_sim.get_order(order.trade_order_id).status == "OPEN"
    assert "nothing cancelled" in capsys.readouterr().err


async def test_cancel_all_without_a_terminal_needs_yes_before_any_request(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    cadenza_sim.create_order()
    monkeypatch.setattr(_commands, "stdin_is_terminal", lambda: False)

    assert await cli.run(["cancel-all", "--plain"]) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert cadenza_sim.rest_requests == []


async def test_recancelling_a_cancelled_order_says_it_was_already_cancelled(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    long_ago = int(time.time() * 1000) - 60_000
    order = cadenza_sim.create_order(status="CANCELLED", updated_at=long_ago)

    assert await cli.run(["cancel", order.trade_order_id, "--plain"]) == 0

    out = capsys.readouterr().out
    assert "already cancelled before this command" in out


async def test_a_fresh_cancel_is_not_called_already_cancelled(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    order = cadenza_sim.create_order()

    assert await cli.run(["cancel", order.trade_order_id, "--plain"]) == 0

    out = capsys.readouterr().out
    assert "cancelled: confirmed by" in out
    assert "already" not in out


def test_output_into_a_pipe_is_plain_even_with_rich(monkeypatch):
    pytest.importorskip("rich")
    monkeypatch.setattr(_output, "_isatty", lambda stream: False)
    out = _output.Output()
    assert out.console is None
    assert out.err_console is None


async def test_watch_into_a_closed_pipe_exits_141(cadenza_sim):
    proc = await start_cli("watch", env=cli_env(cadenza_sim))
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert b"watching" in await asyncio.wait_for(proc.stderr.readline(), 20)
        cadenza_sim.create_order(publish=True)
        first = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert first.count(b"\n") == 1  # one update, one unwrapped line
        proc._transport.get_pipe_transport(1).close()  # type: ignore[attr-defined]  # `| head -1`
        for _ in range(50):  # the next update meets the closed pipe
            cadenza_sim.create_order(publish=True)
            try:
                await asyncio.wait_for(proc.wait(), 0.2)
                break
            except asyncio.TimeoutError:
                continue
        code = await asyncio.wait_for(proc.wait(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 141


async def test_sim_prints_its_export_line_on_stdout():
    proc = await start_cli("sim", "--port", "0", env=cli_env())
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not any(line.startswith("export ") for line in lines):
            raw = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert raw, lines
            lines.append(raw.decode().rstrip("\n"))
        proc.send_signal(2)
        await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert all(line.startswith(("# ", "export ")) for line in lines)  # a sourceable script
    [export] = [line for line in lines if line.startswith("export ")]
    assert "CADENZA_API_URL=http://127.0.0.1:" in export
    assert "CADENZA_TOKEN=" in export


def test_sim_on_a_port_in_use_suggests_port_0(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["sim", "--port", str(port), "--no-uvloop"]) == 1
    assert "pass --port 0" in capsys.readouterr().err
