"""The simulator's market: instruments with rules, seeded random-walk books, tickers and candles.

Nothing moves on its own: :meth:`SimMarket.step` makes ``n`` updates of
each book (or of one), each published as a DIFF on
``market:orderbook:{venue}:{symbol}`` with its Centrifugo offset and kept in
the channel's history, with a ticker on ``market:ticker:{venue}:{symbol}``
and the forming candle on ``market:kline:{venue}:{symbol}:1m``. The same
seed gives the same stream of updates. :meth:`SimMarket.publish_snapshot`
publishes the whole book as a SNAPSHOT. A background ticker for the CLI
and demos (:meth:`SimMarket.run`) calls ``step`` on a timer.

The REST answers (``orderBook/get``, ``ticker/get``, ``kline/get``,
``instrument/list``, ...) are the state after the last update published,
with that update's timestamp; every update has a timestamp later than the
one before (ms, strictly increasing per book), so a client can tell which
DIFFs a snapshot holds. :meth:`SimMarket.book_at` gives the book as it was
right after any recent offset (tests compare a client's book with it).

Faults, per instrument: :meth:`drop_next` (publications kept in history but
not delivered: a live gap), :meth:`lose_history` (new epoch, history gone,
subscribers told to resubscribe: code 2500), :meth:`send_delta` (the next
update goes out as a DELTA), :meth:`cross_book` (a DIFF that crosses the
book, never applied to the true book), :meth:`stall` (publications held
until resumed), and the wire form of every market publication:
``"bare"``, ``"data"`` (``{data}``) or ``"metadata"`` (``{metadata, data}``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Final

import msgspec

from ..market.models import Instrument
from ._engine import ERRNO_INVALID_REQUEST, ERRNO_NOT_FOUND, ApiFailure, Channel

__all__ = ["DEFAULT_INSTRUMENTS", "WIRE_FORMS", "SimMarket"]

_encode = msgspec.json.Encoder().encode

WIRE_FORMS: Final = ("bare", "data", "metadata")

#: (instrument id, mid price, pip size, lot size, min quantity, max quantity, min notional)
DEFAULT_INSTRUMENTS: Final = (
    ("BINANCE:BTC/USDT", "50000", "0.01", "0.00001", "0.0001", "9000", "5"),
    ("BINANCE:ETH/USDT", "3000", "0.01", "0.0001", "0.001", "90000", "5"),
    ("BINANCE:SOL/USDT", "150", "0.001", "0.01", "0.01", "100000", "5"),
)
_ORDER_TYPES: Final = ["MARKET", "LIMIT", "LIMIT_MAKER", "STOP_LIMIT"]
_TIME_IN_FORCE: Final = ["GTC", "IOC", "FOK"]
_KLINE_MS: Final = 60_000


def make_instrument(spec: tuple[str, ...]) -> Instrument:
    instrument_id, _mid, pip, lot, low, high, notional = spec
    venue, _, symbol = instrument_id.partition(":")
    base, _, quote = symbol.partition("/")
    return Instrument(
        instrument_id=instrument_id,
        venue=venue,
        symbol=symbol,
        external_symbol=base + quote,
        instrument_type="SPOT",
        status="ACTIVE",
        base_asset=base,
        quote_asset=quote,
        base_precision=-Decimal(lot).as_tuple().exponent,  # type: ignore[operator]
        quote_precision=-Decimal(pip).as_tuple().exponent,  # type: ignore[operator]
        lot_size=lot,
        pip_size=pip,
        min_quantity=low,
        max_quantity=high,
        min_notional=notional,
        order_types=list(_ORDER_TYPES),
        time_in_force_options=list(_TIME_IN_FORCE),
    )


class _Book:
    """One instrument's true book: levels in integer ticks and lots, and its random walk."""

    def __init__(self, inst: Instrument, mid: str, seed: int, depth: int) -> None:
        self.inst = inst
        self.pip = Decimal(inst.pip_size or "0.01")
        self.lot = Decimal(inst.lot_size or "0.001")
        self.rng = random.Random(seed)
        self.depth = depth
        self.mid = int(Decimal(mid) / self.pip)
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        for i in range(1, depth + 1):
            self.bids[self.mid - i] = self._size()
            self.asks[self.mid + i] = self._size()
        self.timestamp = 0
        self.last_trade = self.mid
        self.volume = 0

    def _size(self) -> int:
        return self.rng.randint(1, 5000)

    def price(self, ticks: int) -> str:
        return str(self.pip * ticks)

    def qty(self, lots: int) -> str:
        return "0" if lots == 0 else str(self.lot * lots)

    def rows(
        self, side: dict[int, int], descending: bool, depth: int | None = None
    ) -> list[list[str]]:
        keys = sorted(side, reverse=descending)[:depth]
        return [[self.price(k), self.qty(side[k])] for k in keys]

    def move(self) -> tuple[list[list[str]], list[list[str]]]:
        """One random update: a few levels changed, added or removed; the changed rows."""
        rng = self.rng
        bid_rows: list[list[str]] = []
        ask_rows: list[list[str]] = []
        for _ in range(rng.randint(1, 3)):
            is_bid = rng.random() < 0.5
            side = self.bids if is_bid else self.asks
            other = self.asks if is_bid else self.bids
            out = bid_rows if is_bid else ask_rows
            roll = rng.random()
            if roll < 0.15 and len(side) > 2:  # a level goes
                key = rng.choice(sorted(side))
                del side[key]
                out.append([self.price(key), "0"])
                continue
            if roll < 0.35:  # a new level, never crossing the other side
                best_other = min(other) if is_bid else max(other)
                edge = best_other - 1 if is_bid else best_other + 1
                key = (
                    edge - rng.randint(0, self.depth)
                    if is_bid
                    else edge + rng.randint(0, self.depth)
                )
            else:
                key = rng.choice(sorted(side))
            side[key] = self._size()
            out.append([self.price(key), self.qty(side[key])])
            if roll > 0.9:
                self.last_trade = key
                self.volume += rng.randint(1, 100)
        return bid_rows, ask_rows

    def snapshot(self) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        def exact(side: dict[int, int]) -> dict[Decimal, Decimal]:
            return {self.pip * k: self.lot * v for k, v in side.items()}

        return exact(self.bids), exact(self.asks)


