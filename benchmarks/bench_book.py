"""``make bench``: the local order book against ccxt's and a C book, on one recorded stream.

Run: ``.venv/bin/python benchmarks/bench_book.py [--quick] [--json PATH]``

1. CPU per applied level update (``time.process_time``, best of rounds) on
   one recorded stream of DIFFs from the simulator's seeded market (decoded
   rows of decimal strings, as they come off the wire):

   - ``cadenza``: :class:`~cadenza_async.protocol.book.BookSide` (exact
     Decimal prices, quantities kept as the wire's strings);
   - ``ccxt``: ccxt's Python ``OrderBookSide`` (``Bids``/``Asks``), each
     row turned into floats first (its usual input; floats are not exact);
   - ``c_float`` / ``c_decimal``: the ``order-book`` C extension
     (``order_book.OrderBook``) with float keys and with Decimal keys.

   Targets: cadenza <= 0.5x ccxt and <= 3x the C book (float keys, its fastest).
2. Frame to book: the CPU of a whole publication (JSON decode + rules) per
   level update, in-process.
3. Memory per level (tracemalloc; the C book's own allocations may be
   invisible to it, so its figure is a floor).
4. 200 books on one client (real sockets, simulator in this process) at an
   aggregate 10,000 level updates/s for a few seconds: the lag from each
   publication to the book applying it (max and p99), and whether every
   book ends equal to the simulator's. Target: every book current within
   50 ms of its last publication.

Numbers are printed (and written as JSON with ``--json``); PASS/FAIL are
reports, the exit status is 0 either way.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import sys
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import order_book  # noqa: E402  (the bench extra)
from ccxt.async_support.base.ws.order_book_side import Asks, Bids  # noqa: E402

from cadenza_async.market.models import decode_order_book  # noqa: E402
from cadenza_async.protocol.book import BookSide, BookSync  # noqa: E402
from cadenza_async.testing._engine import Channel  # noqa: E402
from cadenza_async.testing._market import SimMarket  # noqa: E402

BTC = "BINANCE:BTC/USDT"


class _RecordingHub:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def add_named(self, name: str) -> Channel:
        return Channel(name, 0, None)

    def publish_on(self, channel: Channel, data: bytes) -> int:
        offset, _ = channel.add(data)
        if channel.name.startswith("market:orderbook:"):
            self.frames.append(data)
        return offset


def record(updates: int, depth: int) -> tuple[list[bytes], list[list[str]], list[list[str]]]:
    """``updates`` DIFF frames of one book, and its snapshot rows before them."""
    hub = _RecordingHub()
    market = SimMarket(hub, seed=7, depth=depth, instruments=[_first_instrument()])
    snap = market.order_book(BTC, depth=1000)
    market.step(updates, BTC)
    return hub.frames, snap["bids"], snap["asks"]


def _first_instrument() -> tuple[str, ...]:
    from cadenza_async.testing._market import DEFAULT_INSTRUMENTS

    return DEFAULT_INSTRUMENTS[0]


# ------------------------------------------------------------------ CPU per level


def _ours(snap: tuple[list[list[str]], list[list[str]]], diffs: list[tuple[Any, Any]]) -> None:
    bids, asks = BookSide(True), BookSide(False)
    bids.replace(snap[0])
    asks.replace(snap[1])
    for b, a in diffs:
        bids.apply(b)
        asks.apply(a)


def _ccxt(snap: tuple[list[list[str]], list[list[str]]], diffs: list[tuple[Any, Any]]) -> None:
    bids, asks = Bids(), Asks()
    for row in snap[0]:
        bids.store(float(row[0]), float(row[1]))
    for row in snap[1]:
        asks.store(float(row[0]), float(row[1]))
    bid_store, ask_store = bids.store, asks.store
    for b, a in diffs:
        for row in b:
            bid_store(float(row[0]), float(row[1]))
        for row in a:
            ask_store(float(row[0]), float(row[1]))


def _c_book(kind: type) -> Any:
    def run(snap: tuple[list[list[str]], list[list[str]]], diffs: list[tuple[Any, Any]]) -> None:
        book = order_book.OrderBook()
        bids, asks = book.bids, book.asks
        for row in snap[0]:
            bids[kind(row[0])] = kind(row[1])
        for row in snap[1]:
            asks[kind(row[0])] = kind(row[1])
        for b, a in diffs:
            for side, rows in ((bids, b), (asks, a)):
                for row in rows:
                    size = kind(row[1])
                    if size:
                        side[kind(row[0])] = size
                    else:
                        try:  # noqa: SIM105  (the cheapest form in this hot loop)
                            del side[kind(row[0])]
                        except KeyError:
                            pass

    return run


def cpu_per_level(frames: list[bytes], snap: Any, rounds: int) -> dict[str, float]:
    books = [decode_order_book(f) for f in frames]
    diffs = [(b.bids, b.asks) for b in books]
    levels = sum(len(b) + len(a) for b, a in diffs)
    contenders = {
        "cadenza": _ours,
        "ccxt": _ccxt,
        "c_float": _c_book(float),
        "c_decimal": _c_book(Decimal),
    }
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, run in contenders.items():
            gc.collect()
            start = time.process_time()
            run(snap, diffs)
            spent = time.process_time() - start
            best[name] = min(best.get(name, spent), spent)
    return {name: spent / levels * 1e9 for name, spent in best.items()}


def frame_to_book(frames: list[bytes], snap: Any, rounds: int) -> float:
    """CPU ns per level update of a whole publication: JSON decode + BookSync.publication."""
    levels = 0
    for f in frames:
        book = decode_order_book(f)
        levels += len(book.bids) + len(book.asks)
    best = float("inf")
    for _ in range(rounds):
        sync = BookSync()
        sync.set_live("e", 0)
        sync.publication("SNAPSHOT", snap[0], snap[1], 0, 0, 0.0)
        start = time.process_time()
        for offset, frame in enumerate(frames, 1):
            book = decode_order_book(frame)
            sync.publication(book.update_type, book.bids, book.asks, book.timestamp, offset, 0.0)
        best = min(best, time.process_time() - start)
        assert sync.usable
    return best / levels * 1e9


def memory_per_level(levels: int) -> dict[str, float]:
    rows = [[f"{50000 + i / 100:.2f}", f"{1 + i % 97}.{i % 1000:03d}"] for i in range(levels)]
    out: dict[str, float] = {}

    def measure(name: str, build: Any) -> None:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        keep = build()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        out[name] = (after - before) / levels
        del keep

    def ours() -> Any:
        side = BookSide(False)
        side.apply(rows)
        return side

    def ccxt() -> Any:
        side = Asks()
        for p, q in rows:
            side.store(float(p), float(q))
        return side

    def c_book() -> Any:
        book = order_book.OrderBook()
        for p, q in rows:
            book.asks[Decimal(p)] = Decimal(q)
        return book

    measure("cadenza", ours)
    measure("ccxt", ccxt)
    measure("c_decimal", c_book)
    return out


# ------------------------------------------------------------------ 200 books, real sockets


async def many_books(n_books: int, level_rate: float, seconds: float) -> dict[str, Any]:
    from cadenza_async import CadenzaClient
    from cadenza_async.testing import CadenzaSimulator

    async with CadenzaSimulator() as sim:
        market = sim.market
        ids = []
        for i in range(n_books):
            spec = (f"BENCH:C{i:03d}/USDT", "100", "0.01", "0.001", "0.001", "1000000", "0")
            ids.append(market.add_instrument(spec, depth=20).instrument_id)
        published: dict[tuple[str, int], float] = {}
        lags: list[float] = []
        loop = asyncio.get_running_loop()

        class Lag:
            """Observes each book channel after its book: the time from publish to applied."""

            def publication(self, channel: str, data: Any, offset: int | None) -> None:
                sent = published.pop((channel, offset or 0), None)
                if sent is not None:
                    lags.append(loop.time() - sent)

            def gap(self, channel: str, reason: str) -> None: ...
            def live(self, channel: str, position: Any) -> None: ...
            def refused(self, channel: str, error: Any) -> None: ...

        async with CadenzaClient(token=sim.token, api_url=sim.api_url, ws_url=sim.ws_url) as client:
            books = [client.order_book(i) for i in ids]
            for book in books:
                await book.__aenter__()
            for book in books:
                await book.wait_ready(30.0)
            lag = Lag()
            for book in books:
                client._stream.observe(book.channel, lag)
            channels = {i: market.book_channel(i) for i in ids}
            # ~2 levels per update (the random walk changes 1-3): updates/s for the level rate
            updates_per_tick = max(1, round(level_rate / 2 / 100))
            ticks = int(seconds * 100)
            levels_sent = 0
            cpu0 = time.process_time()
            start = loop.time()
            for tick in range(ticks):
                for k in range(updates_per_tick):
                    iid = ids[(tick * updates_per_tick + k) % n_books]
                    market.step(1, iid)
                    ch = channels[iid]
                    published[(ch.name, ch.offset)] = loop.time()
                await asyncio.sleep(max(0.0, start + (tick + 1) / 100 - loop.time()))
            elapsed = loop.time() - start
            cpu = time.process_time() - cpu0
            deadline = loop.time() + 5
            while published and loop.time() < deadline:
                await asyncio.sleep(0.01)
            equal = 0
            for iid, book in zip(ids, books, strict=True):
                bids, asks = market.book(iid)
                mine = (
                    {lv.price: lv.quantity for lv in book.bids()},
                    {lv.price: lv.quantity for lv in book.asks()},
                )
                equal += mine == (bids, asks) and book.usable
                levels_sent += book.stats["diffs_applied"]
            for book in books:
                await book.__aexit__(None, None, None)
        updates = len(lags)
        lags.sort()
        return {
            "books": n_books,
            "updates": updates,
            "seconds": round(elapsed, 2),
            "updates_per_s": round(updates / elapsed),
            "level_updates_per_s_target": level_rate,
            "lag_ms_p50": round(lags[len(lags) // 2] * 1000, 2) if lags else None,
            "lag_ms_p99": round(lags[int(len(lags) * 0.99)] * 1000, 2) if lags else None,
            "lag_ms_max": round(lags[-1] * 1000, 2) if lags else None,
            "unapplied": len(published),
            "books_equal_to_simulator": equal,
            "cpu_share": round(cpu / elapsed, 2),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU per level")
    args = parser.parse_args(argv)
    updates = 3_000 if args.quick else 60_000
    rounds = 1 if args.quick else 5
    frames, bids, asks = record(updates, depth=50)
    snap = (bids, asks)
    if args.cpu_only:
        print(cpu_per_level(frames, snap, rounds))
        return 0
    cpu = cpu_per_level(frames, snap, rounds)
    per_frame = frame_to_book(frames, snap, rounds)
    memory = memory_per_level(2_000 if args.quick else 20_000)
    scale = asyncio.run(
        many_books(
            20 if args.quick else 200, 1_000 if args.quick else 10_000, 1.0 if args.quick else 5.0
        )
    )
    ratio_ccxt = cpu["cadenza"] / cpu["ccxt"]
    ratio_c = cpu["cadenza"] / cpu["c_float"]
    result = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "stream_updates": len(frames),
        "cpu_ns_per_level": {k: round(v, 1) for k, v in cpu.items()},
        "ratio_vs_ccxt": round(ratio_ccxt, 3),
        "ratio_vs_c_float": round(ratio_c, 3),
        "ratio_vs_c_decimal": round(cpu["cadenza"] / cpu["c_decimal"], 3),
        "frame_to_book_ns_per_level": round(per_frame, 1),
        "memory_bytes_per_level": {k: round(v) for k, v in memory.items()},
        "many_books": scale,
    }
    print(json.dumps(result, indent=2))
    lag_max = scale["lag_ms_max"]
    print(f"target CPU <= 0.5x ccxt: {ratio_ccxt:.2f}x {'PASS' if ratio_ccxt <= 0.5 else 'FAIL'}")
    print(f"target CPU <= 3x C book: {ratio_c:.2f}x {'PASS' if ratio_c <= 3 else 'FAIL'}")
    ok = lag_max is not None and lag_max <= 50 and scale["unapplied"] == 0
    ok = ok and scale["books_equal_to_simulator"] == scale["books"]
    print(f"target every book within 50 ms: max {lag_max} ms {'PASS' if ok else 'FAIL'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
