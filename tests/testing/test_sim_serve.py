"""Running the simulator standalone: ``serve`` and ``python -m cadenza_async.testing``."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from cadenza_async.testing import CadenzaSimulator, serve
from cadenza_async.testing.__main__ import _parser


async def test_serve_prints_urls_and_token_and_stops_cleanly_when_cancelled():
    lines: list[str] = []
    ready: asyncio.Future[CadenzaSimulator] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(
        serve(
            "127.0.0.1", 0, orders=3, out=lines.append, started=ready.set_result, cancel_delay=0.01
        )
    )
    try:
        sim = await asyncio.wait_for(ready, 5)
        printed = dict(line.split(": ", 1) for line in lines)
        assert printed["api_url"] == sim.api_url
        assert printed["ws_url"] == sim.ws_url
        assert printed["token"] == sim.token
        assert printed["trading_account_id"] == sim.trading_account_id
        assert sim.cancel_delay == 0.01
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                printed["api_url"] + "/api/v3/tradeOrder/list",
                headers={"Authorization": f"Bearer {printed['token']}"},
            ) as resp,
        ):
            body = await resp.json()
        assert body["pagination"]["total"] == 3
        assert all(order["status"] == "OPEN" for order in body["data"])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sim.connections == 0


def test_command_line_options_reach_the_simulator_options():
    args = _parser().parse_args(["--port", "0", "--cancel-delay", "0.2", "--orders", "5"])
    assert (args.port, args.cancel_delay, args.orders) == (0, 0.2, 5)


def test_the_wire_generation_is_chosen_on_the_command_line(monkeypatch):
    import cadenza_async.testing.__main__ as entry

    seen: dict[str, object] = {}

    async def fake_serve(*args: object, **options: object) -> None:
        seen.update(options)

    monkeypatch.setattr(entry, "serve", fake_serve)
    assert entry.main(["--no-uvloop", "--wire", "legacy", "--event-shape", "status_change"]) == 0
    assert (seen["wire"], seen["event_shape"]) == ("legacy", "status_change")
    assert entry.main(["--no-uvloop"]) == 0
    assert seen["wire"] == "current"


def test_a_legacy_event_shape_on_the_current_wire_is_a_usage_error(capsys):
    import pytest

    with pytest.raises(SystemExit) as exited:
        _parser_main(["--event-shape", "status_change"])
    assert exited.value.code == 2
    assert "--wire legacy" in capsys.readouterr().err


def _parser_main(argv: list[str]) -> int:
    from cadenza_async.testing.__main__ import main

    return main(argv)