class _Channels:
    """The three channels of one instrument and what is held back on them."""

    def __init__(self, hub: Any, venue: str, symbol: str) -> None:
        self.book: Channel = hub.add_named(f"market:orderbook:{venue}:{symbol}")
        self.ticker: Channel = hub.add_named(f"market:ticker:{venue}:{symbol}")
        self.kline: Channel = hub.add_named(f"market:kline:{venue}:{symbol}:1m")
        self.drop = 0
        self.delta = 0
        self.stalled = False
        self.held: list[tuple[str, bytes]] = []  # (channel name, push frame)


class SimMarket:
    """The simulated market of a :class:`~cadenza_async.testing.CadenzaSimulator` (see the module docstring)."""

    def __init__(
        self,
        hub: Any,
        *,
        seed: int = 0,
        instruments: Iterable[tuple[str, ...]] = DEFAULT_INSTRUMENTS,
        depth: int = 20,
        keep_states: int = 2_000,
    ) -> None:
        self._hub = hub
        self.seed = seed
        self.wire_form = "bare"
        self.instruments: dict[str, Instrument] = {}
        self._books: dict[str, _Book] = {}
        self._channels: dict[str, _Channels] = {}
        self._states: dict[str, collections.OrderedDict[tuple[str, int], Any]] = {}
        self._keep = keep_states
        self.updates_published = 0
        self._runner: asyncio.Task[None] | None = None
        for spec in instruments:
            self.add_instrument(spec, depth=depth)

    def add_instrument(self, spec: tuple[str, ...], *, depth: int = 20) -> Instrument:
        """Add ``(id, mid, pip, lot, min qty, max qty, min notional)``; its channels exist from now on."""
        inst = make_instrument(spec)
        instrument_id = inst.instrument_id
        salt = zlib.crc32(instrument_id.encode())
        self.instruments[instrument_id] = inst
        self._books[instrument_id] = _Book(inst, spec[1], self.seed * 1_000_003 + salt, depth)
        self._channels[instrument_id] = _Channels(self._hub, inst.venue or "", inst.symbol or "")
        self._states[instrument_id] = collections.OrderedDict()
        self._remember(instrument_id, self._channels[instrument_id].book)  # offset 0
        return inst

    def _book(self, instrument_id: str) -> _Book:
        book = self._books.get(instrument_id)
        if book is None:
            raise KeyError(f"the simulated market has no instrument {instrument_id!r}")
        return book

    # ---- controls ---------------------------------------------------------------------

    def step(self, n: int = 1, instrument_id: str | None = None) -> None:
        """Make and publish ``n`` updates of each book (or of ``instrument_id``'s)."""
        ids = list(self._books) if instrument_id is None else [instrument_id]
        for _ in range(n):
            for iid in ids:
                self._step_one(iid)

    def _step_one(self, instrument_id: str) -> None:
        book = self._book(instrument_id)
        chans = self._channels[instrument_id]
        bids, asks = book.move()
        book.timestamp = max(int(time.time() * 1000), book.timestamp + 1)
        kind = "DIFF"
        if chans.delta:
            chans.delta -= 1
            kind = "DELTA"
        self._publish(chans, chans.book, self._book_payload(book, kind, bids, asks))
        self._remember(instrument_id, chans.book)
        self._publish(chans, chans.ticker, _encode(self.ticker(instrument_id)))
        self._publish(chans, chans.kline, _encode(self.kline(instrument_id, last_only=True)))
        self.updates_published += 1

    def publish_snapshot(self, instrument_id: str) -> None:
        """Publish the whole book as a SNAPSHOT (a client may start from it)."""
        book = self._book(instrument_id)
        chans = self._channels[instrument_id]
        book.timestamp = max(int(time.time() * 1000), book.timestamp + 1)
        payload = self._book_payload(
            book, "SNAPSHOT", book.rows(book.bids, True), book.rows(book.asks, False)
        )
        self._publish(chans, chans.book, payload)
        self._remember(instrument_id, chans.book)

    def drop_next(self, instrument_id: str, n: int = 1) -> None:
        """The next ``n`` book publications go to history only (subscribers see an offset gap)."""
        self._channels_of(instrument_id).drop += n

    def send_delta(self, instrument_id: str, n: int = 1) -> None:
        """The next ``n`` book updates are published as DELTA (applied to the true book)."""
        self._channels_of(instrument_id).delta += n

    def cross_book(self, instrument_id: str) -> None:
        """Publish a DIFF whose bid is above the best ask; the true book does not change."""
        book = self._book(instrument_id)
        chans = self._channels[instrument_id]
        book.timestamp = max(int(time.time() * 1000), book.timestamp + 1)
        crossing = [[book.price(min(book.asks) + 1), book.qty(1)]]
        self._publish(chans, chans.book, self._book_payload(book, "DIFF", crossing, []))
        self._remember(instrument_id, chans.book)

    def lose_history(self, instrument_id: str) -> None:
        """New epoch and empty history on the instrument's channels; subscribers must resubscribe."""
        chans = self._channels_of(instrument_id)
        for channel in (chans.book, chans.ticker, chans.kline):
            channel.reset()
            self._hub.drop_subscribers(channel.name, 2500, "insufficient state")
        self._states[instrument_id].clear()
        self._remember(instrument_id, chans.book)

    def stall(self, instrument_id: str, stalled: bool = True) -> None:
        """Hold every publication of the instrument (True) or deliver what was held (False)."""
        chans = self._channels_of(instrument_id)
        chans.stalled = stalled
        if not stalled:
            held, chans.held = chans.held, []
            for name, frame in held:
                self._hub.deliver_frame(name, frame)

    def set_wire_form(self, form: str) -> None:
        """How market publications are wrapped: ``"bare"``, ``"data"`` or ``"metadata"``."""
        if form not in WIRE_FORMS:
            raise ValueError(f"wire form must be one of {WIRE_FORMS}, not {form!r}")
        self.wire_form = form

    def _channels_of(self, instrument_id: str) -> _Channels:
        self._book(instrument_id)
        return self._channels[instrument_id]

    # ---- background ticking (CLI, demos) ----------------------------------------------

    def run(self, rate: float) -> None:
        """Step every book ``rate`` times a second in a task until :meth:`stop_running`."""
        self.stop_running()
        self._runner = asyncio.get_running_loop().create_task(self._tick(rate))

    async def _tick(self, rate: float) -> None:
        interval = 1.0 / rate
        while True:
            self.step()
            await asyncio.sleep(interval)

    def stop_running(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    # ---- publishing ---------------------------------------------------------------------

    def _book_payload(
        self, book: _Book, kind: str, bids: list[list[str]], asks: list[list[str]]
    ) -> bytes:
        inst = book.inst
        return _encode(
            {
                "updateType": kind,
                "instrumentId": inst.instrument_id,
                "venue": inst.venue,
                "symbol": inst.symbol,
                "orderBookType": "L2",
                "columns": ["price", "quantity"],
                "bids": bids,
                "asks": asks,
                "timestamp": book.timestamp,
            }
        )

    def _wrapped(self, payload: bytes, event_type: str) -> bytes:
        if self.wire_form == "bare":
            return payload
        if self.wire_form == "data":
            return b'{"data":' + payload + b"}"
        meta = _encode(
            {
                "eventId": uuid.uuid4().hex,
                "eventType": event_type,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        return b'{"metadata":' + meta + b',"data":' + payload + b"}"

    def _publish(self, chans: _Channels, channel: Channel, payload: bytes) -> None:
        kind = channel.name.split(":", 2)[1]  # orderbook, ticker, kline
        data = self._wrapped(payload, f"event.{kind}.updated")
        if channel is chans.book and chans.drop:
            chans.drop -= 1
            channel.add(data)  # history only
            return
        if chans.stalled:
            _, pub = channel.add(data)
            chans.held.append((channel.name, channel.push_prefix + pub + b"}}"))
            return
        self._hub.publish_on(channel, data)

    def _remember(self, instrument_id: str, channel: Channel) -> None:
        states = self._states[instrument_id]
        states[(channel.epoch, channel.offset)] = self._book(instrument_id).snapshot()
        while len(states) > self._keep:
            states.popitem(last=False)

    # ---- what tests and REST read -------------------------------------------------------

    def book_channel(self, instrument_id: str) -> Channel:
        return self._channels_of(instrument_id).book

    def book_at(
        self, instrument_id: str, epoch: str, offset: int
    ) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]] | None:
        """(bids, asks) right after publication ``offset`` of ``epoch`` (None: not kept)."""
        return self._states[instrument_id].get((epoch, offset))

    def book(self, instrument_id: str) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        """The true book now: (bids, asks), exact."""
        return self._book(instrument_id).snapshot()

    def order_book(self, instrument_id: str, depth: int = 10) -> dict[str, Any]:
        book = self._book(instrument_id)
        inst = book.inst
        return {
            "updateType": "SNAPSHOT",
            "instrumentId": inst.instrument_id,
            "venue": inst.venue,
            "symbol": inst.symbol,
            "orderBookType": "L2",
            "columns": ["price", "quantity"],
            "bids": book.rows(book.bids, True, depth),
            "asks": book.rows(book.asks, False, depth),
            "timestamp": book.timestamp,
        }

    def ticker(self, instrument_id: str) -> dict[str, Any]:
        book = self._book(instrument_id)
        inst = book.inst
        bid, ask = max(book.bids), min(book.asks)
        return {
            "instrumentId": inst.instrument_id,
            "venue": inst.venue,
            "symbol": inst.symbol,
            "lastPrice": book.price(book.last_trade),
            "bidPrice": book.price(bid),
            "bidQuantity": book.qty(book.bids[bid]),
            "askPrice": book.price(ask),
            "askQuantity": book.qty(book.asks[ask]),
            "priceChangePercent": "0",
            "timestamp": book.timestamp,
        }

    def kline(self, instrument_id: str, *, last_only: bool = False) -> dict[str, Any]:
        """The forming 1m candle (and, unless ``last_only``, the previous closed one)."""
        book = self._book(instrument_id)
        inst = book.inst
        now = book.timestamp or int(time.time() * 1000)
        open_time = now - now % _KLINE_MS
        price = book.price(book.last_trade)
        candles = [[open_time, price, price, price, price, book.qty(book.volume)]]
        if not last_only:
            before = [open_time - _KLINE_MS, price, price, price, price, "0"]
            candles.insert(0, before)
        return {
            "instrumentId": inst.instrument_id,
            "venue": inst.venue,
            "symbol": inst.symbol,
            "interval": "1m",
            "candles": candles,
            "isClosed": False,
            "timestamp": now,
        }

    # ---- REST handlers (query -> the envelope's data) -------------------------------------

    def routes(self) -> dict[str, Callable[[Any], bytes]]:
        return {
            "/api/v3/market/instrument/list": self._rest_instruments,
            "/api/v3/market/venue/list": self._rest_venues,
            "/api/v3/market/orderBook/get": self._rest_book,
            "/api/v3/market/orderBook/list": self._rest_books,
            "/api/v3/market/ticker/get": self._rest_ticker,
            "/api/v3/market/ticker/list": self._rest_tickers,
            "/api/v3/market/kline/get": self._rest_kline,
        }

    def _known(self, instrument_id: object) -> str:
        if not isinstance(instrument_id, str) or instrument_id not in self._books:
            raise ApiFailure(404, ERRNO_NOT_FOUND, f"instrument {instrument_id} not found")
        return instrument_id

    @staticmethod
    def _depth(query: Any) -> int:
        text = query.get("depth", "10")
        if not text.isdigit() or not 1 <= int(text) <= 1000:
            raise ApiFailure(400, ERRNO_INVALID_REQUEST, "depth must be 1..1000")
        return int(text)

    def _rest_instruments(self, query: Any) -> bytes:
        venue = query.get("venue")
        offset = int(query.get("offset", "0") or 0)
        limit = int(query.get("limit", "50") or 50)
        found = [i for i in self.instruments.values() if venue is None or i.venue == venue]
        return _encode(found[offset : offset + limit])

    def _rest_venues(self, query: Any) -> bytes:
        venues = sorted({i.venue for i in self.instruments.values() if i.venue})
        return _encode([{"venue": v, "status": "ONLINE"} for v in venues])

    def _rest_book(self, query: Any) -> bytes:
        return _encode(self.order_book(self._known(query.get("instrumentId")), self._depth(query)))

    def _rest_books(self, query: Any) -> bytes:
        depth = self._depth(query)
        ids = [self._known(i) for i in query.getall("instrumentIds", [])]
        return _encode([self.order_book(i, depth) for i in ids])

    def _rest_ticker(self, query: Any) -> bytes:
        return _encode(self.ticker(self._known(query.get("instrumentId"))))

    def _rest_tickers(self, query: Any) -> bytes:
        ids = [self._known(i) for i in query.getall("instrumentIds", [])] or list(self._books)
        return _encode([self.ticker(i) for i in ids])

    def _rest_kline(self, query: Any) -> bytes:
        if query.get("interval") != "1m":
            raise ApiFailure(400, ERRNO_INVALID_REQUEST, "the simulator has 1m candles only")
        return _encode(self.kline(self._known(query.get("instrumentId"))))
