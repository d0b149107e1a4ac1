"""Scale: one client for many accounts and many pending cancels.

For 1, 10, 100 and 1,000 accounts with 100 open orders each (one client, one
WebSocket), against the simulator running in a process of its own (its own
core), memory traced only while it is measured:

* **cancel everything**: ``cancel_all_open(account_ids=...)`` until every
  order is proven; time, REST requests (listings and cancels);
* **memory**: the client's traced memory per subscribed account and per
  pending cancel (the simulator's allocations filtered out);
* **reconnect**: ``min(10 x accounts, 10,000)`` cancels pending on the
  exchange (exchange delay: forever), the connection dropped (3001) while the
  exchange applies them all; then the time from the stream being back until
  every cancel is proven, and the REST requests that took, both with the
  history kept (``recovered: true``: the events are replayed) and lost
  (``recovered: false``: each account is reconciled by listing it).

Targets (issue: scale): with 1,000 accounts and 10,000 pending cancels a
reconnect with lost history proves all of them within 2 s of the stream
being back, with at most (pages per account x accounts) list requests;
memory linear in accounts, no growth per reconnect.

    python benchmarks/bench_scale.py [--accounts 1,10,100,1000] [--json out] [--plot out.png]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from cadenza_async import CadenzaClient, CancelResult, Timeouts
from cadenza_async.testing import CadenzaSimulator

ORDERS_PER_ACCOUNT = 100


class SimProcess:
    """A CadenzaSimulator in a child process (its own core), driven through a pipe.

    ``run(fn, *args)`` calls the module-level ``fn(sim, *args)`` on the
    simulator's loop in the child (awaiting it when it returns a coroutine)
    and returns its result.
    """

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self.proc = context.Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    def run(self, fn: Any, *args: Any) -> Any:
        self._conn.send((fn.__name__, args))
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"{fn.__name__} failed in the simulator process: {value}")
        return value

    def close(self) -> None:
        self._conn.send(None)
        self.proc.join(30)
        self._conn.close()


def _serve(conn: Any) -> None:
    """The child: a simulator on a loop in a thread; requests read from ``conn``."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = CadenzaSimulator(cancel_delay=0.0, history_size=100_000)
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(60)

    async def call(fn: Any, args: Any) -> Any:
        result = fn(sim, *args)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    while True:
        request = conn.recv()
        if request is None:
            break
        name, args = request
        try:
            value = asyncio.run_coroutine_threadsafe(call(globals()[name], args), loop).result(600)
            conn.send((True, value))
        except Exception as exc:  # reported to the parent, which raises
            conn.send((False, repr(exc)))
    asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    conn.close()


# -- what the parent asks the simulator process to do (each takes the simulator first)


def setup(sim: CadenzaSimulator, n_accounts: int) -> tuple[list[str], str, str, str]:
    accounts = [sim.add_account() for _ in range(n_accounts)]
    for account in accounts:
        sim.create_orders(ORDERS_PER_ACCOUNT, account_id=account)
    return accounts, sim.api_url, sim.ws_url, sim.token


def clear_requests(sim: CadenzaSimulator) -> None:
    sim.rest_requests.clear()


def fresh_pending(
    sim: CadenzaSimulator, accounts: list[str], per: int, limit: int
) -> list[tuple[str, str]]:
    """New open orders to cancel, the exchange holding every cancel (no event comes)."""
    sim.cancel_delay = 10_000.0
    pairs = [(o.trade_order_id, a) for a in accounts for o in sim.create_orders(per, account_id=a)]
    return pairs[:limit]


def set_cancel_delay(sim: CadenzaSimulator, seconds: float) -> None:
    sim.cancel_delay = seconds


async def disconnect(sim: CadenzaSimulator) -> None:
    await sim.disconnect_all(3001)


def resume(sim: CadenzaSimulator) -> None:
    sim.resume_publications()


def requests(sim: CadenzaSimulator) -> dict[str, int]:
    counts = {"list": 0, "lookup": 0, "cancel": 0}
    for method, path, query in list(sim.rest_requests):
        if method == "POST" and path.endswith("/cancel"):
            counts["cancel"] += 1
        elif method == "GET" and "tradeOrderId" in query:
            counts["lookup"] += 1
        elif method == "GET":
            counts["list"] += 1
    return counts


def all_pending(sim: CadenzaSimulator, ids: list[str]) -> bool:
    return all(sim.get_order(i).status == "PENDING_CANCEL" for i in ids)


def apply_while_dropped(
    sim: CadenzaSimulator, ids: list[str], accounts: list[str], lose: bool
) -> None:
    """The exchange applies every cancel, its events held; with ``lose`` the history goes."""
    sim.pause_publications()
    for i in ids:
        sim.set_status(i, "CANCELLED", publish=not lose)
    if lose:
        for a in accounts:
            sim.lose_history(a)


