"""The client's market data methods (a mixin of CadenzaClient) and the object that owns their state.

:class:`Market` owns the REST calls, the instrument cache and the live
views of one client; :class:`MarketMethods` is what
:class:`~cadenza_async.CadenzaClient` gains from it (``instruments``,
``instrument``, ``get_order_book``, ``order_book``, ...). The rule check of
the submit paths (:meth:`Market.check_orders`) uses only instruments
already cached: it never sends a request.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import msgspec

from ..http import HttpApi
from ..models import NewOrder
from ..stream import OrderStream
from ._rest import MarketRest
from .instruments import InstrumentCache
from .live import LiveKlines, LiveOrderBook, LiveTicker, MarketViews
from .models import Candle, Instrument, MarketVenue, OrderBook, Ticker
from .rules import InstrumentRuleError

__all__ = ["Market", "MarketMethods"]


class Market:
    """One client's market data: REST, the instrument cache, the live views."""

    def __init__(
        self,
        http: HttpApi,
        stream: OrderStream,
        ensure_stream: Callable[[], Awaitable[None]],
        request_timeout: float,
    ) -> None:
        self.rest = MarketRest(http, request_timeout)
        self.instruments = InstrumentCache(self.rest)
        self.views = MarketViews(stream, self.rest, ensure_stream)
        stream.observe(None, self.instruments)

    async def aclose(self) -> None:
        await self.views.aclose()

    def check_order(
        self,
        instrument_id: object,
        order_type: object,
        quantity: object,
        limit_price: object = None,
        stop_price: object = None,
        time_in_force: object = None,
    ) -> None:
        """Check an order against its instrument's rules if the instrument is cached (no I/O).

        Raises :class:`InstrumentRuleError` naming the rule and the nearest
        valid values. Fields of the wrong type are left to the submit's own
        checks (nothing is checked here then).
        """
        inst = self.instruments.cached(instrument_id) if isinstance(instrument_id, str) else None
        if inst is None or not isinstance(order_type, str):
            return
        if not all(
            isinstance(v, (str, Decimal)) for v in (quantity, limit_price or "1", stop_price or "1")
        ):
            return
        if time_in_force is not None and not isinstance(time_in_force, str):
            return
        try:
            inst.check_order(
                order_type=order_type,
                quantity=quantity,  # type: ignore[arg-type]  # checked above
                limit_price=limit_price,  # type: ignore[arg-type]
                stop_price=stop_price,  # type: ignore[arg-type]
                time_in_force=time_in_force,
            )
        except InstrumentRuleError:
            raise
        except (TypeError, ValueError):
            return  # malformed: the submit's own checks say how

    def check_new_order(self, order: NewOrder) -> None:
        """:meth:`check_order` of a checked :class:`NewOrder`."""
        self.check_order(
            order.instrument_id,
            order.order_type,
            order.quantity,
            order.limit_price,
            order.stop_price,
            order.time_in_force,
        )

    def check_orders(self, orders: Iterable[object]) -> None:
        """:meth:`check_order` for each order of a bulk; the error names the order's index."""
        for index, item in enumerate(orders):
            fields: Mapping[str, Any]
            if isinstance(item, NewOrder):
                fields = msgspec.structs.asdict(item)
            elif isinstance(item, Mapping):
                fields = item
            else:
                continue
            try:
                self.check_order(
                    fields.get("instrument_id"),
                    fields.get("order_type"),
                    fields.get("quantity"),
                    fields.get("limit_price"),
                    fields.get("stop_price"),
                    fields.get("time_in_force"),
                )
            except InstrumentRuleError as exc:
                exc.message = f"order {index}: {exc.message}"
                exc.args = (exc.message,)
                raise


def _stale_after(value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"stale_after must be a positive number of seconds, not {value!r}")
    return float(value)


