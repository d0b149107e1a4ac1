"""The module-level shortcut: one default client per running event loop, built from the environment."""

from __future__ import annotations

import asyncio
import weakref

from .client import CadenzaClient
from .models import CancelResult

__all__ = ["aclose_default_client", "cancel_and_confirm", "default_client"]

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CadenzaClient] = (
    weakref.WeakKeyDictionary()
)
_starting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


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
    return client


async def cancel_and_confirm(
    order_id: str,
    *,
    trading_account_id: str | None = None,
    timeout: float | None = None,
) -> CancelResult:
    """``CadenzaClient.cancel_and_confirm`` on the default client of the running loop.

    The client is reused by later calls in the same loop; close it with
    :func:`aclose_default_client` before the loop ends.
    """
    client = await default_client()
    return await client.cancel_and_confirm(
        order_id, trading_account_id=trading_account_id, timeout=timeout
    )


async def aclose_default_client() -> None:
    """Close the running loop's default client, if there is one (drains its background cancels)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()
