"""Scale: one client for many accounts and many pending cancels.

For 1, 10, 100 and 1,000 accounts with 100 open orders each (one client, one
WebSocket), against the simulator running in a thread of its own (its own
event loop):

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
import sys
import threading
import time
import tracemalloc
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from cadenza_async import CadenzaClient, CancelResult, Timeouts
from cadenza_async.testing import CadenzaSimulator

T = TypeVar("T")
ORDERS_PER_ACCOUNT = 100


class SimThread:
    """A CadenzaSimulator on its own event loop in a thread; ``call`` runs code there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sim", daemon=True)
        self.thread.start()
        self.sim = CadenzaSimulator(cancel_delay=0.0, history_size=100_000)
        self.call(self.sim.start())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(300)

    def run(self, fn: Any, *args: Any) -> Any:
        async def go() -> Any:
            return fn(*args)

        return self.call(go())

    def close(self) -> None:
        self.call(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


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


async def one_size(st: SimThread, n_accounts: int) -> dict[str, Any]:
    sim = st.sim

    def setup() -> list[str]:
        accounts = [sim.add_account() for _ in range(n_accounts)]
        for account in accounts:
            sim.create_orders(ORDERS_PER_ACCOUNT, account_id=account)
        return accounts

    accounts: list[str] = st.run(setup)
    figures: dict[str, Any] = {"accounts": n_accounts}
    client = CadenzaClient(
        token=sim.token,
        api_url=sim.api_url,
        ws_url=sim.ws_url,
        timeouts=Timeouts(connect=30.0, request=30.0, confirm=120.0),
    )
    async with client:
        gc.collect()
        base = client_held()
        # Subscribe every account (as cancels on them would), then measure the memory.
        await asyncio.gather(*(client.subscribe_account(a) for a in accounts))
        gc.collect()
        figures["bytes_per_account"] = (client_held() - base) / n_accounts

        # -- cancel everything
        st.run(sim.rest_requests.clear)
        started = time.perf_counter()
        outcomes = await client.cancel_all_open(account_ids=accounts, concurrency=256)
        figures["cancel_all_s"] = time.perf_counter() - started
        figures["cancel_all_orders"] = len(outcomes)
        figures["cancel_all_failed"] = sum(1 for o in outcomes if not isinstance(o, CancelResult))
        figures["cancel_all_requests"] = st.run(requests, sim)

        # -- reconnects, history kept and lost
        pending_n = min(10 * n_accounts, 10_000)
        for kind in ("recovered", "lost"):
            per_account = max(1, pending_n // n_accounts)

            def fresh(per: int = per_account) -> list[tuple[str, str]]:
                sim.cancel_delay = 10_000.0  # the exchange holds every cancel
                return [
                    (o.trade_order_id, a)
                    for a in accounts
                    for o in sim.create_orders(per, account_id=a)
                ][:pending_n]

            pairs: list[tuple[str, str]] = st.run(fresh)
            gc.collect()
            before_pending = client_held()
            tasks = [
                asyncio.ensure_future(
                    client.cancel_and_confirm(oid, trading_account_id=a, timeout=120)
                )
                for oid, a in pairs
            ]

            ids = [p[0] for p in pairs]
            while not st.run(all_pending, sim, ids):
                await asyncio.sleep(0.05)
            gc.collect()
            figures[f"bytes_per_pending_{kind}"] = (client_held() - before_pending) / len(pairs)

            st.run(apply_while_dropped, sim, ids, accounts, kind == "lost")
            st.call(sim.disconnect_all(3001))
            st.run(sim.rest_requests.clear)
            reconnects = client.stats().stream_reconnects
            st.run(sim.resume_publications)
            while client.stats().stream_reconnects == reconnects:
                await asyncio.sleep(0.001)
            back = time.perf_counter()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            figures[f"reconnect_{kind}_s"] = time.perf_counter() - back
            figures[f"reconnect_{kind}_pending"] = len(pairs)
            figures[f"reconnect_{kind}_proven"] = sum(
                1 for r in results if isinstance(r, CancelResult) and r.cancelled
            )
            figures[f"reconnect_{kind}_requests"] = st.run(requests, sim)
            st.run(setattr, sim, "cancel_delay", 0.0)
        gc.collect()
        figures["client_bytes_end"] = client_held() - base
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
    tracemalloc.start()
    rows = []
    for n in (int(x) for x in args.accounts.split(",")):
        st = SimThread()
        try:
            rows.append(asyncio.run(one_size(st, n)))
        finally:
            st.close()
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
