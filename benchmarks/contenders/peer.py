"""peer: what a Cadenza user assembles today: aiohttp for REST, centrifuge-python for the stream.

``centrifuge.Client`` (the library the official Cadenza Python client
re-exports for its WebSocket) with one subscription whose
``on_publication`` resolves a dict of futures; the cancel is the same aiohttp
POST as ``raw``. A terminal status in the HTTP reply counts as proof.
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
from centrifuge import Client, PublicationContext, SubscriptionEventHandler

from . import TERMINAL, Target, worker_pool

CANCEL_PATH = "/api/v3/tradeOrder/cancel"


class _Events(SubscriptionEventHandler):  # type: ignore[misc]
    def __init__(self, waiters: dict[str, asyncio.Future[dict[str, object]]]) -> None:
        self._waiters = waiters

    async def on_publication(self, ctx: PublicationContext) -> None:
        order = ctx.pub.data["data"]
        if order["status"] in TERMINAL:
            fut = self._waiters.get(order["tradeOrderId"])
            if fut is not None and not fut.done():
                fut.set_result(order)


class PeerClient:
    name = "peer"

    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Future[dict[str, object]]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._client: Client | None = None

    async def start(self, target: Target) -> None:
        logging.getLogger("centrifuge").setLevel(logging.WARNING)
        self._account = target.account
        self._url = target.api_url.rstrip("/") + CANCEL_PATH
        self._session = aiohttp.ClientSession(
            headers={
                "Authorization": f"Bearer {target.token}",
                "Content-Type": "application/json",
            }
        )
        client = self._client = Client(target.ws_url, token=target.token, proxy=None)
        sub = client.new_subscription(
            f"tradingAccount:{target.account}", events=_Events(self._waiters)
        )
        await client.connect()
        await sub.subscribe()
        await sub.ready(timeout=10.0)

    async def cancel_and_confirm(self, order_id: str) -> None:
        assert self._session is not None
        fut: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        self._waiters[order_id] = fut
        try:
            body = json.dumps({"tradeOrderId": order_id, "tradingAccountId": self._account})
            async with self._session.post(self._url, data=body) as resp:
                answer = json.loads(await resp.read())
            if not answer.get("success"):
                raise RuntimeError(f"cancel failed: {answer.get('error')}")
            if answer["data"]["status"] in TERMINAL:
                return
            await asyncio.wait_for(fut, 10.0)
        finally:
            del self._waiters[order_id]

    async def cancel_many(self, order_ids: list[str], concurrency: int) -> int:
        return await worker_pool(order_ids, self.cancel_and_confirm, concurrency)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.disconnect()
        if self._session is not None:
            await self._session.close()


def make() -> PeerClient:
    return PeerClient()
