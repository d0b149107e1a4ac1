"""Measure the sans-I/O ingestion path: Centrifugo push frame bytes -> resolved waiter.

Run: ``.venv/bin/python benchmarks/bench_ingest.py [--events N] [--rounds R]``

Each frame is a real Centrifugo push as the simulator (and Centrifugo) writes
it: ``{"push":{"channel":...,"pub":{"data":<event>,"offset":k}}}`` where the
event is ``{"metadata":{...,"eventType":"event.trade_order.updated"},"data":<TradeOrder>}``.
Per frame, the timed loop does what the SDK does per publication:
``CentrifugoProtocol.receive_frame`` -> ``models.decode_order_event`` ->
``ConfirmationRegistry.resolve_from_event``. The updates are non-terminal
(PARTIALLY_FILLED, increasing ``updatedAt``) for random pending waiters, so
the number of pending waiters stays constant during a round. Frames are built
before timing; the garbage collector is left on (as in the SDK). The median
of the rounds counts.

Memory per pending waiter: tracemalloc growth of a registry holding N
waiters (order id strings are the caller's and exist before tracing), and
the same plus what the client keeps per waiter on the I/O side (an asyncio
future in a small slot object).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
import tracemalloc
import uuid
from typing import Any

import msgspec

from cadenza_async.models import decode_order_event
from cadenza_async.protocol.centrifugo import CentrifugoProtocol, Publication
from cadenza_async.protocol.confirm import ConfirmationRegistry

ACCOUNT = str(uuid.UUID(int=7, version=4))
CHANNEL = "tradingAccount:" + ACCOUNT
SIZES = (10, 1_000, 100_000)
_encode = msgspec.json.Encoder().encode


def make_ids(n: int, rng: random.Random) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


def make_frames(ids: list[str], n: int, rng: random.Random, first_offset: int) -> list[bytes]:
    """``n`` push frames, each a PARTIALLY_FILLED update of a random id, offsets consecutive."""
    prefix = b'{"push":{"channel":' + _encode(CHANNEL) + b',"pub":'
    frames = []
    for i in range(n):
        order = {
            "tradeOrderId": ids[rng.randrange(len(ids))],
            "tradingAccountId": ACCOUNT,
            "venue": "BINANCE",
            "instrumentId": "BTC/USDT",
            "orderSide": "BUY",
            "orderType": "LIMIT",
            "timeInForce": "GTC",
            "status": "PARTIALLY_FILLED",
            "quantity": "1",
            "executedQuantity": "0.25",
            "limitPrice": "50000",
            "createdAt": 1_700_000_000_000,
            "updatedAt": 1_700_000_000_001 + i,
        }
        event = (
            b'{"metadata":{"eventId":"'
            + uuid.UUID(int=rng.getrandbits(128)).hex.encode()
            + b'","eventType":"event.trade_order.updated","timestamp":"2024-01-01T00:00:00Z"},'
            + b'"data":'
            + _encode(order)
            + b"}"
        )
        pub = b'{"data":' + event + b',"offset":' + str(first_offset + i).encode() + b"}"
        frames.append(prefix + pub + b"}}")
    return frames


def subscribed_protocol() -> CentrifugoProtocol:
    """A protocol core connected and subscribed to ``CHANNEL`` at offset 0."""
    proto = CentrifugoProtocol()
    cid = proto.send_connect("token", 0.0)
    proto.data_to_send()
    proto.receive_frame(_encode({"id": cid, "connect": {"client": "c", "ping": 25}}), 0.0)
    cid = proto.send_subscribe(CHANNEL, 0.0)
    proto.data_to_send()
    proto.receive_frame(
        _encode(
            {
                "id": cid,
                "subscribe": {"recoverable": True, "positioned": True, "epoch": "e", "offset": 0},
            }
        ),
        0.0,
    )
    assert proto.is_subscribed(CHANNEL)
    return proto


def fill(ids: list[str]) -> ConfirmationRegistry:
    reg = ConfirmationRegistry()
    for oid in ids:
        reg.register(oid, 0.0, account_id=ACCOUNT)
    return reg


def ingest_once(ids: list[str], frames: list[bytes]) -> float:
    """Updates per second through frame -> event -> order -> registry, one round."""
    proto = subscribed_protocol()
    reg = fill(ids)
    receive = proto.receive_frame
    resolve = reg.resolve_from_event
    decode = decode_order_event
    gc.collect()
    start = time.perf_counter()
    for frame in frames:
        for event in receive(frame, 1.0):
            if type(event) is Publication:
                order = decode(event.data)
                if order is not None:
                    resolve(order, 1.0, ACCOUNT)
    elapsed = time.perf_counter() - start
    assert reg.pending_count == len(ids)
    assert reg.stats.events_seen == len(frames), reg.stats
    return len(frames) / elapsed


def ingest_rates(events: int, rounds: int, seed: int = 7) -> dict[int, dict[str, Any]]:
    """Per pending-waiter count: the median and every round's updates per second."""
    rng = random.Random(seed)
    out: dict[int, dict[str, Any]] = {}
    for size in SIZES:
        ids = make_ids(size, rng)
        frames = make_frames(ids, events, rng, 1)
        rates = [ingest_once(ids, frames) for _ in range(rounds)]
        out[size] = {"median": statistics.median(rates), "rounds": rates}
        del frames
    return out


def bytes_per_waiter(n: int = 100_000) -> dict[str, float]:
    """tracemalloc bytes per pending waiter: registry only, and with the client's future."""
    ids = make_ids(n, random.Random(11))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        reg = fill(ids)
        registry_only = tracemalloc.get_traced_memory()[0] - before
        loop = asyncio.new_event_loop()
        try:
            from cadenza_async.cancels import _Job  # the client's per-waiter slot

            for oid in ids:
                waiter = reg.get(oid)
                assert waiter is not None
                job = _Job(0.0)
                job.futures = [loop.create_future()]  # one caller waiting
                waiter.handle = job
            with_future = tracemalloc.get_traced_memory()[0] - before
        finally:
            loop.close()
    finally:
        tracemalloc.stop()
    assert reg.pending_count == n
    return {"registry": registry_only / n, "with_future": with_future / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="frames per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rates = ingest_rates(args.events, args.rounds)
    for size, r in rates.items():
        print(f"{size:>8,} pending: {r['median']:>10,.0f} updates/s  ({1e6 / r['median']:.2f} us)")
    mem = bytes_per_waiter()
    print(
        f"memory per pending waiter at 100,000: registry {mem['registry']:.0f} B, "
        f"with the client's future {mem['with_future']:.0f} B"
    )


if __name__ == "__main__":
    main()
