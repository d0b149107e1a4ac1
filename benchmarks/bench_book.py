"""``make bench``: the local order book against ccxt's and a C book, on one recorded stream.

Run: ``.venv/bin/python benchmarks/bench_book.py [--quick] [--json PATH] [--profile PATH]``

1. CPU per applied level update (``time.process_time``, the best of
   interleaved rounds) on one recorded stream of DIFFs from the simulator's
   seeded market (1-3 levels a frame), decoded once into rows of decimal
   strings as they come off the wire; every contender gets the same rows:

   - ``cadenza``: the book's two :class:`~cadenza_async.protocol.book.BookSide`
     (exact integer keys, quantities kept as the wire's strings), fed as
     :class:`~cadenza_async.protocol.book.BookSync` feeds them (a side with no
     rows skipped, the crossed check after a new best price);
   - ``cadenza_sync``: the whole :meth:`BookSync.publication` (the offset,
     state and snapshot-cover checks, the merge, the counters): what the
     live book does per DIFF;
   - ``ccxt``: ccxt's Python ``OrderBookSide`` (``Bids``/``Asks``), each
     row turned into floats first (its input; floats are not exact);
   - ``c_float`` / ``c_decimal``: the ``order-book`` C extension
     (``order_book.OrderBook``) with float keys and with Decimal keys.

   Targets: ``cadenza`` <= 0.5x ``ccxt`` and <= 3x ``c_float`` (the C book's
   fastest form).
2. Frame to book: the CPU per level update of a whole publication, from its
   bytes: ``cadenza`` decodes with ``decode_book_update`` and feeds
   ``BookSync.publication``; ``ccxt`` decodes as its WebSocket client does
   (``orjson`` if installed, else ``json``) and stores floats; ``ccxt_exchange``
   feeds its book as its exchange classes do (``safe_float`` per cell).
3. Memory per level (tracemalloc; the C book's own allocations may be
   invisible to it, so its figure is a floor).
4. 200 books on one client at an aggregate 10,000 level updates/s: the
   simulator in its own process (this file with ``--sim-child``) publishes
   at that rate, stamping the monotonic clock (system-wide) just before each
   publication; the client, in this process, stamps the moment each book
   has applied it. Reported: the lag p50/p99/max, publications never
   applied, publications that found their book not usable, and whether every
   book ends equal to the simulator's. Target: every book current within
   50 ms of each publication (max lag <= 50 ms), none missing, all equal.

Numbers are printed (and written as JSON with ``--json``); PASS/FAIL are
reports, the exit status is 0 either way. ``--profile PATH`` writes a
cProfile of the client during the 200-book run (it slows the client).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import sys
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from cadenza_async.market.models import decode_book_update, decode_order_book  # noqa: E402
from cadenza_async.protocol.book import BookSide, BookSync, crossed  # noqa: E402
from cadenza_async.testing._engine import Channel  # noqa: E402
from cadenza_async.testing._market import DEFAULT_INSTRUMENTS, SimMarket  # noqa: E402

# The books measured against (the bench extra), imported by _load_peers() only after the
# 200-book run: ccxt's modules alone make a process's heap, and so each full collection of
# the cyclic collector, several times larger (a 175 ms pause with them in, during that run).
order_book: Any = None
Exchange: Any = None
Asks: Any = None
Bids: Any = None
_ccxt_loads: Any = None


def _load_peers() -> None:
    global order_book, Exchange, Asks, Bids, _ccxt_loads
    import order_book as c_book
    from ccxt.async_support.base.exchange import Exchange as CcxtExchange
    from ccxt.async_support.base.ws.order_book_side import Asks as CcxtAsks
    from ccxt.async_support.base.ws.order_book_side import Bids as CcxtBids

    try:  # what ccxt's WebSocket client decodes with
        import orjson

        _ccxt_loads = orjson.loads
    except ImportError:
        _ccxt_loads = json.loads
    order_book, Exchange, Asks, Bids = c_book, CcxtExchange, CcxtAsks, CcxtBids


BTC = "BINANCE:BTC/USDT"
Rows = list[list[str]]
Snap = tuple[Rows, Rows]


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


def record(updates: int, depth: int) -> tuple[list[bytes], Rows, Rows]:
    """``updates`` DIFF frames of one book, and its snapshot rows before them."""
    hub = _RecordingHub()
    market = SimMarket(hub, seed=7, depth=depth, instruments=[DEFAULT_INSTRUMENTS[0]])
    snap = market.order_book(BTC, depth=1000)
    market.step(updates, BTC)
    return hub.frames, snap["bids"], snap["asks"]


def _best_of(contenders: dict[str, Any], args: tuple[Any, ...], rounds: int) -> dict[str, float]:
    """CPU seconds of each contender's run, the best of ``rounds`` interleaved rounds."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, run in contenders.items():
            gc.collect()
            start = time.process_time()
            run(*args)
            spent = time.process_time() - start
            best[name] = min(best.get(name, spent), spent)
    return best


