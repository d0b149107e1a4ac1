"""Measure ConfirmationRegistry dispatch: observe() calls per second and bytes per waiter.

Run: ``.venv/bin/python benchmarks/bench_registry.py [--events N] [--rounds R]``

Events are decoded TradeOrders built before timing, so only the registry is
measured. Each round starts from a fresh registry holding the given number of
pending waiters and feeds it events for random waiters with increasing
``updatedAt`` (every event is accepted as the new ``last_known``, so the
number of pending waiters stays constant). The best round counts.
The same events through a bare ``dict.get`` give the floor any hash-table
dispatch pays (at 100,000 keys that floor is memory latency, not the registry).
A second figure drains 100,000 waiters with terminal events (the resolve path).
Memory is the tracemalloc growth of a registry holding 100,000 pending
waiters bound to accounts (the order id strings belong to the caller and are
created before tracing).
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
import uuid

import msgspec

from cadenza_async.models import TradeOrder, decode_order_list
from cadenza_async.protocol.confirm import ConfirmationRegistry

ACCOUNTS = [str(uuid.UUID(int=i + 1)) for i in range(8)]
SIZES = (10, 1_000, 100_000)


def make_ids(n: int, rng: random.Random) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


def make_events(ids: list[str], targets: list[int], status: str) -> list[TradeOrder]:
    """Events for ``ids[t]`` for each t in ``targets``, decoded from JSON like the
    stream delivers them (fresh id strings per event)."""
    raw = [
        {
            "tradeOrderId": ids[t],
            "tradingAccountId": ACCOUNTS[t % len(ACCOUNTS)],
            "status": status,
            "venue": "BINANCE",
            "instrumentId": "BTC/USDT",
            "quantity": "0.5",
            "executedQuantity": "0.1",
            "updatedAt": 1_700_000_000_000 + i,
        }
        for i, t in enumerate(targets)
    ]
    return decode_order_list(msgspec.json.encode(raw))


def fill(ids: list[str]) -> ConfirmationRegistry:
    reg = ConfirmationRegistry()
    for i, oid in enumerate(ids):
        reg.register(oid, 0.0, account_id=ACCOUNTS[i % len(ACCOUNTS)])
    return reg


def observe_rate(ids: list[str], events: list[TradeOrder], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        reg = fill(ids)
        observe = reg.observe
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for order in events:
                observe(order, "ws", 1.0, channel_account=order.trading_account_id)
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        assert reg.pending_count == len(ids)
        assert reg.stats.stale_ignored == 0
        best = min(best, elapsed)
    return len(events) / best


def dict_get_rate(ids: list[str], events: list[TradeOrder], rounds: int) -> float:
    """The floor: a bare ``dict.get`` by order id over the same events and keys."""
    table = dict.fromkeys(ids)
    get = table.get
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for order in events:
                get(order.trade_order_id)
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        best = min(best, elapsed)
    return len(events) / best


def resolve_rate(ids: list[str], rounds: int, rng: random.Random) -> float:
    # one terminal event per waiter, in a random order
    targets = list(range(len(ids)))
    rng.shuffle(targets)
    terminal = make_events(ids, targets, "CANCELLED")
    best = float("inf")
    for _ in range(rounds):
        reg = fill(ids)
        observe = reg.observe
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for order in terminal:
                observe(order, "ws", 1.0, channel_account=order.trading_account_id)
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        assert reg.pending_count == 0
        best = min(best, elapsed)
    return len(terminal) / best


def bytes_per_waiter(ids: list[str]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        reg = fill(ids)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert reg.pending_count == len(ids)
    return (after - before) / len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000, help="observe() calls per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per size; the best counts")
    args = parser.parse_args()

    rng = random.Random(42)
    rates: dict[tuple[str, int], float] = {}
    floors: dict[tuple[str, int], float] = {}
    print(f"observe() with N pending waiters, {args.events:,} events, best of {args.rounds}")
    print("pattern: 'random' = each event for a random waiter; 'in order' = waiters in turn")
    print("dict.get = a bare dict lookup by order id over the same events (the floor)")
    print(
        f"{'pattern':>9} {'pending':>9} {'observe/s':>12} {'ns/call':>8}"
        f" {'dict.get ns':>12} {'registry ns':>12}"
    )
    ids: list[str] = []
    for size in SIZES:
        ids = make_ids(size, rng)
        for pattern in ("random", "in order"):
            if pattern == "random":
                targets = [rng.randrange(size) for _ in range(args.events)]
            else:
                targets = [i % size for i in range(args.events)]
            events = make_events(ids, targets, "PARTIALLY_FILLED")
            key = (pattern, size)
            rates[key] = observe_rate(ids, events, args.rounds)
            floors[key] = dict_get_rate(ids, events, args.rounds)
            ns, floor_ns = 1e9 / rates[key], 1e9 / floors[key]
            print(
                f"{pattern:>9} {size:>9,} {rates[key]:>12,.0f} {ns:>8.0f}"
                f" {floor_ns:>12.0f} {ns - floor_ns:>12.0f}"
            )
            del events

    big, small = max(SIZES), min(SIZES)
    for pattern in ("random", "in order"):
        ratio = rates[pattern, big] / rates[pattern, small]
        floor_ratio = floors[pattern, big] / floors[pattern, small]
        print(
            f"ratio {big:,} / {small:,} waiters ({pattern}): observe {ratio:.3f},"
            f" bare dict.get {floor_ratio:.3f}"
        )

    resolved = resolve_rate(ids, args.rounds, rng)
    print(f"resolve (one terminal event per waiter, {len(ids):,} waiters): {resolved:,.0f}/s")

    per_waiter = bytes_per_waiter(ids)
    print(f"memory: {per_waiter:,.0f} bytes per pending waiter at {len(ids):,} (tracemalloc)")


if __name__ == "__main__":
    main()
