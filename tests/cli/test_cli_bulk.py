"""`cadenza-async cancel-many` and `cancel-all`: where ids come from, the summary, Ctrl-C, progress."""

from __future__ import annotations

import asyncio
import io
import re

import pytest
from aiohttp import web
from cli_support import MISSING_ID, clear_env, fake_api, json_lines

from cadenza_async import cli
from cadenza_async.cli import _output


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_cancel_many_takes_ids_as_arguments(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    ids = [o.trade_order_id for o in cadenza_sim.create_orders(3)]

    code = await cli.run(["cancel-many", *ids, "--json"])

    lines = json_lines(capsys.readouterr().out)
    assert code == 0
    assert sorted(line["order_id"] for line in lines) == sorted(ids)
    assert all(line["cancelled"] for line in lines)


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_cancel_many_reads_a_single_id_as_an_id_not_a_file(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    oid = cadenza_sim.create_order().trade_order_id

    code = await cli.run(["cancel-many", oid, "--json"])

    [line] = json_lines(capsys.readouterr().out)
    assert code == 0
    assert line["order_id"] == oid
    assert cadenza_sim.get_order(oid).status == "CANCELLED"


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_cancel_many_combines_arguments_files_and_stdin(
    cadenza_sim, capsys, monkeypatch, tmp_path
):
    clear_env(monkeypatch)(cadenza_sim)
    a, b, c, d = (o.trade_order_id for o in cadenza_sim.create_orders(4))
    path = tmp_path / "ids.txt"
    path.write_text(f"# comment\n{b}\n\n{c}  # trailing comment\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{d}\n"))

    code = await cli.run(["cancel-many", a, "-", "--file", str(path), "--json"])

    lines = json_lines(capsys.readouterr().out)
    assert code == 0
    assert sorted(line["order_id"] for line in lines) == sorted([a, b, c, d])


@pytest.mark.parametrize("how", ["nothing", "empty file", "empty stdin"])
def test_cancel_many_without_ids_exits_2(capsys, monkeypatch, tmp_path, how):
    clear_env(monkeypatch)
    monkeypatch.setenv("CADENZA_TOKEN", "some-token")
    path = tmp_path / "ids.txt"
    path.write_text("# nothing here\n\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    args = {
        "nothing": ["cancel-many"],
        "empty file": ["cancel-many", "--file", str(path)],
        "empty stdin": ["cancel-many", "-"],
    }[how]

    code = cli.main([*args, "--plain"])

    assert code == 2
    assert "no order ids given" in capsys.readouterr().err


def test_a_file_given_as_an_id_is_refused_with_a_hint(capsys, monkeypatch, tmp_path):
    clear_env(monkeypatch)
    monkeypatch.setenv("CADENZA_TOKEN", "some-token")
    path = tmp_path / "ids.txt"
    path.write_text(MISSING_ID + "\n")

    code = cli.main(["cancel-many", str(path), "--plain"])

    assert code == 2
    assert f"pass --file {path}" in capsys.readouterr().err


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_a_repeated_failing_id_is_listed_and_counted_once_with_no_confirm(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    oid = cadenza_sim.create_order().trade_order_id

    code = await cli.run(["cancel-many", MISSING_ID, oid, MISSING_ID, "--no-confirm", "--plain"])

    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"^orders +2$", out, re.MULTILINE)
    assert re.search(r"^failed: OrderNotFoundError +1$", out, re.MULTILINE)
    failed_rows = [line for line in out.splitlines() if line.startswith(MISSING_ID)]
    assert len(failed_rows) == 1


async def test_orders_already_final_are_outcomes_in_cancel_many_with_no_confirm(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    filled = cadenza_sim.create_order(status="FILLED", executed_quantity="1").trade_order_id
    live = cadenza_sim.create_order().trade_order_id

    code = await cli.run(["cancel-many", filled, live, "--no-confirm", "--plain"])

    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"^already final \(cancel refused\) +1$", out, re.MULTILINE)
    assert "Failed" not in out


@pytest.mark.cadenza_sim(cancel_delay=0.3)
async def test_interrupting_cancel_many_prints_a_partial_summary(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    ids = [o.trade_order_id for o in cadenza_sim.create_orders(20)]
    task = asyncio.ensure_future(cli.run(["cancel-many", *ids, "--concurrency", "2", "--plain"]))
    await cadenza_sim.wait_for(
        lambda: sum(cadenza_sim.get_order(oid).status == "CANCELLED" for oid in ids) >= 2
    )
    await asyncio.sleep(0.1)  # the confirmations reach the command

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    captured = capsys.readouterr()
    assert "Summary" in captured.out
    match = re.search(r"^no outcome \(interrupted\) +(\d+)$", captured.out, re.MULTILINE)
    assert match is not None
    assert 0 < int(match.group(1)) < 20
    assert re.search(r"^orders +20$", captured.out, re.MULTILINE)
    assert "error: interrupted: " in captured.err
    assert "may or may not be cancelled" in captured.err


async def test_cancel_all_with_no_open_order_says_nothing_to_cancel(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    cadenza_sim.create_order(status="FILLED")

    code = await cli.run(["cancel-all", "--yes", "--plain"])

    captured = capsys.readouterr()
    assert code == 0
    assert "nothing to cancel" in captured.err
    assert "Summary" not in captured.out


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_cancel_all_shows_progress_and_takes_concurrency_and_timeout(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    ids = {o.trade_order_id for o in cadenza_sim.create_orders(12)}
    bars: list[tuple[int, str]] = []
    real = _output.Output.progress

    def spy(self, total, label):
        bars.append((total, label))
        return real(self, total, label)

    monkeypatch.setattr(_output.Output, "progress", spy)

    code = await cli.run(["cancel-all", "--yes", "--concurrency", "3", "--timeout", "5", "--plain"])

    out = capsys.readouterr().out
    assert code == 0
    assert bars == [(12, "cancelling")]
    assert re.search(r"^cancelled \(confirmed\) +12$", out, re.MULTILINE)
    assert all(cadenza_sim.get_order(oid).status == "CANCELLED" for oid in ids)


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_cancel_all_draws_a_rich_progress_bar(cadenza_sim, capsys, monkeypatch):
    pytest.importorskip("rich")
    clear_env(monkeypatch)(cadenza_sim)
    monkeypatch.setattr(_output, "_isatty", lambda stream: True)  # as on a terminal
    cadenza_sim.create_orders(5)

    code = await cli.run(["cancel-all", "--yes"])

    err = capsys.readouterr().err
    assert code == 0
    assert "cancelling" in err
    assert "5/5" in err


async def test_listing_stops_when_a_server_says_more_but_sends_nothing_new(capsys, monkeypatch):
    account = "550e8400-e29b-41d4-a716-446655440000"
    order = {
        "tradeOrderId": "550e8400-e29b-41d4-a716-4466554400aa",
        "tradingAccountId": account,
        "status": "OPEN",
    }
    pages = 0

    async def endless(request: web.Request) -> web.Response:
        nonlocal pages
        pages += 1
        return web.json_response(
            {"data": [order], "success": True, "pagination": {"hasNext": True}}
        )

    clear_env(monkeypatch)
    monkeypatch.setenv("CADENZA_TOKEN", "some-token")
    async with fake_api(endless) as url:
        monkeypatch.setenv("CADENZA_API_URL", url)
        code = await asyncio.wait_for(cli.run(["orders", "--account", account, "--json"]), 10)

    [line] = json_lines(capsys.readouterr().out)
    assert code == 0
    assert line["tradeOrderId"] == order["tradeOrderId"]
    assert pages == 2
