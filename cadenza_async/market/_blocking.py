"""The market data methods of BlockingCadenzaClient, and its live views for threads.

A live view (``with client.order_book(id) as book:``) is entered and left
on the client's event loop; every read (``book.best_bid``, ``book.bids(5)``,
``book.usable``) runs there too, so a thread never sees a book half-way
through an update. ``wait_ready`` blocks; ``changes()``/``updates()`` are
blocking iterators.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from ._client import MarketMethods
from .live import LiveKlines, LiveOrderBook, LiveTicker
from .models import Candle, Instrument, MarketVenue, OrderBook, Ticker

__all__ = ["BlockingLiveView", "BlockingMarketMethods"]

T = TypeVar("T")
_ITERATORS = frozenset({"changes", "updates"})


class BlockingLiveView:
    """A live view used from threads: the same names, each read done on the client's loop."""

    def __init__(self, owner: BlockingMarketMethods, make: Callable[[], Any]) -> None:
        self._owner = owner
        self._make = make
        self._view: Any = None

    def __enter__(self) -> BlockingLiveView:
        view = self._owner._run_sync(self._make)
        self._owner._run(view.__aenter__)
        self._view = view
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        view, self._view = self._view, None
        if view is not None:
            self._owner._run(lambda: view.__aexit__(None, None, None))

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the view is usable (see the async view's ``wait_ready``)."""
        view = self._live()
        self._owner._run(lambda: view.wait_ready(timeout))

    def _live(self) -> Any:
        if self._view is None:
            raise RuntimeError("use the live view inside its `with` block")
        return self._view

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        view = self._live()
        if name in _ITERATORS:
            make: Callable[[], AsyncIterator[Any]] = getattr(view, name)
            return lambda: self._owner._iterate(make)
        value = self._owner._run_sync(lambda: getattr(view, name))
        if callable(value):
            method = value
            return lambda *a, **k: self._owner._run_sync(lambda: method(*a, **k))
        return value


class BlockingMarketMethods:
    """Market data on :class:`~cadenza_async.BlockingCadenzaClient`: the async names, no await."""

    _client: MarketMethods

    def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        raise NotImplementedError

    def _run_sync(self, call: Callable[[], T]) -> T:
        raise NotImplementedError

    def _iterate(self, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        raise NotImplementedError

    def instruments(
        self, venue: str | None = None, *, refresh: bool = False, timeout: float | None = None
    ) -> list[Instrument]:
        client = self._client
        return self._run(lambda: client.instruments(venue, refresh=refresh, timeout=timeout))

    def instrument(
        self, instrument_id: str, *, refresh: bool = False, timeout: float | None = None
    ) -> Instrument:
        client = self._client
        return self._run(lambda: client.instrument(instrument_id, refresh=refresh, timeout=timeout))

    def get_venues(self, *, timeout: float | None = None) -> list[MarketVenue]:
        client = self._client
        return self._run(lambda: client.get_venues(timeout=timeout))

    def get_order_book(
        self, instrument_id: str, depth: int = 10, *, timeout: float | None = None
    ) -> OrderBook:
        client = self._client
        return self._run(lambda: client.get_order_book(instrument_id, depth, timeout=timeout))

    def get_order_books(
        self, instrument_ids: Iterable[str], depth: int = 10, *, timeout: float | None = None
    ) -> list[OrderBook]:
        client = self._client
        ids = list(instrument_ids)
        return self._run(lambda: client.get_order_books(ids, depth, timeout=timeout))

    def get_ticker(self, instrument_id: str, *, timeout: float | None = None) -> Ticker:
        client = self._client
        return self._run(lambda: client.get_ticker(instrument_id, timeout=timeout))

    def get_tickers(
        self, instrument_ids: Iterable[str] | None = None, *, timeout: float | None = None
    ) -> list[Ticker]:
        client = self._client
        ids = None if instrument_ids is None else list(instrument_ids)
        return self._run(lambda: client.get_tickers(ids, timeout=timeout))

    def get_klines(self, instrument_id: str, interval: str = "1m", **options: Any) -> list[Candle]:
        client = self._client
        return self._run(lambda: client.get_klines(instrument_id, interval, **options))

    def order_book(self, instrument_id: str, **options: Any) -> BlockingLiveView:
        """``with client.order_book(id) as book: book.wait_ready(); book.best_bid``."""
        client = self._client

        def make() -> LiveOrderBook:
            return client.order_book(instrument_id, **options)

        return BlockingLiveView(self, make)

    def ticker(self, instrument_id: str, **options: Any) -> BlockingLiveView:
        client = self._client

        def make() -> LiveTicker:
            return client.ticker(instrument_id, **options)

        return BlockingLiveView(self, make)

    def klines(self, instrument_id: str, interval: str = "1m", **options: Any) -> BlockingLiveView:
        client = self._client

        def make() -> LiveKlines:
            return client.klines(instrument_id, interval, **options)

        return BlockingLiveView(self, make)
