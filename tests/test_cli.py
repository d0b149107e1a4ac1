"""The cadenza-async command line, run in-process against the simulator."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys

import pytest

from cadenza_async import cli

MISSING_ID = "00000000-0000-4000-8000-00000000dead"


@pytest.fixture
def env(monkeypatch):
    """The CADENZA_* environment cleared; ``point(sim)`` aims it at a simulator."""
    for name in (
        "CADENZA_TOKEN",
        "CADENZA_API_URL",
        "CADENZA_WS_URL",
        "CADENZA_TRADING_ACCOUNT_ID",
    ):
        monkeypatch.delenv(name, raising=False)

    def point(sim, token=None):
        monkeypatch.setenv("CADENZA_TOKEN", token or sim.token)
        monkeypatch.setenv("CADENZA_API_URL", sim.api_url)
        monkeypatch.setenv("CADENZA_WS_URL", sim.ws_url)
        monkeypatch.setenv("CADENZA_TRADING_ACCOUNT_ID", sim.trading_account_id)

    return point


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.cadenza_sim(cancel_delay=0.02)
async def test_cancel_confirm_prints_the_confirmed_outcome(cadenza_sim, env, capsys):
    env(cadenza_sim)
    oid = cadenza_sim.create_order().trade_order_id

    code = await cli.run(["cancel", oid, "--confirm", "--plain"])

    out = capsys.readouterr().out
    assert code == 0
    assert oid in out
    assert "CANCELLED  cancelled: confirmed by ws" in out
    assert cadenza_sim.get_order(oid).status == "CANCELLED"


@pytest.mark.cadenza_sim(cancel_delay=0.02)
async def test_cancel_json_is_one_object_with_the_result(cadenza_sim, env, capsys):
    env(cadenza_sim)
    oid = cadenza_sim.create_order().trade_order_id

    code = await cli.run(["cancel", oid, "--confirm", "--json"])

    [line] = json_lines(capsys.readouterr().out)
    assert code == 0
    assert line["order_id"] == oid
    assert line["ok"] is True
    assert line["cancelled"] is True
    assert line["confirmed"] is True
    assert line["status"] == "CANCELLED"
    assert line["source"] == "ws"
    assert line["latency"] >= line["acked_after"]
    assert line["order"]["tradeOrderId"] == oid


@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_cancel_without_confirm_reports_the_reply_as_unconfirmed(cadenza_sim, env, capsys):
    env(cadenza_sim)
    oid = cadenza_sim.create_order().trade_order_id

    code = await cli.run(["cancel", oid, "--no-confirm", "--json"])

    [line] = json_lines(capsys.readouterr().out)
    assert code == 0
    assert line["confirmed"] is False
    assert line["status"] == "PENDING_CANCEL"
    assert line["cancelled"] is False


@pytest.mark.cadenza_sim(cancel_delay=0.02)
async def test_cancel_via_ws_confirms_without_http_cancel(cadenza_sim, env, capsys):
    env(cadenza_sim)
    oid = cadenza_sim.create_order().trade_order_id

    account = cadenza_sim.trading_account_id
    code = await cli.run(
        ["cancel", oid, "--confirm", "--via", "ws", "--account", account, "--json"]
    )

    [line] = json_lines(capsys.readouterr().out)
    assert code == 0
    assert line["cancelled"] is True
    assert cadenza_sim.cancel_requests == [(oid, "ws")]


async def test_filled_before_cancel_is_an_outcome_not_a_failure(cadenza_sim, env, capsys):
    env(cadenza_sim)
    oid = cadenza_sim.create_order().trade_order_id
    cadenza_sim.fill_on_next_cancel(oid)

    code = await cli.run(["cancel", oid, "--confirm", "--json"])

    [line] = json_lines(capsys.readouterr().out)
    assert code == 0
    assert line["ok"] is True
    assert line["cancelled"] is False
    assert line["status"] == "FILLED"


async def test_cancel_of_unknown_order_exits_1_with_a_one_line_error(cadenza_sim, env, capsys):
    env(cadenza_sim)

    code = await cli.run(["cancel", MISSING_ID, "--confirm", "--plain"])

    captured = capsys.readouterr()
    assert code == 1
    [line] = captured.err.strip().splitlines()
    assert line.startswith("error: ")
    assert "OrderNotFoundError" in line
    assert "Traceback" not in captured.err + captured.out


async def test_rejected_token_is_reported_without_printing_it(cadenza_sim, env, capsys):
    canary = "canary-token-3f9a1c77e2"
    env(cadenza_sim, token=canary)
    oid = cadenza_sim.create_order().trade_order_id

    code = await cli.run(["cancel", oid, "--json"])

    captured = capsys.readouterr()
    assert code == 2
    assert canary not in captured.out + captured.err
    assert "Traceback" not in captured.err
    [line] = captured.err.strip().splitlines()
    assert line.startswith("error: authentication failed: the ")
    assert "127.0.0.1" in line
    assert cadenza_sim.get_order(oid).status == "OPEN"


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_cancel_many_with_a_missing_id_exits_1_and_lists_it(
    cadenza_sim, env, capsys, tmp_path
):
    env(cadenza_sim)
    ids = [o.trade_order_id for o in cadenza_sim.create_orders(30)]
    listed = [*ids[:15], MISSING_ID, *ids[15:]]
    path = tmp_path / "ids.txt"
    path.write_text("# orders to cancel\n" + "\n".join(listed) + "\n\n")

    code = await cli.run(["cancel-many", "--file", str(path), "--concurrency", "8", "--plain"])

    out = capsys.readouterr().out
    assert code == 1
    assert "Failed" in out
    [error_row] = [line for line in out.splitlines() if line.startswith(MISSING_ID)]
    assert "OrderNotFoundError" in error_row
    assert "failed: OrderNotFoundError" in out
    assert all(cadenza_sim.get_order(oid).status == "CANCELLED" for oid in ids)


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_cancel_many_reads_stdin_and_prints_one_json_line_per_order(
    cadenza_sim, env, capsys, monkeypatch
):
    env(cadenza_sim)
    ids = [o.trade_order_id for o in cadenza_sim.create_orders(25)]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join([*ids, ids[0]]) + "\n"))

    code = await cli.run(["cancel-many", "-", "--json"])

    lines = json_lines(capsys.readouterr().out)
    assert code == 0
    assert sorted(line["order_id"] for line in lines) == sorted(ids)
    assert all(line["ok"] and line["cancelled"] and line["confirmed"] for line in lines)


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_cancel_many_draws_a_rich_summary_table(cadenza_sim, env, capsys, tmp_path):
    pytest.importorskip("rich")
    env(cadenza_sim)
    ids = [o.trade_order_id for o in cadenza_sim.create_orders(10)]
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(ids))

    code = await cli.run(["cancel-many", "--file", str(path)])

    out = capsys.readouterr().out
    assert code == 0
    assert "Summary" in out
    assert "cancelled (confirmed)" in out
    assert "Failed" not in out


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_cancel_all_cancels_only_the_accounts_open_orders(cadenza_sim, env, capsys):
    env(cadenza_sim)
    open_ids = {o.trade_order_id for o in cadenza_sim.create_orders(12)}
    filled = cadenza_sim.create_order(status="FILLED").trade_order_id

    code = await cli.run(
        ["cancel-all", "--yes", "--account", cadenza_sim.trading_account_id, "--json"]
    )

    lines = json_lines(capsys.readouterr().out)
    assert code == 0
    assert {line["order_id"] for line in lines} == open_ids
    assert all(cadenza_sim.get_order(oid).status == "CANCELLED" for oid in open_ids)
    assert cadenza_sim.get_order(filled).status == "FILLED"


async def test_watch_count_prints_that_many_updates_and_stops(cadenza_sim, env, capsys):
    env(cadenza_sim)
    task = asyncio.ensure_future(cli.run(["watch", "--count", "3", "--json"]))
    published = set()
    try:
        # Keep publishing until the watcher has seen three updates and exits:
        # updates sent before its subscription is live are not expected to show.
        for _ in range(400):
            published.add(cadenza_sim.create_order(publish=True).trade_order_id)
            done, _pending = await asyncio.wait({task}, timeout=0.025)
            if done:
                break
        code = await asyncio.wait_for(task, 5)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    lines = json_lines(capsys.readouterr().out)
    assert code == 0
    assert len(lines) == 3
    assert {line["tradeOrderId"] for line in lines} <= published
    assert all(line["status"] == "OPEN" for line in lines)


def test_missing_token_is_a_configuration_error(env, capsys):
    code = cli.main(["cancel", "00000000-0000-4000-8000-0000000000a1", "--plain"])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip() == "error: no token: set CADENZA_TOKEN or pass --token"


def test_usage_error_exits_2(env, capsys):
    assert cli.main(["cancel"]) == 2
    assert cli.main([]) == 2
    assert cli.main(["cancel-many", "--concurrency", "0"]) == 2


def test_demo_runs_end_to_end_and_every_check_holds(env, capsys):
    code = cli.main(["demo", "--plain"])

    out = capsys.readouterr().out
    assert code == 0
    assert "all 6 checks held" in out
    assert "FAILED" not in out
    for label in (
        "cancel_and_confirm",
        "bulk 1,000",
        "fire-and-forget x200",
        "reconnect",
        "filled",
        "requote",
    ):
        assert label in out


@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_without_rich_the_summary_is_plain_text(cadenza_sim, env, capsys, monkeypatch):
    env(cadenza_sim)
    for name in ("rich", "rich.console", "rich.table", "rich.text", "rich.progress"):
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ImportError
    ids = [o.trade_order_id for o in cadenza_sim.create_orders(5)]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join([*ids, MISSING_ID])))

    code = await cli.run(["cancel-many", "-"])

    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"^cancelled \(confirmed\) +5$", out, re.MULTILINE)
    assert any(line.startswith(MISSING_ID + "  OrderNotFoundError") for line in out.splitlines())


def test_importing_the_library_does_not_import_rich():
    code = "import sys, cadenza_async, cadenza_async.testing; print('rich' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"