# ------------------------------------------------------------------ CPU per level


def _ours(snap: Snap, diffs: list[tuple[Rows, Rows, int]]) -> None:
    bids, asks = BookSide(True), BookSide(False)
    bids.replace(snap[0])
    asks.replace(snap[1])
    for b, a, _ in diffs:  # as BookSync.publication merges a DIFF
        top = bids.apply(b) if b else False
        if a and asks.apply(a):
            top = True
        if top and crossed(bids, asks):
            raise AssertionError("the recorded stream never crosses")


def _ours_sync(snap: Snap, diffs: list[tuple[Rows, Rows, int]]) -> None:
    sync = BookSync()
    sync.set_live("e", 0)
    sync.publication("SNAPSHOT", snap[0], snap[1], 0, 0, 0.0)
    publication = sync.publication
    for offset, (b, a, timestamp) in enumerate(diffs, 1):
        publication("DIFF", b, a, timestamp, offset, 0.0)
    if not sync.usable:
        raise AssertionError("the book lost its proof on the recorded stream")


def _ccxt(snap: Snap, diffs: list[tuple[Rows, Rows, int]]) -> None:
    bids, asks = Bids(), Asks()
    for row in snap[0]:
        bids.store(float(row[0]), float(row[1]))
    for row in snap[1]:
        asks.store(float(row[0]), float(row[1]))
    bid_store, ask_store = bids.store, asks.store
    for b, a, _ in diffs:
        for row in b:
            bid_store(float(row[0]), float(row[1]))
        for row in a:
            ask_store(float(row[0]), float(row[1]))


def _c_book(kind: type) -> Any:
    def run(snap: Snap, diffs: list[tuple[Rows, Rows, int]]) -> None:
        book = order_book.OrderBook()
        bids, asks = book.bids, book.asks
        for row in snap[0]:
            bids[kind(row[0])] = kind(row[1])
        for row in snap[1]:
            asks[kind(row[0])] = kind(row[1])
        for b, a, _ in diffs:
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


def cpu_per_level(frames: list[bytes], snap: Snap, rounds: int) -> dict[str, float]:
    books = [decode_order_book(f) for f in frames]
    diffs = [(b.bids, b.asks, b.timestamp) for b in books]
    levels = sum(len(b) + len(a) for b, a, _ in diffs)
    contenders = {
        "cadenza": _ours,
        "cadenza_sync": _ours_sync,
        "ccxt": _ccxt,
        "c_float": _c_book(float),
        "c_decimal": _c_book(Decimal),
    }
    best = _best_of(contenders, (snap, diffs), rounds)
    return {name: spent / levels * 1e9 for name, spent in best.items()}


# ------------------------------------------------------------------ frame to book


def _ours_frames(snap: Snap, frames: list[bytes]) -> None:
    sync = BookSync()
    sync.set_live("e", 0)
    sync.publication("SNAPSHOT", snap[0], snap[1], 0, 0, 0.0)
    for offset, frame in enumerate(frames, 1):
        update, _, bids, asks, timestamp = decode_book_update(frame)
        sync.publication(update, bids, asks, timestamp, offset, 0.0)
    if not sync.usable:
        raise AssertionError("the book lost its proof on the recorded stream")


