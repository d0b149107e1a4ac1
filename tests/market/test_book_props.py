"""Property: whatever the stream does, a book that says usable equals the true book at that offset.

The book core (:class:`BookSync`) is driven as the client drives it, by a
Centrifugo-like model of the stream over the simulator's own market
(:class:`SimMarket`: the same seeded random walk, channels and history);
the REST snapshot is served by the simulator at one moment and handed to
the book later, any number of publications after. Hypothesis picks the
seed and the schedule: updates, dropped publications, DELTAs, crossed
books, reconnects that recover and reconnects that do not (history lost).
"""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadenza_async.market.models import decode_order_book
from cadenza_async.protocol.book import BookSync
from cadenza_async.testing._engine import Channel
from cadenza_async.testing._market import SimMarket

BTC = "BINANCE:BTC/USDT"


class FakeHub:
    """The parts of the simulator's hub the market uses; delivery to one model client."""

    def __init__(self) -> None:
        self.named: dict[str, Channel] = {}
        self.connected = True
        self.delivered: list[tuple[str, bytes, int]] = []
        self.dropped_subscribers: list[str] = []

    def add_named(self, name: str) -> Channel:
        return self.named.setdefault(name, Channel(name, 300, None))

    def publish_on(self, channel: Channel, data: bytes) -> int:
        offset, _ = channel.add(data)
        if self.connected:
            self.delivered.append((channel.name, data, offset))
        return offset

    def drop_subscribers(self, name: str, code: int, reason: str) -> None:
        self.dropped_subscribers.append(name)

    def deliver_frame(self, name: str, frame: bytes) -> None:
        raise AssertionError("not used here")


class ModelClient:
    """Feeds one book the way OrderStream + the live view do; checks the invariant at each step."""

    def __init__(self, market: SimMarket, hub: FakeHub) -> None:
        self.market = market
        self.hub = hub
        self.channel = market.book_channel(BTC)
        self.sync = BookSync()
        self.pos = self.channel.offset
        self.epoch = self.channel.epoch
        self.now = 0.0
        self.served: tuple[int, dict] | None = None
        self.snapshots_requested = 0
        self.sync.set_live(self.epoch, self.pos)

    def feed(self, data: bytes, offset: int) -> None:
        if offset <= self.pos:
            return  # duplicate, as the Centrifugo core drops it
        if offset != self.pos + 1:
            self.sync.gap("gap")
        self.pos = offset
        book = decode_order_book(data)
        self.now += 0.001
        self.sync.publication(
            book.update_type, book.bids, book.asks, book.timestamp, offset, self.now
        )
        self.check()

    def pump(self, count: int | None = None) -> None:
        """Feed the first ``count`` publications in flight (all when None)."""
        cut = len(self.hub.delivered) if count is None else count
        delivered, self.hub.delivered = self.hub.delivered[:cut], self.hub.delivered[cut:]
        for name, data, offset in delivered:
            if name == self.channel.name:
                self.feed(data, offset)
        if self.hub.dropped_subscribers:
            self.hub.dropped_subscribers.clear()
            self.sync.set_not_live()
            self.resubscribe()

    def resubscribe(self) -> None:
        channel = self.channel
        replay = channel.recover(self.epoch, self.pos)
        if replay is None:
            self.sync.gap("not_recovered")
            self.pos = channel.offset
        else:
            for pub in replay:
                decoded = msgspec.json.decode(pub)
                self.feed(msgspec.json.encode(decoded["data"]), decoded["offset"])
        self.epoch = channel.epoch
        self.sync.set_live(channel.epoch, channel.offset)
        self.check()

    def serve(self) -> None:
        """The server answers a wanted snapshot now (the book as of this moment)."""
        if self.served is None and self.sync.snapshot_wanted:
            token = self.sync.take_snapshot_request()
            self.snapshots_requested += 1
            self.served = (token, self.market.order_book(BTC, depth=1000))

    def answer(self) -> None:
        """The served snapshot reaches the client (possibly many publications later)."""
        if self.served is not None:
            token, snap = self.served
            self.served = None
            book = decode_order_book(msgspec.json.encode(snap))
            self.sync.rest_snapshot(token, book.bids, book.asks, book.timestamp, self.now)
            self.check()

    def check(self) -> None:
        sync = self.sync
        if not sync.usable:
            return
        # a snapshot may be newer than the last publication fed: the book must be the
        # true book at an offset from the last one fed to the newest one (never a
        # state that did not exist, never older than what it applied)
        mine = (sync.bids.as_dict(), sync.asks.as_dict())
        states = [
            self.market.book_at(BTC, self.channel.epoch, offset)
            for offset in range(self.pos, self.channel.offset + 1)
        ]
        assert any(s is not None for s in states), "the simulator no longer holds that offset"
        assert mine in states, f"usable but not the true book at offset {self.pos} or later"


