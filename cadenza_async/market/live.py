"""Live market views on the client's one WebSocket: order books, tickers and candles.

One idea, written once: a view of one channel, kept current from its
publications and healed from a REST snapshot whenever continuity on it is
not proven (:class:`_ChannelView`). The book's rules are the sans-I/O
:class:`~cadenza_async.protocol.book.BookSync`; the ticker's and the
candles' are simple (the latest ticker wins; a candle is upserted by its
open time). Every holder of the same channel shares one view and one
subscription (:class:`MarketViews`); when the last holder leaves, the
channel is unobserved and released (unsubscribed).

Everything runs on the event loop: publications are applied synchronously
in the stream's reader, so a book is current as soon as its frame is read.
The REST fetches run in tasks owned by :class:`MarketViews`, one per view
at a time, each bounded by the request timeout, retried with capped
backoff while the view is held and still unproven.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import AsyncGenerator, Awaitable, Callable
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, Generic, TypeVar

import msgspec

from .._tasks import TaskOwner
from ..errors import CadenzaError, StreamError
from ..protocol.book import BookChange, BookSync, Level
from ..protocol.centrifugo import StreamPosition
from ..stream import OrderStream, StreamRpcError
from ._rest import KLINE_INTERVALS, MarketRest, split_instrument_id
from .models import (
    PRICE_UNIQUE_TYPES,
    Candle,
    Ticker,
    candle_of,
    decode_book_update,
    decode_ticker,
)
from .models import decode_kline as _decode_kline

__all__ = [
    "LiveKlines",
    "LiveOrderBook",
    "LiveTicker",
    "MarketViews",
    "book_channel",
    "kline_channel",
    "ticker_channel",
]

log = logging.getLogger("cadenza_async.market")

_BACKOFF_MIN: Final = 0.05
_BACKOFF_MAX: Final = 5.0
#: Items an iterator of changes holds for a slow reader before it skips to a fresh snapshot.
CHANGES_BUFFER: Final = 10_000

T = TypeVar("T")
V = TypeVar("V", bound="_ChannelView[Any]")


def book_channel(instrument_id: str) -> str:
    """``market:orderbook:{venue}:{symbol}`` for ``VENUE:SYMBOL``."""
    venue, symbol = split_instrument_id(instrument_id)
    return f"market:orderbook:{venue}:{symbol}"


def ticker_channel(instrument_id: str) -> str:
    venue, symbol = split_instrument_id(instrument_id)
    return f"market:ticker:{venue}:{symbol}"


def kline_channel(instrument_id: str, interval: str) -> str:
    venue, symbol = split_instrument_id(instrument_id)
    if interval not in KLINE_INTERVALS:
        raise ValueError(f"interval must be one of {sorted(KLINE_INTERVALS)}, not {interval!r}")
    return f"market:kline:{venue}:{symbol}:{interval}"


# --------------------------------------------------------------------------- the shared part


class _Feed(Generic[T]):
    """One reader's queue of items; past its bound it asks for a fresh start instead."""

    __slots__ = ("behind", "items", "waiter")

    def __init__(self) -> None:
        self.items: collections.deque[T] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.behind = False

    def put(self, item: T) -> None:
        if len(self.items) >= CHANGES_BUFFER:
            self.items.clear()
            self.behind = True
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _ChannelView(Generic[T]):
    """One channel's live state, shared by its holders; a :class:`ChannelObserver` of the stream.

    Subclasses decode publications (:meth:`_apply`), say when the state is
    unproven (:meth:`_needs_heal`) and heal it from REST (:meth:`_heal`).
    """

    def __init__(self, views: MarketViews, channel: str, instrument_id: str) -> None:
        self.views = views
        self.channel = channel
        self.instrument_id = instrument_id
        self.refs = 0
        self.is_live = False
        self.error: CadenzaError | None = None
        self.heard_at: float | None = None
        self._time = views.loop.time  # (looked up once: called for every publication)
        self.since = self._time()
        self.bad_publications = 0
        self.stale_after = math.inf
        self._healing: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._feeds: set[_Feed[T]] = set()

    # -- ChannelObserver ---------------------------------------------------------------

    def publication(self, channel: str, data: msgspec.Raw, offset: int | None) -> None:
        now = self._time()
        self.heard_at = now
        try:
            self._apply(data, offset, now)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, ArithmeticError) as exc:
            self.bad_publications += 1
            log.warning("%s: a publication did not decode (%s); healing from REST", channel, exc)
            self._lost("bad_data")
        self._after_input()

    def gap(self, channel: str, reason: str) -> None:
        self._lost(reason)
        self._after_input()

    def live(self, channel: str, position: StreamPosition | None) -> None:
        self.is_live = position is not None
        self._went_live(position)
        self._after_input()

    def refused(self, channel: str, error: StreamRpcError) -> None:
        self.error = error
        self.is_live = False
        self._wake()

    # -- for subclasses ----------------------------------------------------------------

    def _apply(self, data: msgspec.Raw, offset: int | None, now: float) -> None:
        raise NotImplementedError

    def _lost(self, reason: str) -> None:
        raise NotImplementedError

    def _went_live(self, position: StreamPosition | None) -> None:
        return

    def _needs_heal(self) -> bool:
        raise NotImplementedError

    async def _heal(self) -> None:
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        raise NotImplementedError

    # -- readiness, feeds, healing --------------------------------------------------------

    def _after_input(self) -> None:
        if self._waiters and self.ready:
            self._wake()
        if (
            self.is_live
            and self._healing is None
            and self.refs > 0
            and not self.views.closed
            and self._needs_heal()
        ):
            self._healing = self.views.tasks.spawn(self._heal_loop(), f"heal {self.channel}")

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _emit(self, item: T) -> None:
        for feed in self._feeds:
            feed.put(item)

    async def _heal_loop(self) -> None:
        delay = _BACKOFF_MIN
        try:
            while self.refs > 0 and self.is_live and self._needs_heal():
                try:
                    await self._heal()
                except CadenzaError as exc:
                    log.warning("%s: REST snapshot failed (%s); retrying", self.channel, exc)
                else:
                    if not self._needs_heal():
                        break
                await asyncio.sleep(delay)
                delay = min(_BACKOFF_MAX, delay * 2)
        finally:
            self._healing = None
            self._after_input_soon()

    def _after_input_soon(self) -> None:
        if self.refs > 0 and not self.views.closed and not self.views.tasks_closed:
            self.views.loop.call_soon(self._after_input)

    async def wait_ready(self, timeout: float) -> None:
        """Return once :attr:`ready`; raise ``TimeoutError`` (or the refusal) otherwise."""
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a positive number, not {timeout!r}")
        loop = self.views.loop
        deadline = loop.time() + timeout
        while not self.ready:
            self._check_failed()
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"{self.channel} not ready within {timeout} s")
            waiter = loop.create_future()
            self._waiters.append(waiter)
            change = self.views.stream.changed()
            try:
                await asyncio.wait(
                    (waiter, change), timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiter.cancel()
        self._check_failed()

    def _check_failed(self) -> None:
        if self.error is not None:
            raise self.error
        failure = self.views.stream.failure
        if failure is not None:
            raise StreamError(f"the stream stopped: {failure}")

    def stale_now(self) -> bool:
        last = self.heard_at if self.heard_at is not None else self.since
        return self.views.loop.time() - last > self.stale_after

    async def items(self) -> AsyncGenerator[T, None]:
        """Every item applied from now on, in order; see the handle's ``changes()``."""
        feed: _Feed[T] = _Feed()
        self._feeds.add(feed)
        try:
            while True:
                while feed.items:
                    if feed.behind:
                        feed.behind = False
                        yield self._restart_item()
                        continue
                    yield feed.items.popleft()
                if self.refs == 0:
                    return
                feed.waiter = self.views.loop.create_future()
                try:
                    await feed.waiter
                finally:
                    feed.waiter = None
        finally:
            self._feeds.discard(feed)

    def _restart_item(self) -> T:
        raise NotImplementedError

    def closed(self) -> None:
        """The last holder left: end the readers."""
        for feed in self._feeds:
            if feed.waiter is not None and not feed.waiter.done():
                feed.waiter.set_result(None)
        self._wake()


# --------------------------------------------------------------------------- book


class _BookView(_ChannelView[BookChange]):
    def __init__(self, views: MarketViews, channel: str, instrument_id: str) -> None:
        super().__init__(views, channel, instrument_id)
        self.sync = BookSync()
        self.depth = 1000
        self.unsupported_type: str | None = None

    @property
    def ready(self) -> bool:
        return self.sync.usable

    def _apply(self, data: msgspec.Raw, offset: int | None, now: float) -> None:
        update, kind, bids, asks, timestamp = decode_book_update(data)
        if kind not in PRICE_UNIQUE_TYPES and update != "SNAPSHOT":
            self.unsupported_type = kind
            update = "DELTA"  # rows not one per price: no per-level rule applies
        sync = self.sync
        if not self._feeds:  # nobody iterates the changes: nothing to collect
            sync.publication(update, bids, asks, timestamp, offset, now)
            return
        changes: list[BookChange] = []
        sync.changes = changes
        sync.publication(update, bids, asks, timestamp, offset, now)
        sync.changes = None
        for change in changes:
            self._emit(change)

    def _lost(self, reason: str) -> None:
        self.sync.gap(reason)

    def _went_live(self, position: StreamPosition | None) -> None:
        if position is None:
            self.sync.set_not_live()
        else:
            self.sync.set_live(position.epoch, position.offset)

    def _needs_heal(self) -> bool:
        return self.sync.snapshot_wanted

    async def _heal(self) -> None:
        sync = self.sync
        token = sync.take_snapshot_request()
        try:
            snap = await self.views.rest.order_book(self.instrument_id, self.depth)
        except BaseException:
            sync.snapshot_failed(token)
            raise
        if self._feeds:
            sync.changes = []
        sync.rest_snapshot(token, snap.bids, snap.asks, snap.timestamp, self.views.loop.time())
        for change in sync.changes or ():
            self._emit(change)
        sync.changes = None

    def _restart_item(self) -> BookChange:
        sync = self.sync
        return BookChange(
            "snapshot", sync.bids_rows(), sync.asks_rows(), sync.timestamp or 0, sync.last_offset
        )


class _Handle(Generic[V]):
    """An ``async with`` holder of a shared view (what the client's methods return)."""

    def __init__(self, views: MarketViews, make: Callable[[], V], channel: str) -> None:
        self._views = views
        self._make = make
        self._channel = channel
        self._view: V | None = None

    async def __aenter__(self: Any) -> Any:
        self._view = await self._views.acquire(self._channel, self._make)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        view, self._view = self._view, None
        if view is not None:
            self._views.release(view)

    @property
    def view(self) -> V:
        if self._view is None:
            raise RuntimeError("use the live view inside its `async with` block")
        return self._view

    @property
    def channel(self) -> str:
        return self._channel

    @property
    def live(self) -> bool:
        """True while the channel is subscribed on the open WebSocket."""
        return self.view.is_live

    @property
    def stale(self) -> bool:
        """True when nothing was heard on the channel for ``stale_after`` seconds."""
        return self.view.stale_now()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the view is usable; ``TimeoutError`` after ``timeout`` seconds.

        Raises the server's :class:`~cadenza_async.errors.StreamRpcError` when
        it refused the channel, :class:`~cadenza_async.errors.StreamError` when
        the stream stopped for good.
        """
        await self.view.wait_ready(timeout)


class LiveOrderBook(_Handle[_BookView]):
    """A local order book kept current from ``market:orderbook:{venue}:{symbol}``.

    ``async with client.order_book("BINANCE:BTC/USDT") as book:`` then
    ``await book.wait_ready()``. Reads are synchronous and exact:
    :attr:`best_bid`, :attr:`best_ask`, :meth:`bids`, :meth:`asks`,
    :attr:`spread`, :attr:`mid`. Trust them only while :attr:`usable`
    (continuity proven and the channel live) and not :attr:`stale`: the
    book heals itself from a REST snapshot whenever it cannot prove
    continuity (see :mod:`cadenza_async.protocol.book`), and
    :attr:`resyncs` counts why.
    """

    @property
    def instrument_id(self) -> str:
        return self.view.instrument_id

    @property
    def usable(self) -> bool:
        """True while every level is proven by an unbroken stream and the channel is live."""
        return self.view.sync.usable

    @property
    def state(self) -> str:
        """``"loading"``, ``"synced"`` or ``"resyncing"`` (see :mod:`cadenza_async.protocol.book`)."""
        return self.view.sync.state

    @property
    def resyncs(self) -> dict[str, int]:
        """Resyncs so far by reason (``gap``, ``not_recovered``, ``epoch``, ``delta``, ``crossed``, ...)."""
        return dict(self.view.sync.resyncs)

    @property
    def best_bid(self) -> Level | None:
        return self.view.sync.bids.best()

    @property
    def best_ask(self) -> Level | None:
        return self.view.sync.asks.best()

    def bids(self, n: int | None = None) -> list[Level]:
        """The ``n`` best bids (all when None), best first."""
        return self.view.sync.bids.top(n)

    def asks(self, n: int | None = None) -> list[Level]:
        """The ``n`` best asks (all when None), best first."""
        return self.view.sync.asks.top(n)

    @property
    def spread(self) -> Decimal | None:
        bid, ask = self.view.sync.bids.best_price(), self.view.sync.asks.best_price()
        return None if bid is None or ask is None else ask - bid

    @property
    def mid(self) -> Decimal | None:
        bid, ask = self.view.sync.bids.best_price(), self.view.sync.asks.best_price()
        return None if bid is None or ask is None else (bid + ask) / 2

    @property
    def timestamp(self) -> int | None:
        """The wire time (Unix ms) of the last update applied."""
        return self.view.sync.timestamp

    @property
    def updated_at(self) -> float | None:
        """When (event-loop time) the last update was applied."""
        return self.view.sync.updated_at

    @property
    def stats(self) -> dict[str, int]:
        sync = self.view.sync
        return {
            "diffs_applied": sync.diffs_applied,
            "diffs_dropped": sync.diffs_dropped,
            "snapshots_applied": sync.snapshots_applied,
            "snapshots_refused": sync.snapshots_refused,
            "buffer_overflows": sync.buffer_overflows,
            "bad_publications": self.view.bad_publications,
        }

    def changes(self) -> AsyncGenerator[BookChange, None]:
        """Every update applied from now on: ``"snapshot"`` (the whole book) or ``"diff"`` rows.

        A reader more than ``CHANGES_BUFFER`` changes behind gets the whole
        book as one ``"snapshot"`` change instead of what it missed. Ends
        when the last holder of the book leaves.
        """
        return self.view.items()


# --------------------------------------------------------------------------- ticker


class _TickerView(_ChannelView[Ticker]):
    def __init__(self, views: MarketViews, channel: str, instrument_id: str) -> None:
        super().__init__(views, channel, instrument_id)
        self.latest: Ticker | None = None
        self.unproven = True

    @property
    def ready(self) -> bool:
        return self.latest is not None

    def _apply(self, data: msgspec.Raw, offset: int | None, now: float) -> None:
        ticker = decode_ticker(data)
        self.latest = ticker
        self.unproven = False
        self._emit(ticker)

    def _lost(self, reason: str) -> None:
        self.unproven = True

    def _needs_heal(self) -> bool:
        return self.unproven

    async def _heal(self) -> None:
        ticker = await self.views.rest.ticker(self.instrument_id)
        if self.unproven:
            self.latest = ticker
            self.unproven = False
            self._emit(ticker)

    def _restart_item(self) -> Ticker:
        assert self.latest is not None
        return self.latest


class LiveTicker(_Handle[_TickerView]):
    """The latest ticker of an instrument, from REST and then ``market:ticker:{venue}:{symbol}``."""

    @property
    def latest(self) -> Ticker | None:
        return self.view.latest

    def updates(self) -> AsyncGenerator[Ticker, None]:
        """Every ticker from now on (ends when the last holder leaves)."""
        return self.view.items()


# --------------------------------------------------------------------------- candles


class _KlineView(_ChannelView[Candle]):
    def __init__(self, views: MarketViews, channel: str, instrument_id: str, interval: str) -> None:
        super().__init__(views, channel, instrument_id)
        self.interval = interval
        self.candles: dict[int, Candle] = {}
        self.keep = 1000
        self.unproven = True

    @property
    def ready(self) -> bool:
        return not self.unproven

    def _apply(self, data: msgspec.Raw, offset: int | None, now: float) -> None:
        kline = _decode_kline(data)
        rows = kline.candles
        for i, row in enumerate(rows):
            last = i == len(rows) - 1
            self._upsert(candle_of(row, kline.is_closed or not last))

    def _upsert(self, candle: Candle) -> None:
        candles = self.candles
        if candles and candle.open_time > max(candles):
            # a later candle exists: the one before it is final
            newest = candles[max(candles)]
            if not newest.closed:
                candles[newest.open_time] = msgspec.structs.replace(newest, closed=True)
        candles[candle.open_time] = candle
        if len(candles) > self.keep:
            for key in sorted(candles)[: len(candles) - self.keep]:
                del candles[key]
        self._emit(candle)

    def _lost(self, reason: str) -> None:
        self.unproven = True

    def _needs_heal(self) -> bool:
        return self.unproven

    async def _heal(self) -> None:
        candles = await self.views.rest.klines(self.instrument_id, self.interval)
        for candle in candles:
            self._upsert(candle)
        self.unproven = False

    def _restart_item(self) -> Candle:
        return self.candles[max(self.candles)]


class LiveKlines(_Handle[_KlineView]):
    """Candles of an instrument, from REST and then ``market:kline:{venue}:{symbol}:{interval}``.

    The last candle is upserted by its open time; a candle is final
    (``closed``) once a later one exists or the server says so.
    """

    def candles(self, n: int | None = None) -> list[Candle]:
        """The last ``n`` candles (all kept when None), oldest first."""
        candles = self.view.candles
        keys = sorted(candles)
        if n is not None:
            keys = keys[-n:] if n > 0 else []
        return [candles[k] for k in keys]

    @property
    def last(self) -> Candle | None:
        candles = self.view.candles
        return candles[max(candles)] if candles else None

    def updates(self) -> AsyncGenerator[Candle, None]:
        """Every candle upserted from now on (ends when the last holder leaves)."""
        return self.view.items()


# --------------------------------------------------------------------------- the owner


class MarketViews:
    """Every live market view of one client: one per channel, shared, released when unheld."""

    def __init__(
        self,
        stream: OrderStream,
        rest: MarketRest,
        ensure_stream: Callable[[], Awaitable[None]],
    ) -> None:
        self.stream = stream
        self.rest = rest
        self._ensure_stream = ensure_stream
        self._views: dict[str, _ChannelView[Any]] = {}
        self.tasks = TaskOwner(log)
        self.closed = False
        self.tasks_closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def __len__(self) -> int:
        return len(self._views)

    def book(self, instrument_id: str, *, stale_after: float, depth: int) -> LiveOrderBook:
        channel = book_channel(instrument_id)

        def make() -> _BookView:
            view = _BookView(self, channel, instrument_id)
            view.stale_after = stale_after
            view.depth = depth
            return view

        return LiveOrderBook(self, make, channel)

    def ticker(self, instrument_id: str, *, stale_after: float) -> LiveTicker:
        channel = ticker_channel(instrument_id)

        def make() -> _TickerView:
            view = _TickerView(self, channel, instrument_id)
            view.stale_after = stale_after
            return view

        return LiveTicker(self, make, channel)

    def klines(self, instrument_id: str, interval: str, *, stale_after: float) -> LiveKlines:
        channel = kline_channel(instrument_id, interval)

        def make() -> _KlineView:
            view = _KlineView(self, channel, instrument_id, interval)
            view.stale_after = stale_after
            return view

        return LiveKlines(self, make, channel)

    async def acquire(self, channel: str, make: Callable[[], V]) -> V:
        """The shared view of ``channel`` (made, observed and subscribed if new), held once more."""
        if self.closed:
            from ..errors import ClientClosedError

            raise ClientClosedError("the client is closed")
        await self._ensure_stream()
        view = self._views.get(channel)
        if view is None:
            view = make()
            self._views[channel] = view
            self.stream.observe(channel, view)
            try:
                self.stream.want(channel)
            except BaseException:
                self.stream.unobserve(channel, view)
                del self._views[channel]
                raise
            view.refs += 1  # held before it hears it is live: only a held view loads
            if self.stream.is_live(channel):  # already subscribed (another owner)
                position = self.stream.positions.get(channel)
                view.live(channel, None if position is None else StreamPosition(*position))
        else:
            view.refs += 1
        return view  # type: ignore[return-value]  # the channel names its view's kind

    def release(self, view: _ChannelView[Any]) -> None:
        """One holder less; the last one unobserves and unsubscribes the channel."""
        view.refs -= 1
        if view.refs > 0:
            return
        if self._views.get(view.channel) is view:
            del self._views[view.channel]
        self.stream.unobserve(view.channel, view)
        if not self.closed:
            self._release_channel(view.channel)
        healing = view._healing
        if healing is not None:
            healing.cancel()
        view.closed()

    def _release_channel(self, channel: str) -> None:
        """The last holder of ``channel``'s view left: stop wanting the channel."""
        self.stream.release(channel)

    async def aclose(self) -> None:
        self.closed = True
        for view in list(self._views.values()):
            self.stream.unobserve(view.channel, view)
            view.refs = 0
            view.closed()
        self._views.clear()
        self.tasks_closed = True
        await self.tasks.aclose()
