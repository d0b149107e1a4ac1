"""raw: the client a competent user writes by hand.

aiohttp for the cancel POST, a ``websockets`` connection speaking just
enough Centrifugo (connect, subscribe, answer pings), stdlib ``json``, and
a dict of futures keyed by order id. The future is registered before the
POST (the event can beat the HTTP reply), and a terminal status in the HTTP
reply itself counts as proof, as it does in the SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

from . import TERMINAL, Target, worker_pool

CANCEL_PATH = "/api/v3/tradeOrder/cancel"


class RawClient:
    name = "raw"

    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Future[dict[str, object]]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, target: Target) -> None:
        self._account = target.account
        self._url = target.api_url.rstrip("/") + CANCEL_PATH
        self._session = aiohttp.ClientSession(
            headers={
                "Authorization": f"Bearer {target.token}",
                "Content-Type": "application/json",
            }
        )
        ws = self._ws = await connect(target.ws_url, compression=None)
        await ws.send(json.dumps({"id": 1, "connect": {"token": target.token, "name": "raw"}}))
        await self._reply(ws, 1)
        channel = f"tradingAccount:{target.account}"
        await ws.send(json.dumps({"id": 2, "subscribe": {"channel": channel}}))
        await self._reply(ws, 2)
        self._reader = asyncio.ensure_future(self._read(ws))

    @staticmethod
    async def _reply(ws: ClientConnection, cid: int) -> dict[str, object]:
        while True:
            frame = await ws.recv()
            for line in str(frame).splitlines():
                msg = json.loads(line)
                if msg.get("id") == cid:
                    if "error" in msg:
                        raise RuntimeError(f"centrifugo error: {msg['error']}")
                    return msg

    async def _read(self, ws: ClientConnection) -> None:
        waiters = self._waiters
        async for frame in ws:
            for line in str(frame).splitlines():
                msg = json.loads(line)
                if not msg:
                    await ws.send("{}")  # ping -> pong
                    continue
                push = msg.get("push")
                if push is None:
                    continue
                pub = push.get("pub")
                if pub is None:
                    continue
                order = pub["data"]["data"]
                if order["status"] in TERMINAL:
                    fut = waiters.get(order["tradeOrderId"])
                    if fut is not None and not fut.done():
                        fut.set_result(order)

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
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._session is not None:
            await self._session.close()


def make() -> RawClient:
    return RawClient()
