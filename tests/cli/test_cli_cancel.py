"""`cadenza-async cancel`: confirmed by default, an order already final is an outcome, errors that say what to do."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web
from cli_support import HOSTILE, MISSING_ID, assert_no_control, clear_env, fake_api, json_lines

from cadenza_async import cli


@pytest.mark.cadenza_sim(cancel_delay=0.02)
async def test_cancel_confirms_by_default(cadenza_sim, capsys, monkeypatch):
    env = clear_env(monkeypatch)
    env(cadenza_sim)
    oid = cadenza_sim.create_order().trade_order_id

    code = await cli.run(["cancel", oid, "--json"])

    [line] = json_lines(capsys.readouterr().out)
    assert code == 0
    assert line["confirmed"] is True
    assert line["status"] == "CANCELLED"


async def test_an_order_already_final_exits_0_with_and_without_confirmation(
    cadenza_sim, capsys, monkeypatch
):
    env = clear_env(monkeypatch)
    env(cadenza_sim)
    oid = cadenza_sim.create_order(status="FILLED", executed_quantity="1").trade_order_id

    confirmed = await cli.run(["cancel", oid, "--json"])
    [line] = json_lines(capsys.readouterr().out)
    assert confirmed == 0
    assert line["ok"] is True
    assert line["cancelled"] is False
    assert line["status"] == "FILLED"

    unconfirmed = await cli.run(["cancel", oid, "--no-confirm", "--json"])
    [line] = json_lines(capsys.readouterr().out)
    assert unconfirmed == 0
    assert line["ok"] is True
    assert line["already_final"] is True
    assert line["confirmed"] is False

    plain = await cli.run(["cancel", oid, "--no-confirm", "--plain"])
    captured = capsys.readouterr()
    assert plain == 0
    assert "already final" in captured.out
    assert captured.err == ""


def test_flags_that_need_confirmation_are_refused_with_no_confirm(capsys, monkeypatch):
    clear_env(monkeypatch)
    monkeypatch.setenv("CADENZA_TOKEN", "some-token")
    assert cli.main(["cancel", MISSING_ID, "--no-confirm", "--via", "ws", "--plain"]) == 2
    assert "--via ws needs confirmation" in capsys.readouterr().err
    assert cli.main(["cancel", MISSING_ID, "--no-confirm", "--timeout", "3", "--plain"]) == 2
    assert "--timeout" in capsys.readouterr().err
    assert cli.main(["cancel", MISSING_ID, "--no-confirm", "--confirm"]) == 2


def test_an_insecure_url_error_names_the_flags(capsys, monkeypatch):
    clear_env(monkeypatch)
    monkeypatch.setenv("CADENZA_TOKEN", "some-token")
    monkeypatch.setenv("CADENZA_API_URL", "http://api.example.com")

    code = cli.main(["cancel", MISSING_ID, "--plain"])

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "--allow-insecure" in err
    assert "--api-url" in err
    assert "allow_insecure" not in err
    assert "api_url" not in err


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_connection_failure_names_the_host(capsys, monkeypatch):
    clear_env(monkeypatch)
    port = _closed_port()
    monkeypatch.setenv("CADENZA_TOKEN", "some-token")
    monkeypatch.setenv("CADENZA_API_URL", f"http://127.0.0.1:{port}")

    code = cli.main(["cancel", MISSING_ID, "--no-confirm", "--plain"])

    [line] = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert f"cannot reach the REST API at http://127.0.0.1:{port}" in line
    assert "TransportError" in line


async def test_a_refused_token_exits_2_naming_the_rest_api(cadenza_sim, capsys, monkeypatch):
    env = clear_env(monkeypatch)
    env(cadenza_sim, token="not-the-token-b1e4")
    oid = cadenza_sim.create_order().trade_order_id

    code = await cli.run(["cancel", oid, "--no-confirm", "--plain"])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: authentication failed: the REST API at {cadenza_sim.api_url}")
    assert "not-the-token" not in err


async def test_a_refused_token_exits_2_naming_the_websocket(cadenza_sim, capsys, monkeypatch):
    env = clear_env(monkeypatch)
    env(cadenza_sim, token="not-the-token-b1e4")

    code = await cli.run(["watch", "--count", "1", "--plain"])

    err = capsys.readouterr().err
    assert code == 2
    assert f"authentication failed: the WebSocket at {cadenza_sim.ws_url}" in err
    assert "not-the-token" not in err


def _hostile_404(echo_token: bool = False):
    async def handler(request: web.Request) -> web.Response:
        message = "no such order " + HOSTILE
        if echo_token:
            message += " " + request.headers.get("Authorization", "")
        return web.json_response(
            {"data": None, "success": False, "errno": -111002, "error": message}, status=404
        )

    return handler


@pytest.mark.parametrize("mode", ["--plain", "rich", "--json"])
async def test_escape_sequences_in_a_server_error_never_reach_the_terminal(
    capsys, monkeypatch, mode
):
    clear_env(monkeypatch)
    if mode == "rich":
        pytest.importorskip("rich")
    monkeypatch.setenv("CADENZA_TOKEN", "echoed-s3cret-token")
    args = ["cancel", MISSING_ID, "--no-confirm"] + ([] if mode == "rich" else [mode])
    async with fake_api(_hostile_404(echo_token=True)) as url:
        monkeypatch.setenv("CADENZA_API_URL", url)
        code = await cli.run(args)

    captured = capsys.readouterr()
    assert code == 1
    assert_no_control(captured.out + captured.err)
    assert "echoed-s3cret" not in captured.out + captured.err
    if mode == "--json":
        [line] = json_lines(captured.out)
        assert line["error"] == "OrderNotFoundError"
        assert "\x1b]0;pwned" in line["message"]  # the data intact, escaped on the wire
    else:
        assert "no such order boom" in captured.err


@pytest.mark.cadenza_sim(cancel_delay=0.02)
async def test_a_cancel_goes_out_and_is_proven_by_rest_when_the_websocket_is_down(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    monkeypatch.setenv("CADENZA_WS_URL", f"ws://127.0.0.1:{_closed_port()}/connection/websocket")
    oid = cadenza_sim.create_order().trade_order_id

    code = await cli.run(["cancel", oid, "--json"])

    [line] = json_lines(capsys.readouterr().out)
    assert code == 0
    assert line["cancelled"] is True
    assert line["source"] == "rest"


async def test_cancel_many_with_a_refused_token_exits_2_after_the_summary(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim, token="not-the-token-b1e4")
    oid = cadenza_sim.create_order().trade_order_id

    code = await cli.run(["cancel-many", oid, MISSING_ID, "--no-confirm", "--plain"])

    captured = capsys.readouterr()
    assert code == 2
    assert "failed: AuthenticationError" in captured.out
    assert "error: authentication failed: the REST API at" in captured.err
    assert "not-the-token" not in captured.out + captured.err
