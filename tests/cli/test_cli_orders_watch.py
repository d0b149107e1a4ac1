"""`cadenza-async orders` and `watch`, the SDK's log with -v, and server fields on the terminal."""

from __future__ import annotations

import asyncio
import re

import pytest
from cli_support import HOSTILE, assert_no_control, clear_env, json_lines

from cadenza_async import cli


async def test_orders_lists_the_accounts_open_orders_as_a_table(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    open_ids = [o.trade_order_id for o in cadenza_sim.create_orders(3)]
    filled = cadenza_sim.create_order(status="FILLED").trade_order_id

    code = await cli.run(["orders", "--plain"])

    out = capsys.readouterr().out
    assert code == 0
    assert f"3 open orders of {cadenza_sim.trading_account_id}" in out
    assert all(re.search(rf"^{oid}  OPEN ", out, re.MULTILINE) for oid in open_ids)
    assert filled not in out


async def test_orders_json_is_one_order_per_line(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    open_ids = {o.trade_order_id for o in cadenza_sim.create_orders(4)}
    cadenza_sim.create_order(status="CANCELLED")

    code = await cli.run(["orders", "--json"])

    lines = json_lines(capsys.readouterr().out)
    assert code == 0
    assert {line["tradeOrderId"] for line in lines} == open_ids


async def test_orders_on_an_instrument(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    eth = cadenza_sim.create_order(instrument_id="BINANCE:ETH/USDT").trade_order_id
    cadenza_sim.create_order(instrument_id="BINANCE:BTC/USDT")

    code = await cli.run(["orders", "--instrument", "BINANCE:ETH/USDT", "--json"])

    [line] = json_lines(capsys.readouterr().out)
    assert code == 0
    assert line["tradeOrderId"] == eth


async def test_orders_says_when_there_is_none(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)

    code = await cli.run(["orders", "--plain"])

    assert code == 0
    assert f"no open orders on {cadenza_sim.trading_account_id}" in capsys.readouterr().out


def test_orders_without_an_account_exits_2(capsys, monkeypatch):
    clear_env(monkeypatch)
    monkeypatch.setenv("CADENZA_TOKEN", "some-token")

    assert cli.main(["orders", "--plain"]) == 2
    assert "orders needs --account" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["--plain", "rich"])
async def test_escape_sequences_in_order_fields_never_reach_the_terminal(
    cadenza_sim, capsys, monkeypatch, mode
):
    if mode == "rich":
        pytest.importorskip("rich")
        monkeypatch.setenv("COLUMNS", "200")  # wide enough that no cell is shortened
    clear_env(monkeypatch)(cadenza_sim)
    cadenza_sim.create_order(instrument_id="X" + HOSTILE, order_side="BUY\x1b[2J")

    code = await cli.run(["orders"] + ([] if mode == "rich" else [mode]))

    captured = capsys.readouterr()
    assert code == 0
    assert_no_control(captured.out + captured.err)
    assert "Xboom" in captured.out


async def _watch_until_done(sim, args, publish):
    task = asyncio.ensure_future(cli.run(args))
    try:
        for _ in range(400):
            publish()
            done, _pending = await asyncio.wait({task}, timeout=0.025)
            if done:
                break
        return await asyncio.wait_for(task, 5)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_escape_sequences_in_watched_updates_never_reach_the_terminal(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)

    def publish():
        cadenza_sim.create_order(publish=True, instrument_id="X" + HOSTILE)

    code = await _watch_until_done(cadenza_sim, ["watch", "--count", "2", "--plain"], publish)

    captured = capsys.readouterr()
    assert code == 0
    assert_no_control(captured.out + captured.err)
    assert captured.out.count("Xboom") == 2


def test_watch_has_no_via_flag(capsys):
    assert cli.main(["watch", "--via", "ws"]) == 2
    assert (
        "--via"
        not in cli._main._parser()._subparsers._group_actions[0].choices["watch"].format_help()
    )


@pytest.mark.parametrize(("flags", "shown"), [([], False), (["-v"], False), (["-vv"], True)])
async def test_verbose_shows_the_sdks_log_on_stderr(cadenza_sim, capsys, monkeypatch, flags, shown):
    clear_env(monkeypatch)(cadenza_sim)
    oid = cadenza_sim.create_order().trade_order_id
    cadenza_sim.fail_next_rest(1, status=503)

    code = await cli.run(["cancel", oid, "--no-confirm", "--plain", *flags])

    err = capsys.readouterr().err
    assert code == 0
    assert ("DEBUG cadenza_async.http" in err) is shown
    assert ("503; retrying" in err) is shown
    assert cadenza_sim.token not in err


async def test_verbose_before_the_command_counts_too(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    oid = cadenza_sim.create_order().trade_order_id
    cadenza_sim.fail_next_rest(1, status=503)

    code = await cli.run(["-vv", "cancel", oid, "--no-confirm", "--plain"])

    assert code == 0
    assert "DEBUG cadenza_async.http" in capsys.readouterr().err


def test_version(capsys):
    from cadenza_async import __version__

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cadenza-async {__version__}"


def test_sim_flags_have_help(capsys):
    assert cli.main(["sim", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for flag, words in (
        ("--host HOST", "address to listen on"),
        ("--port PORT", "port to listen on"),
        ("--ping-interval PING_INTERVAL", "seconds between the WebSocket pings"),
        ("--history-size HISTORY_SIZE", "publications kept per channel"),
    ):
        assert f"{flag} {words}" in out, flag
