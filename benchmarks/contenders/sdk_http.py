"""sdk_http: ``CadenzaClient`` with the default ``cancel_via="http"``."""

from __future__ import annotations

import functools
from typing import Any

from cadenza_async import CadenzaClient

from . import Target


class SdkClient:
    name = "sdk_http"
    cancel_via = "http"

    def __init__(self) -> None:
        self._client: CadenzaClient | None = None

    def client(self, target: Target) -> CadenzaClient:
        """The client this contender runs (not entered yet)."""
        return CadenzaClient(
            token=target.token,
            api_url=target.api_url,
            ws_url=target.ws_url,
            trading_account_id=target.account,
            cancel_via=self.cancel_via,
        )

    async def start(self, target: Target) -> None:
        self._account = target.account
        self._client = await self.client(target).__aenter__()
        # Sequential calls go straight to the client, as a user's code would call
        # it: no wrapper coroutine of the harness's own in the timed path (raw and
        # peer are timed through their own methods, which are their whole client).
        self.cancel_and_confirm: Any = functools.partial(
            self._client.cancel_and_confirm, trading_account_id=self._account
        )

    async def cancel_and_confirm(self, order_id: str) -> None:  # replaced by start()
        assert self._client is not None
        await self._client.cancel_and_confirm(order_id, trading_account_id=self._account)

    async def cancel_many(self, order_ids: list[str], concurrency: int) -> int:
        assert self._client is not None
        results = await self._client.cancel_many(
            order_ids, concurrency=concurrency, trading_account_id=self._account
        )
        failures = [r for r in results if isinstance(r, Exception)]
        if failures and len(failures) == len(results):
            raise failures[0]
        return len(results) - len(failures)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def make() -> SdkClient:
    return SdkClient()
