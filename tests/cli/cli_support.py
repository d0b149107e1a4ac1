"""Shared pieces of the command line's tests: the environment fixture, a fake REST server, subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

MISSING_ID = "00000000-0000-4000-8000-00000000dead"
HOSTILE = "\x1b]0;pwned\x07\x1b[2Jboom\x9b31m\x1b[1A"  # retitle, clear screen, C1 CSI, cursor up


def assert_no_control(text: str) -> None:
    """No ESC, BEL, C1 or carriage return reached the terminal."""
    bad = [c for c in text if c in "\x1b\x07\r" or "\x80" <= c <= "\x9f"]
    assert not bad, repr(text)


def clear_env(monkeypatch):
    """The CADENZA_* environment cleared; the returned ``point(sim)`` aims it at a simulator."""
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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def fake_api(handler: Handler) -> AsyncIterator[str]:
    """``handler`` serving every path on loopback; yields the base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def cli_env(sim=None, **extra: str) -> dict[str, str]:
    """The environment for a ``python -m cadenza_async.cli`` subprocess (aimed at ``sim``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
    if sim is not None:
        env.update(
            CADENZA_TOKEN=sim.token,
            CADENZA_API_URL=sim.api_url,
            CADENZA_WS_URL=sim.ws_url,
            CADENZA_TRADING_ACCOUNT_ID=sim.trading_account_id,
        )
    env.update(extra)
    return env


async def start_cli(
    *args: str, env: dict[str, str], stdin: bool = False
) -> asyncio.subprocess.Process:
    """The command line in a subprocess with piped stdout and stderr (and stdin if asked).

    Its Ctrl-C is Python's default even when this process inherited SIGINT
    ignored (a shell's background job): a child inherits an ignored signal
    across exec, and the Ctrl-C tests would then see the command run to its end.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # (reset to default at exec)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "dev",
        "-m",
        "cadenza_async.cli",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
