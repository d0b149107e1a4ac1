"""`cadenza-async submit` and `replace`: proven outcomes, --json lines, exit codes."""

from __future__ import annotations

import pytest
from cli_support import HOSTILE, assert_no_control, clear_env, json_lines

from cadenza_async import cli

ORDER = ["--instrument", "BINANCE:BTC/USDT", "--side", "buy", "--quantity", "0.01"]
PRICED = [*ORDER, "--price", "50000"]


@pytest.mark.cadenza_sim(accept_delay=0.02)
async def test_submit_prints_the_proven_acceptance_as_json(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)

    code = await cli.run(["submit", *ORDER, "--price", "50000", "--tif", "gtc", "--json"])

    [line] = json_lines(capsys.readouterr().out)
    assert code == 0
    assert line["ok"] is True
    assert (line["accepted"], line["status"], line["source"]) == (True, "OPEN", "ws")
    placed = cadenza_sim.find_by_client_order_id(line["client_order_id"])
    assert placed is not None
    assert placed.trade_order_id == line["order_id"]
    assert (placed.order_side, placed.time_in_force, placed.limit_price) == ("BUY", "GTC", "50000")


async def test_submit_of_a_rejected_order_exits_1_with_its_reason(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    cadenza_sim.set_price_band("1", "100")

    code = await cli.run(["submit", *ORDER, "--price", "50000", "--plain"])

    out = capsys.readouterr().out
    assert code == 1
    assert "REJECTED  refused" in out
    assert "out of band" in out


async def test_submit_over_the_websocket_uses_the_rpc(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)

    code = await cli.run(
        ["submit", *ORDER, "--price", "1", "--via", "ws", "--client-order-id", "cli-1", "--json"]
    )

    [line] = json_lines(capsys.readouterr().out)
    assert code == 0
    assert line["client_order_id"] == "cli-1"
    assert cadenza_sim.submit_requests == [("cli-1", "ws")]


async def test_submit_that_the_api_refuses_is_an_error_line(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)

    code = await cli.run(["submit", *PRICED, "--side", "HOLD", "--unlisted", "--json"])

    [line] = json_lines(capsys.readouterr().out)
    assert code == 1
    assert line["ok"] is False
    assert line["error"] == "InvalidRequestError"


@pytest.mark.cadenza_sim(accept_delay=30.0)
async def test_submit_not_proven_in_time_names_its_client_order_id(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)

    code = await cli.run(
        ["submit", *PRICED, "--client-order-id", "slow", "--timeout", "0.3", "--json"]
    )

    [line] = json_lines(capsys.readouterr().out)
    assert code == 1
    assert line["error"] == "SubmitConfirmationTimeout"
    assert line["client_order_id"] == "slow"
    assert line["last_known"]["status"] == "SUBMITTED"


def test_submit_usage_errors_exit_2(capsys, monkeypatch):
    clear_env(monkeypatch)
    monkeypatch.setenv("CADENZA_TOKEN", "some-token")
    assert cli.main(["submit", "--side", "BUY", "--quantity", "1"]) == 2  # no instrument
    assert cli.main(["submit", *ORDER, "--side", "hold"]) == 2
    assert cli.main(["submit", *ORDER, "--timeout", "0"]) == 2
    capsys.readouterr()
    assert cli.main(["submit", *ORDER, "--client-order-id", "has space", "--plain"]) == 2
    assert "--client-order-id 'has space' has ' ' at position 4" in capsys.readouterr().err


@pytest.mark.cadenza_sim(cancel_delay=0.01, accept_delay=0.01)
async def test_replace_cancels_then_places_and_prints_both(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    old = cadenza_sim.create_order(instrument_id="BINANCE:BTC/USDT", publish=True)

    code = await cli.run(["replace", old.trade_order_id, *ORDER, "--price", "50010", "--json"])

    [line] = json_lines(capsys.readouterr().out)
    assert code == 0
    assert (line["ok"], line["outcome"], line["replaced"]) == (True, "submitted", True)
    assert line["cancel"]["status"] == "CANCELLED"
    assert line["submit"]["status"] == "OPEN"
    assert cadenza_sim.peak_live_orders() == 1


async def test_replace_of_a_filled_order_places_nothing(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    old = cadenza_sim.create_order(status="FILLED", executed_quantity="1")

    code = await cli.run(["replace", old.trade_order_id, *PRICED, "--plain"])

    out = capsys.readouterr().out
    assert code == 0
    assert "FILLED" in out
    assert "nothing placed" in out
    assert cadenza_sim.submits_applied == 0

    code = await cli.run(["replace", old.trade_order_id, *PRICED, "--place-if-filled", "--json"])
    [line] = json_lines(capsys.readouterr().out)
    assert code == 0
    assert line["outcome"] == "submitted"
    assert cadenza_sim.submits_applied == 1


@pytest.mark.cadenza_sim(cancel_delay=60.0)
async def test_replace_of_an_order_not_proven_final_exits_1(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    old = cadenza_sim.create_order()

    code = await cli.run(["replace", old.trade_order_id, *PRICED, "--timeout", "0.3", "--plain"])

    captured = capsys.readouterr()
    assert code == 1
    assert "not proven final: nothing placed" in captured.err
    assert cadenza_sim.submits_applied == 0

    code = await cli.run(["replace", old.trade_order_id, *PRICED, "--timeout", "0.3", "--json"])
    [line] = json_lines(capsys.readouterr().out)
    assert (line["ok"], line["outcome"], line["cancel"]) == (False, "old_not_final", None)
    assert line["cancel_error"]["error"] == "ConfirmationTimeout"


async def test_reject_reasons_from_the_server_reach_the_terminal_clean(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    cadenza_sim.reject_next_submits(1, reason=HOSTILE)

    code = await cli.run(["submit", *PRICED, "--plain"])

    out = capsys.readouterr().out
    assert code == 1
    assert "boom" in out
    assert_no_control(out)
