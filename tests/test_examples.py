"""Every script in examples/ runs as is against its embedded simulator, and touches nothing else.

Without ``--live`` an example ignores the ``CADENZA_*`` environment: pointed
at a recording loopback server, it sends nothing there. With ``--live`` it
cancels only the ids it is given and never places an order.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ACCOUNT = "550e8400-e29b-41d4-a716-446655440000"

# The line each example prints when it did what it shows.
EXPECTED = {
    "cancel_and_confirm.py": [
        "round 1: quote @ 1000.00 -> cancelled (proved by ws",
        "round 3: quote @ 999.00 -> NOT cancelled: FILLED",
        "done: 5 quotes, position 0.001 filled",
    ],
    "fire_and_forget.py": [
        "background cancel of 00000000-0000-4000-8000-000000000000 failed: OrderNotFoundError",
        "after close: 20 outcomes: 20 CANCELLED",
        "the exchange applied 20 cancels",
    ],
    "bulk_cancel.py": [
        "00000000-0000-4000-8000-000000000000: failed with OrderNotFoundError",
        "cancel_many: 20/21 cancelled, errors in place",
        "cancel_many_iter: {'CANCELLED': 30}",
    ],
    "order_updates.py": ["9 order updates received"],
}


class Recorder:
    """A loopback TCP server that counts every connection made to it (and closes it)."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()
        await writer.wait_closed()

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
        env.update(
            CADENZA_TOKEN="recorder-token-do-not-send",
            CADENZA_API_URL=f"http://127.0.0.1:{self.port}",
            CADENZA_WS_URL=f"ws://127.0.0.1:{self.port}/connection/websocket",
            CADENZA_TRADING_ACCOUNT_ID=ACCOUNT,
        )
        return env


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    server = await asyncio.start_server(rec._handle, "127.0.0.1", 0)
    rec.port = server.sockets[0].getsockname()[1]
    async with server:
        yield rec


async def run_example(name: str, *args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "dev",
        "-W",
        "error",
        str(EXAMPLES / name),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_every_example_has_expectations():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_example_runs_on_its_simulator_and_sends_nothing_to_the_configured_api(
    name, recorder
):
    code, out, err = await run_example(name, env=recorder.environment())

    assert code == 0, err
    for line in EXPECTED[name]:
        assert line in out, out
    assert "Traceback" not in err
    assert recorder.connections == 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_live_without_ids_refuses_and_sends_nothing(name, recorder):
    code, _out, err = await run_example(name, "--live", env=recorder.environment())

    assert code == 2
    assert "pass their ids" in err
    assert recorder.connections == 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_ids_without_live_are_refused_not_ignored(name, recorder):
    code, _out, err = await run_example(name, ACCOUNT, env=recorder.environment())

    assert code == 2
    assert "--live" in err
    assert recorder.connections == 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.cadenza_sim(cancel_delay=0.01)
async def test_live_cancels_only_the_given_orders_and_places_none(name, cadenza_sim):
    given = [o.trade_order_id for o in cadenza_sim.create_orders(2)]
    bystander = cadenza_sim.create_order().trade_order_id
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
    env.update(
        CADENZA_TOKEN=cadenza_sim.token,
        CADENZA_API_URL=cadenza_sim.api_url,
        CADENZA_WS_URL=cadenza_sim.ws_url,
        CADENZA_TRADING_ACCOUNT_ID=cadenza_sim.trading_account_id,
    )

    code, _out, err = await run_example(name, "--live", *given, env=env)

    assert code == 0, err
    assert len(cadenza_sim.orders) == 3  # nothing placed
    assert not [r for r in cadenza_sim.rest_requests if r[0] == "POST" and "submit" in r[1]]
    assert {oid for oid, _via in cadenza_sim.cancel_requests} == set(given)
    assert all(cadenza_sim.get_order(oid).status == "CANCELLED" for oid in given)
    assert cadenza_sim.get_order(bystander).status == "OPEN"
