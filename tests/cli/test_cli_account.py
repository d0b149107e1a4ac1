"""`cadenza-async portfolio`, `accounts` and `quote` against the simulator."""

from __future__ import annotations

from cli_support import clear_env, json_lines

from cadenza_async import cli

ETH = "BINANCE:ETH/USDT"


async def test_portfolio_prints_balances_as_a_table_or_json(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    assert await cli.run(["portfolio", "--plain"]) == 0
    out = capsys.readouterr().out
    assert "USDT" in out
    assert "1000000" in out
    assert await cli.run(["portfolio", "--json"]) == 0
    (line,) = json_lines(capsys.readouterr().out)
    assert line["tradingAccountId"] == cadenza_sim.trading_account_id
    assert {b["securitySymbol"] for b in line["balances"]} == {"USDT", "BTC", "ETH"}


async def test_accounts_lists_each_account_with_its_status(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    cadenza_sim.accounts.statuses[cadenza_sim.trading_account_id] = "LOCKED"
    assert await cli.run(["accounts", "--plain"]) == 0
    out = capsys.readouterr().out
    assert cadenza_sim.trading_account_id in out
    assert "LOCKED" in out


async def test_quote_prints_a_quote_and_executes_it_with_yes(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    dealer = cadenza_sim.trading_account_id
    assert await cli.run(["quote", "BUY", "0.5", ETH, "--dealer", dealer, "--plain"]) == 0
    assert "at 3000" in capsys.readouterr().out
    assert cadenza_sim.submits_applied == 0
    argv = ["quote", "BUY", "0.5", ETH, "--dealer", dealer, "--execute", "--yes", "--json"]
    assert await cli.run(argv) == 0
    quote, executed = json_lines(capsys.readouterr().out)
    assert executed["quoteId"] == quote["quoteId"]
    assert executed["accepted"] is True
    assert executed["order"]["orderType"] == "QUOTED"
    assert cadenza_sim.accounts.quotes_executed == 1


async def test_quote_execute_without_a_terminal_needs_yes_before_any_request(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    cadenza_sim.rest_requests = []
    argv = ["quote", "BUY", "0.5", ETH, "--dealer", cadenza_sim.trading_account_id, "--execute"]
    assert await cli.run(argv) == 2
    assert "--yes" in capsys.readouterr().err
    assert cadenza_sim.rest_requests == []


async def test_doctor_shows_the_api_health_and_fails_when_it_is_unhealthy(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    assert await cli.run(["doctor", "--json"]) == 0
    checks = {line.get("check"): line for line in json_lines(capsys.readouterr().out)}
    assert checks["rest.health"]["status"] == "OK"
    assert checks["rest.health"]["data"]["status"] == "healthy"
    cadenza_sim.accounts.health_status = "unhealthy"
    assert await cli.run(["doctor", "--json"]) == 1
    checks = {line.get("check"): line for line in json_lines(capsys.readouterr().out)}
    assert checks["rest.health"]["status"] == "FAIL"
    assert checks["rest.health"]["data"]["checks"]["database"] == "unhealthy"
