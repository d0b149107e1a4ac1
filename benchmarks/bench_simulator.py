"""How many cancel + event round trips per second the simulator sustains.

The simulator runs in its own process (``python -m cadenza_async.testing``,
uvloop when installed). This driver (also on uvloop when installed) holds one
WebSocket subscription to the account channel and a raw aiohttp session; it
cancels N orders with bounded concurrency, each cancel waiting until its
CANCELLED event arrived on the WebSocket, and reports round trips per second.

    python benchmarks/bench_simulator.py [-n 20000] [-c 64] [--via http|ws] [--cancel-delay 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
import msgspec


class _Order(msgspec.Struct):
    tradeOrderId: str
    status: str


class _Event(msgspec.Struct):
    data: _Order


class _Pub(msgspec.Struct):
    data: _Event


class _PushBody(msgspec.Struct):
    pub: _Pub | None = None


class _Message(msgspec.Struct):
    id: int = 0
    push: _PushBody | None = None
    rpc: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


_decode = msgspec.json.Decoder(_Message).decode


def start_simulator(
    orders: int, cancel_delay: float
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cadenza_async.testing",
            "--port",
            "0",
            "--orders",
            str(orders),
            "--cancel-delay",
            str(cancel_delay),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    info: dict[str, str] = {}
    while "orders" not in info:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the simulator exited before it was ready")
        name, _, value = line.strip().partition(": ")
        info[name] = value
    return proc, info


async def list_order_ids(
    http: aiohttp.ClientSession, info: dict[str, str], headers: dict[str, str]
) -> list[str]:
    ids: list[str] = []
    offset = 0
    while True:
        async with http.get(
            info["api_url"] + "/api/v3/tradeOrder/list",
            params={"limit": "1000", "offset": str(offset)},
            headers=headers,
        ) as resp:
            body = msgspec.json.decode(await resp.read())
        ids += [order["tradeOrderId"] for order in body["data"]]
        if not body["pagination"]["hasNext"]:
            return ids
        offset += 1000


async def drive(info: dict[str, str], n: int, concurrency: int, via: str, warmup: int) -> float:
    headers = {"Authorization": f"Bearer {info['token']}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        ids = await list_order_ids(http, info, headers)
        assert len(ids) >= n + warmup, (len(ids), n + warmup)
        waiters: dict[str, asyncio.Future[str]] = {}
        rpc_waiters: dict[int, asyncio.Future[None]] = {}
        ws = await http.ws_connect(info["ws_url"], autoping=True, max_msg_size=0)
        channel = f"tradingAccount:{info['trading_account_id']}"
        await ws.send_str(
            msgspec.json.encode({"id": 1, "connect": {"token": info["token"]}}).decode()
            + "\n"
            + msgspec.json.encode({"id": 2, "subscribe": {"channel": channel}}).decode()
        )
        subscribed = asyncio.get_running_loop().create_future()
        rpc_ids = itertools.count(10)

        async def read() -> None:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                for line in msg.data.encode().split(b"\n"):
                    message = _decode(line)
                    if message.push is not None and message.push.pub is not None:
                        order = message.push.pub.data.data
                        if order.status == "CANCELLED":
                            waiter = waiters.pop(order.tradeOrderId, None)
                            if waiter is not None and not waiter.done():
                                waiter.set_result(order.status)
                    elif message.id == 2:
                        subscribed.set_result(None)
                    elif message.id >= 10:
                        rpc_waiter = rpc_waiters.pop(message.id, None)
                        if rpc_waiter is not None:
                            rpc_waiter.set_result(None)
                    elif message.id == 0 and message.push is None:
                        await ws.send_str("{}")  # pong

        reader = asyncio.ensure_future(read())
        try:
            await asyncio.wait_for(subscribed, 10)
            loop = asyncio.get_running_loop()

            async def cancel(order_id: str) -> None:
                done = loop.create_future()
                waiters[order_id] = done
                if via == "http":
                    async with http.post(
                        info["api_url"] + "/api/v3/tradeOrder/cancel",
                        json={"tradeOrderId": order_id},
                        headers=headers,
                    ) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"cancel answered {resp.status}")
                else:
                    command_id = next(rpc_ids)
                    acked = loop.create_future()
                    rpc_waiters[command_id] = acked
                    data = {
                        "tradingAccountId": info["trading_account_id"],
                        "tradeOrderId": order_id,
                    }
                    await ws.send_bytes(
                        msgspec.json.encode(
                            {
                                "id": command_id,
                                "rpc": {"method": "command.trade_order.cancel", "data": data},
                            }
                        )
                    )
                    await acked
                await done

            async def run(batch: list[str]) -> float:
                queue = iter(batch)

                async def worker() -> None:
                    for order_id in queue:
                        await asyncio.wait_for(cancel(order_id), 30)

                started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                return time.perf_counter() - started

            await run(ids[:warmup])
            elapsed = await run(ids[warmup : warmup + n])
        finally:
            await ws.close()
            with contextlib.suppress(Exception):
                await reader
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=20000, help="timed cancels")
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    parser.add_argument("--via", choices=("http", "ws"), default="http")
    parser.add_argument("--cancel-delay", type=float, default=0.0)
    parser.add_argument("--warmup", type=int, default=1000)
    args = parser.parse_args()
    proc, info = start_simulator(args.n + args.warmup, args.cancel_delay)
    try:
        runner: Any = asyncio.run
        loop_name = "asyncio"
        with contextlib.suppress(ImportError):
            import uvloop

            runner = uvloop.run
            loop_name = "uvloop"
        rate = runner(drive(info, args.n, args.concurrency, args.via, args.warmup))
    finally:
        proc.send_signal(signal.SIGINT)  # a clean stop, as Ctrl-C
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(
        f"simulator: {rate:,.0f} cancel+event round trips/s "
        f"(n={args.n}, concurrency={args.concurrency}, via={args.via}, "
        f"cancel_delay={args.cancel_delay}, driver loop={loop_name})"
    )


if __name__ == "__main__":
    main()