def _ccxt_frames(snap: Snap, frames: list[bytes]) -> None:
    bids, asks = Bids(), Asks()
    for row in snap[0]:
        bids.store(float(row[0]), float(row[1]))
    for row in snap[1]:
        asks.store(float(row[0]), float(row[1]))
    bid_store, ask_store = bids.store, asks.store
    for frame in frames:
        message = _ccxt_loads(frame)
        for row in message["bids"]:
            bid_store(float(row[0]), float(row[1]))
        for row in message["asks"]:
            ask_store(float(row[0]), float(row[1]))


def _ccxt_exchange_frames(snap: Snap, frames: list[bytes]) -> None:
    safe_float = Exchange.safe_float
    bids, asks = Bids(), Asks()
    for side, rows in ((bids, snap[0]), (asks, snap[1])):
        for row in rows:
            side.store(safe_float(row, 0), safe_float(row, 1))
    for frame in frames:
        message = _ccxt_loads(frame)
        for side, rows in ((bids, message["bids"]), (asks, message["asks"])):
            for delta in rows:  # as an exchange's handle_delta does
                side.store(safe_float(delta, 0), safe_float(delta, 1))


def frame_to_book(frames: list[bytes], snap: Snap, rounds: int) -> dict[str, float]:
    """CPU ns per level update of a whole publication, from its bytes to the book."""
    levels = sum(len(b.bids) + len(b.asks) for b in map(decode_order_book, frames))
    contenders = {
        "cadenza": _ours_frames,
        "ccxt": _ccxt_frames,
        "ccxt_exchange": _ccxt_exchange_frames,
    }
    best = _best_of(contenders, (snap, frames), rounds)
    return {name: spent / levels * 1e9 for name, spent in best.items()}


# ------------------------------------------------------------------ memory


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


# ------------------------------------------------------------------ 200 books, two processes


