"""Set-up mistakes end within the connect timeout with a message naming the setting to fix."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from support import client_for

from cadenza_async import (
    ApiNotFoundError,
    BlockingCadenzaClient,
    BlockingInEventLoopError,
    ConfigurationError,
    cli,
)
from cadenza_async.testing import CadenzaSimulator

#: The connect timeout the clients here use (seconds), and the slack a test allows past it.
CONNECT = 2.0
SLACK = 3.0


def point(monkeypatch: pytest.MonkeyPatch, sim: CadenzaSimulator, **override: str) -> None:
    values = {
        "CADENZA_TOKEN": sim.token,
        "CADENZA_API_URL": sim.api_url,
        "CADENZA_WS_URL": sim.ws_url,
        "CADENZA_TRADING_ACCOUNT_ID": sim.trading_account_id,
        **override,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def timed_run(argv: list[str]) -> tuple[int, float]:
    started = time.monotonic()
    code = await asyncio.wait_for(cli.run(argv), CONNECT + SLACK + 10)
    return code, time.monotonic() - started


async def test_watch_with_a_websocket_url_without_its_path_says_so_and_exits_2(
    cadenza_sim, capsys, monkeypatch
):
    bare = cadenza_sim.ws_url.removesuffix("/connection/websocket")
    point(monkeypatch, cadenza_sim, CADENZA_WS_URL=bare)

    code, elapsed = await timed_run(["watch", "--count", "1", "--plain"])

    err = capsys.readouterr().err
    assert code == 2
    assert elapsed < 10.0  # the connect timeout (10 s) is not even waited out
    assert "no WebSocket endpoint there" in err
    assert "ends in /connection/websocket" in err
    assert "--ws-url (CADENZA_WS_URL)" in err
    assert "watching" not in err


async def test_watch_with_nothing_listening_names_the_websocket_setting(
    cadenza_sim, capsys, monkeypatch
):
    point(monkeypatch, cadenza_sim, CADENZA_WS_URL=f"ws://127.0.0.1:{free_port()}/x")

    code, elapsed = await timed_run(["watch", "--count", "1", "--plain"])

    err = capsys.readouterr().err
    assert code == 1
    assert elapsed < 10.0
    assert "cannot connect" in err
    assert "--ws-url (CADENZA_WS_URL)" in err


async def test_cancel_via_ws_with_a_wrong_websocket_url_blames_it_and_cancels_over_http(
    cadenza_sim, capsys, monkeypatch
):
    order = cadenza_sim.create_order()
    bare = cadenza_sim.ws_url.removesuffix("/connection/websocket")
    point(monkeypatch, cadenza_sim, CADENZA_WS_URL=bare)

    code, elapsed = await timed_run(["cancel", order.trade_order_id, "--via", "ws", "--plain"])

    captured = capsys.readouterr()
    assert code == 0
    assert elapsed < 10.0
    assert "the WebSocket at" in captured.err
    assert "--ws-url (CADENZA_WS_URL)" in captured.err
    assert "REST API" not in captured.err
    assert "cancelled" in captured.out
    assert cadenza_sim.get_order(order.trade_order_id).status == "CANCELLED"


async def test_an_api_url_with_a_path_is_a_wrong_base_url_not_a_missing_order(cadenza_sim):
    order = cadenza_sim.create_order()
    async with client_for(cadenza_sim, api_url=cadenza_sim.api_url + "/api/v3") as client:
        with pytest.raises(ApiNotFoundError) as caught:
            await client.cancel_and_confirm(order.trade_order_id, timeout=CONNECT)
    error = caught.value
    assert isinstance(error, ConfigurationError)
    assert error.status == 404
    assert "api_url" in str(error)
    assert "without /api/v3" in str(error)
    assert "cadenza-async doctor" in str(error)
    assert cadenza_sim.get_order(order.trade_order_id).status == "OPEN"


async def test_an_api_url_with_a_path_on_the_command_line_exits_2_pointing_to_doctor(
    cadenza_sim, capsys, monkeypatch
):
    order = cadenza_sim.create_order()
    point(monkeypatch, cadenza_sim, CADENZA_API_URL=cadenza_sim.api_url + "/api/v3")

    code, _ = await timed_run(["cancel", order.trade_order_id, "--plain"])

    err = capsys.readouterr().err
    assert code == 2
    assert "--api-url (CADENZA_API_URL)" in err
    assert "cadenza-async doctor" in err


async def test_a_token_refused_by_a_local_api_hints_that_a_simulator_token_changes(
    cadenza_sim, capsys, monkeypatch
):
    order = cadenza_sim.create_order()
    point(monkeypatch, cadenza_sim, CADENZA_TOKEN="sim-from-yesterday")

    code, _ = await timed_run(["cancel", order.trade_order_id, "--plain"])

    assert code == 2
    assert "its token changes every time it starts" in capsys.readouterr().err


async def test_the_blocking_client_refuses_a_call_from_a_running_event_loop(cadenza_sim):
    client = await asyncio.to_thread(
        BlockingCadenzaClient,
        token=cadenza_sim.token,
        api_url=cadenza_sim.api_url,
        ws_url=cadenza_sim.ws_url,
    )
    try:
        with pytest.raises(BlockingInEventLoopError, match="use CadenzaClient with await"):
            client.get_order("770e8400-e29b-41d4-a716-446655440002")
        with pytest.raises(RuntimeError):  # (it is one)
            client.order_updates()
    finally:
        await asyncio.to_thread(client.close)
    assert cadenza_sim.rest_requests == []


def run_python(
    code: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_cadenza_sim_fixture_fails_a_plain_test_at_once_pointing_to_the_recipe(tmp_path):
    test = tmp_path / "test_sync.py"
    test.write_text(
        textwrap.dedent(
            """
            from cadenza_async import BlockingCadenzaClient

            def test_blocking(cadenza_sim):
                with BlockingCadenzaClient(
                    token=cadenza_sim.token, api_url=cadenza_sim.api_url, ws_url=cadenza_sim.ws_url
                ) as client:
                    client.cancel_and_confirm(cadenza_sim.create_order().trade_order_id)
            """
        )
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
         str(test)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert time.monotonic() - started < 20  # (the hang it replaces lasted the client's timeouts)
    assert "plain `def` test" in done.stdout
    assert "docs/guides/testing.md" in done.stdout
    assert "A blocking strategy under test" in done.stdout


def test_a_script_that_forgets_aclose_default_client_ends_without_unclosed_session_noise():
    async def serve_and_run() -> subprocess.CompletedProcess[str]:
        async with CadenzaSimulator() as sim:
            order = sim.create_order()
            env = {
                **os.environ,
                "CADENZA_TOKEN": sim.token,
                "CADENZA_API_URL": sim.api_url,
                "CADENZA_WS_URL": sim.ws_url,
                "CADENZA_TRADING_ACCOUNT_ID": sim.trading_account_id,
            }
            script = f"""
                import asyncio
                import logging
                import cadenza_async

                logging.basicConfig(level=logging.INFO)

                async def main():
                    result = await cadenza_async.cancel_and_confirm({order.trade_order_id!r})
                    print(result.cancelled)

                asyncio.run(main())
            """
            return await asyncio.to_thread(run_python, script, env)

    done = asyncio.run(serve_and_run())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert "Unclosed" not in done.stderr
    assert "ResourceWarning" not in done.stderr
    # asyncio.run cancels the stream's reader before it closes the client: a shutdown,
    # not a disconnection (no degraded-mode warning, no "reconnecting")
    assert "disconnected" not in done.stderr
    assert done.stderr == ""