def client_held() -> int:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (
            tracemalloc.Filter(False, "*/cadenza_async/testing/*"),
            tracemalloc.Filter(False, "*/aiohttp/web*"),
            tracemalloc.Filter(False, __file__),
            tracemalloc.Filter(False, tracemalloc.__file__),
        )
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def one_size(sp: SimProcess, n_accounts: int) -> dict[str, Any]:
    accounts, api_url, ws_url, token = sp.run(setup, n_accounts)
    figures: dict[str, Any] = {"accounts": n_accounts}
    client = CadenzaClient(
        token=token,
        api_url=api_url,
        ws_url=ws_url,
        timeouts=Timeouts(connect=30.0, request=30.0, confirm=120.0),
    )
    async with client:
        # Memory is traced only around what it measures (tracing slows everything).
        tracemalloc.start()
        gc.collect()
        base = client_held()
        # Subscribe every account (as cancels on them would), then measure the memory.
        await asyncio.gather(*(client.subscribe_account(a) for a in accounts))
        gc.collect()
        figures["bytes_per_account"] = (client_held() - base) / n_accounts
        tracemalloc.stop()

        # -- cancel everything
        sp.run(clear_requests)
        started = time.perf_counter()
        outcomes = await client.cancel_all_open(account_ids=accounts, concurrency=256)
        figures["cancel_all_s"] = time.perf_counter() - started
        figures["cancel_all_orders"] = len(outcomes)
        figures["cancel_all_failed"] = sum(1 for o in outcomes if not isinstance(o, CancelResult))
        figures["cancel_all_requests"] = sp.run(requests)

        # -- reconnects, history kept and lost
        pending_n = min(10 * n_accounts, 10_000)
        for kind in ("recovered", "lost"):
            per_account = max(1, pending_n // n_accounts)
            pairs: list[tuple[str, str]] = sp.run(fresh_pending, accounts, per_account, pending_n)
            ids = [p[0] for p in pairs]
            tracemalloc.start()
            gc.collect()
            before_pending = client_held()
            tasks = [
                asyncio.ensure_future(
                    client.cancel_and_confirm(oid, trading_account_id=a, timeout=120)
                )
                for oid, a in pairs
            ]
            while not sp.run(all_pending, ids):
                await asyncio.sleep(0.05)
            gc.collect()
            figures[f"bytes_per_pending_{kind}"] = (client_held() - before_pending) / len(pairs)
            tracemalloc.stop()

            sp.run(apply_while_dropped, ids, accounts, kind == "lost")
            sp.run(disconnect)
            sp.run(clear_requests)
            reconnects = client.stats().stream_reconnects
            sp.run(resume)
            while client.stats().stream_reconnects == reconnects:
                await asyncio.sleep(0.001)
            back = time.perf_counter()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            figures[f"reconnect_{kind}_s"] = time.perf_counter() - back
            figures[f"reconnect_{kind}_pending"] = len(pairs)
            figures[f"reconnect_{kind}_proven"] = sum(
                1 for r in results if isinstance(r, CancelResult) and r.cancelled
            )
            figures[f"reconnect_{kind}_requests"] = sp.run(requests)
            sp.run(set_cancel_delay, 0.0)
    return figures


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| accounts | cancel all: s (orders, requests) | B / account | B / pending "
        "| reconnect, history kept: s (REST) | reconnect, history lost: s (lists, look-ups) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ca = r["cancel_all_requests"]
        rr, rl = r["reconnect_recovered_requests"], r["reconnect_lost_requests"]
        lines.append(
            f"| {r['accounts']:,} | {r['cancel_all_s']:.2f} ({r['cancel_all_orders']:,}, "
            f"{ca['list']:,} lists + {ca['cancel']:,} cancels) | {r['bytes_per_account']:,.0f} "
            f"| {r['bytes_per_pending_lost']:,.0f} "
            f"| {r['reconnect_recovered_s']:.3f} ({r['reconnect_recovered_pending']:,} pending, "
            f"{sum(rr.values())} requests) "
            f"| {r['reconnect_lost_s']:.3f} ({r['reconnect_lost_pending']:,} pending, "
            f"{rl['list']} + {rl['lookup']}) |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["accounts"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(xs, [r["reconnect_lost_s"] for r in rows], "o-", label="history lost")
    left.plot(xs, [r["reconnect_recovered_s"] for r in rows], "s-", label="history kept")
    left.axhline(2.0, color="grey", linestyle=":", label="target (2 s)")
    left.set_xscale("log")
    left.set_xlabel("accounts (10 pending cancels each, at most 10,000)")
    left.set_ylabel("seconds from the stream back to every cancel proven")
    left.legend()
    right.plot(xs, [r["bytes_per_account"] for r in rows], "o-", label="per subscribed account")
    right.plot(xs, [r["bytes_per_pending_lost"] for r in rows], "s-", label="per pending cancel")
    right.set_xscale("log")
    right.set_xlabel("accounts")
    right.set_ylabel("client bytes (tracemalloc)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", default="1,10,100,1000")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--plot", help="write the plot here (PNG)")
    args = parser.parse_args()
    rows = []
    for n in (int(x) for x in args.accounts.split(",")):
        sp = SimProcess()
        try:
            rows.append(asyncio.run(one_size(sp, n)))
        finally:
            sp.close()
        print(json.dumps(rows[-1]), flush=True)
    table = report(rows)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        plot(rows, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
