"""What does a proven submit cost? ``submit_and_confirm`` beside a hand-written submit + event wait.

Run: ``.venv/bin/python benchmarks/bench_submit.py [--quick] [--rounds R] [--json out.json]``

Set-up. The exchange simulator runs in its own process (``python -m
cadenza_async.testing``) with an acceptance delay (``--accept-delay``, 1 ms
by default): a submit's reply says SUBMITTED and the exchange's event says
OPEN a moment later, so every contender must wait for the event. The
contenders run in this process, one at a time, in alternating order from
round to round; each round a contender connects, warms up, places
``--seq`` orders one after the other, then ``--bulk`` orders with
``--concurrency`` in flight, and closes.

Contenders:

- ``raw``: what a competent user writes by hand: aiohttp for the submit POST,
  a ``websockets`` connection speaking just enough Centrifugo (connect,
  subscribe, answer pings), stdlib ``json``, a ``clientOrderId`` per order and
  a dict of futures keyed by it, registered before the POST (the event can
  beat the reply); a reply that already shows a verdict counts as proof. No
  retries, no reconciliation, no deadline beyond one ``wait_for``.
- ``sdk_http``: ``CadenzaClient.submit_and_confirm`` (HTTP submit).
- ``sdk_ws``: the same with ``submit_via="ws"`` (the Centrifugo RPC).

Figures per contender (median over rounds): CPU microseconds of this process
per proven submit (``time.process_time()`` over the window divided by the
submits), in the sequential and the bulk phase; median and p99 latency of
sequential calls; bulk throughput. Ratios are to ``raw`` in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
SUBMIT_PATH = "/api/v3/tradeOrder/submit"
ACCEPTED = frozenset({"ACCEPTED", "OPEN", "PARTIALLY_FILLED", "FILLED"})
REFUSED = frozenset({"REJECTED", "EXPIRED", "CANCELLED"})
NAMES = ("raw", "sdk_http", "sdk_ws")


@dataclass(frozen=True)
class Target:
    api_url: str
    ws_url: str
    token: str
    account: str


def order_fields(i: int) -> dict[str, str]:
    return {
        "instrument_id": "BINANCE:BTC/USDT",
        "order_side": "BUY",
        "order_type": "LIMIT",
        "quantity": "0.01",
        "limit_price": str(40_000 + i % 1000),
        "time_in_force": "GTC",
    }


class Contender(Protocol):
    name: str

    async def start(self, target: Target) -> None: ...

    async def submit_and_confirm(self, i: int) -> None: ...

    async def aclose(self) -> None: ...


# --------------------------------------------------------------------------- raw


class RawClient:
    """A hand-written submit with proof (see the module docstring)."""

    name = "raw"

    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._session: Any = None
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, target: Target) -> None:
        import aiohttp
        from websockets.asyncio.client import connect

        self._account = target.account
        self._url = target.api_url.rstrip("/") + SUBMIT_PATH
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {target.token}", "Content-Type": "application/json"}
        )
        ws = self._ws = await connect(target.ws_url, compression=None)
        await ws.send(json.dumps({"id": 1, "connect": {"token": target.token, "name": "raw"}}))
        await self._reply(ws, 1)
        channel = f"tradingAccount:{target.account}"
        await ws.send(json.dumps({"id": 2, "subscribe": {"channel": channel}}))
        await self._reply(ws, 2)
        self._reader = asyncio.ensure_future(self._read(ws))

    @staticmethod
    async def _reply(ws: Any, cid: int) -> dict[str, Any]:
        while True:
            frame = await ws.recv()
            for line in str(frame).splitlines():
                msg = json.loads(line)
                if msg.get("id") == cid:
                    if "error" in msg:
                        raise RuntimeError(f"centrifugo error: {msg['error']}")
                    return dict(msg)

    async def _read(self, ws: Any) -> None:
        waiters = self._waiters
        async for frame in ws:
            for line in str(frame).splitlines():
                msg = json.loads(line)
                if not msg:
                    await ws.send("{}")  # ping -> pong
                    continue
                pub = (msg.get("push") or {}).get("pub")
                if pub is None:
                    continue
                order = pub["data"]["data"]
                status = order["status"]
                if status in ACCEPTED or status in REFUSED:
                    fut = waiters.get(order.get("clientOrderId", ""))
                    if fut is not None and not fut.done():
                        fut.set_result(order)

    async def submit_and_confirm(self, i: int) -> None:
        fields = order_fields(i)
        client_id = str(uuid.uuid4())
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[client_id] = fut
        try:
            body = json.dumps(
                {
                    "tradingAccountId": self._account,
                    "instrumentId": fields["instrument_id"],
                    "orderSide": fields["order_side"],
                    "orderType": fields["order_type"],
                    "quantity": fields["quantity"],
                    "limitPrice": fields["limit_price"],
                    "timeInForce": fields["time_in_force"],
                    "clientOrderId": client_id,
                }
            )
            async with self._session.post(self._url, data=body) as resp:
                answer = json.loads(await resp.read())
            if not answer.get("success"):
                raise RuntimeError(f"submit failed: {answer.get('error')}")
            status = answer["data"]["status"]
            if status in ACCEPTED or status in REFUSED:
                return
            await asyncio.wait_for(fut, 10.0)
        finally:
            del self._waiters[client_id]

    async def aclose(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._session is not None:
            await self._session.close()


# --------------------------------------------------------------------------- the SDK


class SdkClient:
    def __init__(self, via: str) -> None:
        self.name = f"sdk_{via}"
        self._via = via
        self._client: Any = None

    async def start(self, target: Target) -> None:
        from cadenza_async import CadenzaClient

        self._client = CadenzaClient(
            token=target.token,
            api_url=target.api_url,
            ws_url=target.ws_url,
            trading_account_id=target.account,
            submit_via=self._via,
        )
        await self._client.__aenter__()

    async def submit_and_confirm(self, i: int) -> None:
        result = await self._client.submit_and_confirm(**order_fields(i), timeout=10.0)
        if not result.accepted:
            raise RuntimeError(f"refused: {result.status}")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def make(name: str) -> Contender:
    if name == "raw":
        return RawClient()
    if name in ("sdk_http", "sdk_ws"):
        return SdkClient(name.removeprefix("sdk_"))
    raise ValueError(f"unknown contender {name!r}")


# --------------------------------------------------------------------------- simulator


class Simulator:
    """The simulator in a child process; ``target`` once it has printed its addresses."""

    def __init__(self, accept_delay: float) -> None:
        self.accept_delay = accept_delay
        self.proc: subprocess.Popen[str] | None = None
        self.target: Target | None = None

    def __enter__(self) -> Simulator:
        cmd = [
            sys.executable,
            "-m",
            "cadenza_async.testing",
            "--port",
            "0",
            "--accept-delay",
            str(self.accept_delay),
            "--history-size",
            "300",
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ}
        )
        fields: dict[str, str] = {}
        assert self.proc.stdout is not None
        while "orders" not in fields:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the simulator exited early (status {self.proc.poll()})")
            key, _, value = line.strip().partition(": ")
            fields[key] = value
        self.target = Target(
            fields["api_url"], fields["ws_url"], fields["token"], fields["trading_account_id"]
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()


# --------------------------------------------------------------------------- one round


async def pool(n: int, one: Callable[[int], Awaitable[None]], concurrency: int) -> int:
    """``one(i)`` for i in range(n) with ``concurrency`` workers; how many succeeded."""
    indexes = iter(range(n))
    done = 0

    async def worker() -> None:
        nonlocal done
        for i in indexes:
            await one(i)
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def run_round(name: str, target: Target, args: argparse.Namespace) -> dict[str, float]:
    contender = make(name)
    await contender.start(target)
    try:
        for i in range(args.warmup):
            await contender.submit_and_confirm(i)
        gc.collect()
        clock = time.perf_counter
        latencies: list[float] = []
        cpu0, wall0 = time.process_time(), clock()
        for i in range(args.seq):
            t0 = clock()
            await contender.submit_and_confirm(i)
            latencies.append(clock() - t0)
        seq_cpu = time.process_time() - cpu0
        seq_wall = clock() - wall0
        gc.collect()
        cpu0, wall0 = time.process_time(), clock()
        done = await pool(args.bulk, contender.submit_and_confirm, args.concurrency)
        bulk_cpu = time.process_time() - cpu0
        bulk_wall = clock() - wall0
    finally:
        await contender.aclose()
    return {
        "seq_cpu_us": seq_cpu / args.seq * 1e6,
        "seq_median_ms": statistics.median(latencies) * 1e3,
        "seq_p99_ms": p99(latencies) * 1e3,
        "seq_wall_s": seq_wall,
        "bulk_cpu_us": bulk_cpu / max(1, done) * 1e6,
        "bulk_per_s": done / bulk_wall,
        "bulk_done": float(done),
    }


async def run(args: argparse.Namespace, target: Target) -> dict[str, dict[str, float]]:
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in args.contenders}
    for r in range(args.rounds):
        order = list(args.contenders) if r % 2 == 0 else list(reversed(args.contenders))
        for name in order:
            rounds[name].append(await run_round(name, target, args))
    return {
        name: {key: statistics.median(rd[key] for rd in rs) for key in rs[0]}
        for name, rs in rounds.items()
    }


def table(figures: dict[str, dict[str, float]]) -> str:
    base = figures.get("raw")
    rows = [
        "| contender | CPU/submit seq (us) | ratio | CPU/submit bulk (us) | ratio "
        "| latency median (ms) | ratio | p99 (ms) | bulk submits/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in figures.items():

        def ratio(key: str, f: dict[str, float] = f) -> str:
            return "-" if base is None or not base[key] else f"{f[key] / base[key]:.2f}x"

        rows.append(
            f"| {name} | {f['seq_cpu_us']:.0f} | {ratio('seq_cpu_us')} | {f['bulk_cpu_us']:.0f} "
            f"| {ratio('bulk_cpu_us')} | {f['seq_median_ms']:.2f} | {ratio('seq_median_ms')} "
            f"| {f['seq_p99_ms']:.2f} | {f['bulk_per_s']:,.0f} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seq", type=int, default=300)
    parser.add_argument("--bulk", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--accept-delay", type=float, default=0.001)
    parser.add_argument("--contenders", nargs="+", choices=NAMES, default=list(NAMES))
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.warmup, args.seq, args.bulk = 1, 5, 20, 100
    with Simulator(args.accept_delay) as sim:
        assert sim.target is not None
        figures = asyncio.run(run(args, sim.target))
    print(
        f"submit_and_confirm vs a hand-written submit + event wait: {args.rounds} rounds, "
        f"{args.seq} sequential + {args.bulk} bulk (concurrency {args.concurrency}), "
        f"acceptance delay {args.accept_delay * 1000:g} ms, Python {sys.version.split()[0]}"
    )
    print(table(figures))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "figures": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