ACTIONS = st.sampled_from(
    [
        "step",
        "step",
        "step",
        "step",
        "deliver",
        "deliver_one",
        "serve",
        "answer",
        "drop",
        "delta",
        "cross",
        "reconnect",
        "reconnect_lost",
    ]
)


def run(seed: int, schedule: list[str]) -> ModelClient:
    hub = FakeHub()
    market = SimMarket(hub, seed=seed, depth=8)
    client = ModelClient(market, hub)
    for action in schedule:
        if action == "step":
            market.step(1, BTC)
        elif action == "serve":
            client.serve()
        elif action == "answer":
            client.answer()
        elif action == "drop":
            market.drop_next(BTC, 1)
            market.step(1, BTC)
        elif action == "delta":
            market.send_delta(BTC)
            market.step(1, BTC)
        elif action == "cross":
            market.cross_book(BTC)
        elif action == "reconnect":
            client.pump()  # what was in flight arrives before the connection drops
            hub.connected = False
            client.sync.set_not_live()
            market.step(2, BTC)  # published while away: in history
            hub.delivered.clear()
            hub.connected = True
            client.resubscribe()
        elif action == "reconnect_lost":
            client.pump()  # what was in flight arrives before the server's unsubscribe
            market.lose_history(BTC)
            client.pump()
        elif action == "deliver":
            client.pump()
        elif action == "deliver_one":
            client.pump(1)
    return client


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**16), st.lists(ACTIONS, max_size=60))
def test_a_usable_book_always_equals_the_true_book_and_heals_within_two_snapshots(seed, schedule):
    client = run(seed, schedule)
    # the faults stop: publications and served snapshots reach the client at once
    client.pump()
    client.answer()
    asked = client.snapshots_requested
    for _ in range(5):
        client.market.step(1, BTC)
        client.pump()
        client.serve()
        client.answer()
    assert client.sync.usable
    assert client.snapshots_requested - asked <= 2
    client.check()


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from(["drop", "delta", "cross", "reconnect_lost"]))
def test_never_usable_from_a_loss_of_continuity_until_a_snapshot(seed, fault):
    client = run(seed, ["serve", "answer", "step", "deliver"])
    assert client.sync.usable
    applied = client.sync.snapshots_applied
    run_fault = {
        "drop": ["drop", "step"],
        "delta": ["delta"],
        "cross": ["cross"],
        "reconnect_lost": ["reconnect_lost"],
    }[fault]
    for action in run_fault:
        if action == "drop":
            client.market.drop_next(BTC, 1)
            client.market.step(1, BTC)
        elif action == "delta":
            client.market.send_delta(BTC)
            client.market.step(1, BTC)
        elif action == "cross":
            client.market.cross_book(BTC)
        elif action == "reconnect_lost":
            client.pump()
            client.market.lose_history(BTC)
        else:
            client.market.step(1, BTC)
        client.pump()
    for _ in range(3):
        client.market.step(1, BTC)
        client.pump()
        assert not client.sync.usable
        assert client.sync.snapshots_applied == applied
    client.serve()
    client.answer()
    assert client.sync.usable
