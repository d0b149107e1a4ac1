"""The module-level shortcut: one default client per running event loop, built from the environment.

The client is closed by :func:`aclose_default_client`, or else when its
event loop shuts down: ``asyncio.run`` (and every ``asyncio.Runner``)
finalizes the loop's async generators before closing it, and one of them
closes the default client, so a script that forgets the call ends without
"Unclosed client session" or a dropped cancel. A loop ended by hand
(``loop.close()`` without ``shutdown_asyncgens()``) needs the call.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator

from .client import CadenzaClient
from .models import CancelResult

__all__ = ["aclose_default_client", "cancel_and_confirm", "default_client"]

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CadenzaClient] = (
    weakref.WeakKeyDictionary()
)
_starting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)
# The async generator that closes a loop's default client when the loop shuts down
# (held here: a collected one would be finalized, and close the client, at once).
_closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = (
    weakref.WeakKeyDictionary()
)


async def _closes_at_shutdown(client: CadenzaClient) -> AsyncGenerator[None, None]:
    """Suspended until the loop's ``shutdown_asyncgens()`` closes it; then closes ``client``."""
    try:
        yield
    finally:
        await client.aclose()


async def default_client() -> CadenzaClient:
    """The running loop's default client, connected; created from ``CADENZA_*`` on first use.

    Raises :class:`~cadenza_async.errors.ConfigurationError` when the
    environment has no token, and what ``CadenzaClient.__aenter__`` raises.
    """
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is not None and not client.closed:
        return client
    lock = _starting.setdefault(loop, asyncio.Lock())
    async with lock:
        client = _clients.get(loop)
        if client is None or client.closed:
            client = CadenzaClient.from_env()
            await client.__aenter__()
            _clients[loop] = client
            closer = _closers[loop] = _closes_at_shutdown(client)
            await closer.__anext__()
    return client


async def cancel_and_confirm(
    order_id: str,
    *,
    trading_account_id: str | None = None,
    timeout: float | None = None,
) -> CancelResult:
    """``CadenzaClient.cancel_and_confirm`` on the default client of the running loop.

    The client is reused by later calls in the same loop; close it with
    :func:`aclose_default_client` (or let ``asyncio.run`` close it as the
    loop ends, see the module docstring).
    """
    client = await default_client()
    return await client.cancel_and_confirm(
        order_id, trading_account_id=trading_account_id, timeout=timeout
    )


async def aclose_default_client() -> None:
    """Close the running loop's default client, if there is one (drains its background cancels)."""
    loop = asyncio.get_running_loop()
    client = _clients.pop(loop, None)
    closer = _closers.pop(loop, None)
    if closer is not None:
        await closer.aclose()  # (closes the client)
    elif client is not None:
        await client.aclose()