class MarketMethods:
    """Market data methods of :class:`~cadenza_async.CadenzaClient` (see ``docs/guides/market-data.md``)."""

    _market: Market

    def _check_open(self) -> None:  # provided by the client
        raise NotImplementedError

    async def instruments(
        self, venue: str | None = None, *, refresh: bool = False, timeout: float | None = None
    ) -> list[Instrument]:
        """Every instrument (of ``venue``) with its rules; cached by the client.

        Loaded on first use and then served from the cache; ``refresh=True``
        reads them again (an ``event.instrument.updated``, if the server sends
        one, updates the cache too). Once an instrument is cached,
        ``submit_and_confirm``, ``replace_and_confirm`` and ``submit_many``
        refuse an order that breaks its rules before sending anything
        (:class:`~cadenza_async.market.InstrumentRuleError`).
        """
        self._check_open()
        return await self._market.instruments.instruments(venue, refresh=refresh, timeout=timeout)

    async def instrument(
        self, instrument_id: str, *, refresh: bool = False, timeout: float | None = None
    ) -> Instrument:
        """One instrument with its rules (cached; its venue's list is read when it is not).

        Raises :class:`~cadenza_async.market.instruments.InstrumentNotFoundError`
        when the venue has no such instrument.
        """
        self._check_open()
        return await self._market.instruments.instrument(
            instrument_id, refresh=refresh, timeout=timeout
        )

    async def get_venues(self, *, timeout: float | None = None) -> list[MarketVenue]:
        """The venues and their status."""
        self._check_open()
        return await self._market.rest.venues(timeout=timeout)

    async def get_order_book(
        self, instrument_id: str, depth: int = 10, *, timeout: float | None = None
    ) -> OrderBook:
        """A REST snapshot of one book (``depth`` levels a side, 1 to 1000)."""
        self._check_open()
        return await self._market.rest.order_book(instrument_id, depth, timeout=timeout)

    async def get_order_books(
        self, instrument_ids: Iterable[str], depth: int = 10, *, timeout: float | None = None
    ) -> list[OrderBook]:
        """REST snapshots of several books in one request."""
        self._check_open()
        return await self._market.rest.order_books(instrument_ids, depth, timeout=timeout)

    async def get_ticker(self, instrument_id: str, *, timeout: float | None = None) -> Ticker:
        """The current ticker of one instrument."""
        self._check_open()
        return await self._market.rest.ticker(instrument_id, timeout=timeout)

    async def get_tickers(
        self, instrument_ids: Iterable[str] | None = None, *, timeout: float | None = None
    ) -> list[Ticker]:
        """Tickers of several instruments (all the server lists when None)."""
        self._check_open()
        return await self._market.rest.tickers(instrument_ids, timeout=timeout)

    async def get_klines(
        self,
        instrument_id: str,
        interval: str = "1m",
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> list[Candle]:
        """Candles, oldest first (``start``/``end`` Unix ms, inclusive)."""
        self._check_open()
        return await self._market.rest.klines(
            instrument_id, interval, start=start, end=end, limit=limit, timeout=timeout
        )

    def order_book(
        self, instrument_id: str, *, stale_after: float = 10.0, depth: int = 1000
    ) -> LiveOrderBook:
        """A live local book: ``async with client.order_book(id) as book: await book.wait_ready()``.

        Subscribed on the client's one WebSocket; books of the same
        instrument share one subscription, released when the last holder
        leaves. ``stale_after`` (seconds of silence before :attr:`stale`)
        and ``depth`` (levels a side of its REST snapshots) apply to the
        first holder's book.
        """
        self._check_open()
        return self._market.views.book(
            instrument_id, stale_after=_stale_after(stale_after), depth=_depth(depth)
        )

    def ticker(self, instrument_id: str, *, stale_after: float = 30.0) -> LiveTicker:
        """A live ticker: ``async with client.ticker(id) as t: await t.wait_ready(); t.latest``."""
        self._check_open()
        return self._market.views.ticker(instrument_id, stale_after=_stale_after(stale_after))

    def klines(
        self, instrument_id: str, interval: str = "1m", *, stale_after: float = math.inf
    ) -> LiveKlines:
        """Live candles: ``async with client.klines(id, "1m") as k: k.candles(10)``."""
        self._check_open()
        if stale_after != math.inf:
            stale_after = _stale_after(stale_after)
        return self._market.views.klines(instrument_id, interval, stale_after=stale_after)


def _depth(depth: object) -> int:
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= 1000:
        raise ValueError(f"depth must be an int from 1 to 1000, not {depth!r}")
    return depth