class _Pauses:
    """While active: the collector's pauses, and how late a 5 ms timer on the loop fires."""

    def __init__(self) -> None:
        self.gc_max = self.gc_total = self.late_max = 0.0
        self._gc_start = 0.0
        self._task: asyncio.Task[None] | None = None

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            spent = time.perf_counter() - self._gc_start
            self.gc_total += spent
            self.gc_max = max(self.gc_max, spent)

    async def _probe(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            self.late_max = max(self.late_max, time.monotonic() - before - 0.005)

    def start(self) -> None:
        gc.callbacks.append(self._gc)
        self._task = asyncio.get_running_loop().create_task(self._probe())

    async def stop(self) -> dict[str, float]:
        gc.callbacks.remove(self._gc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return {
            "gc_pause_ms_max": round(self.gc_max * 1000, 2),
            "gc_pause_ms_total": round(self.gc_total * 1000, 1),
            "loop_late_ms_max": round(self.late_max * 1000, 2),
        }


class _Data(msgspec.Struct):
    bids: list[Any] = []
    asks: list[Any] = []


class _Pub(msgspec.Struct):
    data: _Data


_levels_of = msgspec.json.Decoder(_Pub).decode


async def _publish_at_rate(
    market: Any, ids: list[str], seconds: float, level_rate: float
) -> dict[str, Any]:
    """Step the books round-robin so that ``level_rate`` levels a second go out, evenly."""
    sent: list[tuple[str, int, float]] = []
    levels = 0
    step = 0
    channels = [market.book_channel(i) for i in ids]
    pauses = _Pauses()
    pauses.start()
    start = time.monotonic()
    end = start + seconds
    while (now := time.monotonic()) < end:
        target = level_rate * (now - start)
        while levels < target:
            k = step % len(ids)
            step += 1
            channel = channels[k]
            stamp = time.monotonic()
            market.step(1, ids[k])
            sent.append((channel.name, channel.offset, stamp))
            pub = _levels_of(channel.history[-1][1])
            levels += len(pub.data.bids) + len(pub.data.asks)
        await asyncio.sleep(0.002)
    seconds = time.monotonic() - start
    simulator = await pauses.stop()
    print(json.dumps({"updates": len(sent)}), flush=True)  # first, a short line
    books = {}
    for iid in ids:
        bids, asks = market.book(iid)
        books[iid] = (
            [[str(p), str(q)] for p, q in bids.items()],
            [[str(p), str(q)] for p, q in asks.items()],
        )
    return {
        "sent": sent,
        "levels": levels,
        "updates": len(sent),
        "seconds": seconds,
        "books": books,
        "pauses": simulator,
    }


async def _sim_child(n_books: int) -> None:
    """The simulator's side: serve, then publish at the rate each command on stdin asks."""
    from cadenza_async.testing import CadenzaSimulator

    async with CadenzaSimulator(history_size=1000) as sim:
        market = sim.market
        ids = []
        for i in range(n_books):
            spec = (f"BENCH:C{i:03d}/USDT", "100", "0.01", "0.001", "0.001", "1000000", "0")
            ids.append(market.add_instrument(spec, depth=20).instrument_id)
        hello = {"api_url": sim.api_url, "ws_url": sim.ws_url, "token": sim.token, "ids": ids}
        # the simulator stands in for a server whose pauses are not the client's: its
        # collector stays off while it publishes (it runs for seconds)
        gc.collect()
        gc.freeze()
        gc.disable()
        print(json.dumps(hello), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip() or line.strip() == "quit":
                return
            command = json.loads(line)
            result = await _publish_at_rate(market, ids, command["seconds"], command["level_rate"])
            print(json.dumps(result), flush=True)


class _Applied:
    """Observes each book channel after its book: when each publication was applied."""

    def __init__(self, views: dict[str, Any], expected: int) -> None:
        self.views = views
        self.applied: dict[tuple[str, int], float] = {}
        self.not_usable = 0
        self.expected = expected
        self.all_in = asyncio.Event()

    def publication(self, channel: str, data: Any, offset: int | None) -> None:
        now = time.monotonic()
        sync = self.views[channel].sync
        if offset is None or not sync.usable or sync.last_offset != offset:
            self.not_usable += 1
            return
        self.applied[(channel, offset)] = now
        if len(self.applied) >= self.expected:
            self.all_in.set()

    def gap(self, channel: str, reason: str) -> None: ...
    def live(self, channel: str, position: Any) -> None: ...
    def refused(self, channel: str, error: Any) -> None: ...


def _percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


async def many_books(
    n_books: int, level_rate: float, seconds: float, profile: Path | None = None
) -> dict[str, Any]:
    from cadenza_async import CadenzaClient

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "--sim-child",
        str(n_books),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ},
        limit=2**27,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        hello = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        async with (
            CadenzaClient(
                token=hello["token"], api_url=hello["api_url"], ws_url=hello["ws_url"]
            ) as client,
            contextlib.AsyncExitStack() as held,
        ):
            books = [await held.enter_async_context(client.order_book(i)) for i in hello["ids"]]
            for book in books:
                await book.wait_ready(30.0)
            return await _run_books(client, books, proc, level_rate, seconds, profile)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(OSError):  # (it may have exited already)
                proc.stdin.write(b"quit\n")
                await proc.stdin.drain()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


async def _run_books(
    client: Any, books: list[Any], proc: Any, level_rate: float, seconds: float, profile: Any
) -> dict[str, Any]:
    # (expected is set once the simulator says how many it sent)
    applied = _Applied({b.channel: b.view for b in books}, expected=1 << 62)
    for book in books:
        client._stream.observe(book.channel, applied)
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    pauses = _Pauses()
    pauses.start()
    cpu0, wall0 = time.process_time(), time.monotonic()
    command = {"seconds": seconds, "level_rate": level_rate}
    proc.stdin.write(json.dumps(command).encode() + b"\n")
    await proc.stdin.drain()
    done = json.loads(await asyncio.wait_for(proc.stdout.readline(), seconds + 60))
    applied.expected = done["updates"]
    if len(applied.applied) >= applied.expected:
        applied.all_in.set()
    with contextlib.suppress(asyncio.TimeoutError):  # what is missing then is reported
        await asyncio.wait_for(applied.all_in.wait(), 5.0)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    client_pauses = await pauses.stop()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))
    result = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
    for book in books:
        client._stream.unobserve(book.channel, applied)
    lags = sorted(
        applied.applied[(c, o)] - sent for c, o, sent in result["sent"] if (c, o) in applied.applied
    )
    equal = 0
    for book in books:
        bids, asks = result["books"][book.instrument_id]
        truth = (
            {Decimal(p): Decimal(q) for p, q in bids},
            {Decimal(p): Decimal(q) for p, q in asks},
        )
        mine = (
            {lv.price: lv.quantity for lv in book.bids()},
            {lv.price: lv.quantity for lv in book.asks()},
        )
        equal += mine == truth and book.usable
    return {
        "books": len(books),
        "seconds": round(result["seconds"], 2),
        "updates": result["updates"],
        "level_updates": result["levels"],
        "level_updates_per_s": round(result["levels"] / result["seconds"]),
        "level_updates_per_s_target": level_rate,
        "lag_ms_p50": round(_percentile(lags, 0.5) * 1000, 2) if lags else None,
        "lag_ms_p99": round(_percentile(lags, 0.99) * 1000, 2) if lags else None,
        "lag_ms_max": round(lags[-1] * 1000, 2) if lags else None,
        "over_50ms": sum(1 for lag in lags if lag > 0.05),
        "not_applied": len(result["sent"]) - len(lags),
        "not_usable_on_arrival": applied.not_usable,
        "resyncs": sum(b.view.sync.total_resyncs for b in books),
        "books_equal_to_simulator": equal,
        "client_cpu_share": round(cpu / wall, 3),
        "client_cpu_us_per_update": round(cpu / max(1, result["updates"]) * 1e6, 1),
        "client_pauses": client_pauses,
        "simulator_pauses": result["pauses"],
    }


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU per level")
    parser.add_argument("--profile", type=Path, help="cProfile the client of the 200 books here")
    parser.add_argument("--sim-child", type=int, metavar="BOOKS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sim_child:
        runner: Any = asyncio.run
        with contextlib.suppress(ImportError):  # as python -m cadenza_async.testing runs
            import uvloop

            runner = uvloop.run
        runner(_sim_child(args.sim_child))
        return 0
    updates = 3_000 if args.quick else 60_000
    rounds = 1 if args.quick else 5
    scale = None
    if not args.cpu_only:  # first, in a process that has not imported the peers' books yet
        scale = asyncio.run(
            many_books(
                20 if args.quick else 200,
                1_000 if args.quick else 10_000,
                1.0 if args.quick else 5.0,
                args.profile,
            )
        )
    _load_peers()
    frames, bids, asks = record(updates, depth=50)
    snap = (bids, asks)
    cpu = cpu_per_level(frames, snap, rounds)
    if scale is None:
        print(json.dumps({k: round(v, 1) for k, v in cpu.items()}))
        print(f"vs ccxt {cpu['cadenza'] / cpu['ccxt']:.3f}x")
        return 0
    per_frame = frame_to_book(frames, snap, rounds)
    memory = memory_per_level(2_000 if args.quick else 20_000)
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
        "ratio_sync_vs_ccxt": round(cpu["cadenza_sync"] / cpu["ccxt"], 3),
        "frame_to_book_ns_per_level": {k: round(v, 1) for k, v in per_frame.items()},
        "frame_to_book_ratio_vs_ccxt": round(per_frame["cadenza"] / per_frame["ccxt"], 3),
        "memory_bytes_per_level": {k: round(v) for k, v in memory.items()},
        "many_books": scale,
    }
    print(json.dumps(result, indent=2))
    print(f"target CPU <= 0.5x ccxt: {ratio_ccxt:.2f}x {'PASS' if ratio_ccxt <= 0.5 else 'FAIL'}")
    print(f"target CPU <= 3x C book: {ratio_c:.2f}x {'PASS' if ratio_c <= 3 else 'FAIL'}")
    lag_max = scale["lag_ms_max"]
    ok = lag_max is not None and lag_max <= 50 and scale["not_applied"] == 0
    ok = ok and scale["books_equal_to_simulator"] == scale["books"]
    print(f"target every book within 50 ms: max {lag_max} ms {'PASS' if ok else 'FAIL'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
