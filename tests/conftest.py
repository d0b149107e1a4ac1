"""Shared fixtures: a scripted REST server on loopback (``api``) and clients on the simulator.

The plain helpers these build on (``ScriptedApi``, the seed order,
``client_for``) are in ``support.py``; tests import them from there.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from support import ScriptedApi, client_for

from cadenza_async import CadenzaClient
from cadenza_async.testing import CadenzaSimulator


@pytest.fixture
async def api() -> AsyncIterator[ScriptedApi]:
    """A started :class:`~support.ScriptedApi`, stopped after the test."""
    scripted = ScriptedApi()
    await scripted.server.start_server()
    try:
        yield scripted
    finally:
        await scripted.server.close()


@pytest.fixture
async def open_client(
    cadenza_sim: CadenzaSimulator,
) -> AsyncIterator[Callable[..., Awaitable[CadenzaClient]]]:
    """``await open_client(**options)``: a client on ``cadenza_sim``, entered, closed after the test.

    ``options`` are those of :func:`support.client_for`.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def make(**options: Any) -> CadenzaClient:
            return await stack.enter_async_context(client_for(cadenza_sim, **options))

        yield make


def pytest_configure(config: pytest.Config) -> None:
    if sys.version_info < (3, 11):
        # CPython 3.10's asyncio SSL transport is not closed when its socket is
        # reset mid-record (the TLS fault tests do that on purpose); 3.11
        # rewrote it. Its ResourceWarning comes from __del__, whenever the
        # object happens to be collected, so it is ignored by name on 3.10 only.
        config.addinivalue_line(
            "filterwarnings",
            "ignore:Exception ignored in. <function _SSLProtocolTransport.__del__"
            ":pytest.PytestUnraisableExceptionWarning",
        )
