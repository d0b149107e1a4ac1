"""MarketRest: the market data REST calls, checked before any I/O and decoded into typed models.

Each call has one deadline (``timeout``, default ``timeouts.request``)
covering every page it reads; the HTTP layer retries it as a look-up and
translates errors. A ``data`` that does not decode is an
:class:`~cadenza_async.errors.UnexpectedResponseError`, never a silent
empty answer.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable
from typing import Final, TypeVar

import msgspec

from ..errors import UnexpectedResponseError
from ..http import HttpApi
from ..models import Envelope
from .models import (
    Candle,
    Instrument,
    Kline,
    MarketVenue,
    OrderBook,
    Ticker,
    decode_instruments,
    decode_klines,
    decode_order_book,
    decode_order_books,
    decode_ticker,
    decode_tickers,
    decode_venues,
)

__all__ = [
    "INSTRUMENT_LIST_PATH",
    "KLINE_INTERVALS",
    "KLINE_PATH",
    "ORDER_BOOK_LIST_PATH",
    "ORDER_BOOK_PATH",
    "TICKER_LIST_PATH",
    "TICKER_PATH",
    "VENUE_LIST_PATH",
    "MarketRest",
    "check_instrument_id",
    "split_instrument_id",
]

INSTRUMENT_LIST_PATH: Final = "/api/v3/market/instrument/list"
VENUE_LIST_PATH: Final = "/api/v3/market/venue/list"
ORDER_BOOK_PATH: Final = "/api/v3/market/orderBook/get"
ORDER_BOOK_LIST_PATH: Final = "/api/v3/market/orderBook/list"
TICKER_PATH: Final = "/api/v3/market/ticker/get"
TICKER_LIST_PATH: Final = "/api/v3/market/ticker/list"
KLINE_PATH: Final = "/api/v3/market/kline/get"

#: ``KlineInterval`` wire values (case-sensitive: ``1m`` is a minute, ``1M`` a month).
KLINE_INTERVALS: Final = frozenset(
    {
        "1s",
        "1m",
        "3m",
        "5m",
        "15m",
        "30m",
        "1h",
        "2h",
        "4h",
        "6h",
        "8h",
        "12h",
        "1d",
        "3d",
        "1w",
        "1M",
    }
)
_PAGE: Final = 1000
_MAX_PAGES: Final = 1000

T = TypeVar("T")


def split_instrument_id(instrument_id: str) -> tuple[str, str]:
    """``"BINANCE:BTC/USDT"`` -> ``("BINANCE", "BTC/USDT")``; raises ``ValueError`` otherwise."""
    check_instrument_id(instrument_id)
    venue, _, symbol = instrument_id.partition(":")
    return venue, symbol


def check_instrument_id(instrument_id: object) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``instrument_id`` looks like ``VENUE:BASE/QUOTE``."""
    if not isinstance(instrument_id, str):
        raise TypeError(f"instrument_id must be a str, not {type(instrument_id).__name__}")
    venue, colon, symbol = instrument_id.partition(":")
    if (
        not colon
        or not venue
        or not symbol
        or len(instrument_id) > 200
        or not instrument_id.isprintable()
        or any(c.isspace() for c in instrument_id)
    ):
        raise ValueError(f"instrument_id {instrument_id!r} is not VENUE:BASE/QUOTE")


def _check_depth(depth: object) -> int:
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= 1000:
        raise ValueError(f"depth must be an int from 1 to 1000, not {depth!r}")
    return depth


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (
        not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if timeout is not None and math.isinf(timeout):
        raise ValueError("timeout must be finite")


def _decoded(envelope: Envelope, decode: Callable[[msgspec.Raw], T], what: str) -> T:
    try:
        return decode(envelope.data)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, ArithmeticError) as exc:
        text = str(exc)
        raise UnexpectedResponseError(
            f"the answer's data is not {what}: {text[:200]}",
            status=200,
            request_id=envelope.details.request_id if envelope.details else None,
        ) from None


class MarketRest:
    """The market data endpoints over the client's :class:`~cadenza_async.http.HttpApi`."""

    def __init__(self, http: HttpApi, request_timeout: float) -> None:
        self._http = http
        self._timeout = request_timeout

    def _deadline(self, timeout: float | None) -> float:
        _check_timeout(timeout)
        return asyncio.get_running_loop().time() + (self._timeout if timeout is None else timeout)

    async def instruments(
        self, venue: str | None = None, *, timeout: float | None = None
    ) -> list[Instrument]:
        """Every instrument (of ``venue``), all pages read within one deadline."""
        if venue is not None and (not isinstance(venue, str) or not venue or ":" in venue):
            raise ValueError(f"venue must be a venue name such as 'BINANCE', not {venue!r}")
        deadline = self._deadline(timeout)
        found: list[Instrument] = []
        seen: set[str] = set()
        for page in range(_MAX_PAGES):
            params = [("limit", str(_PAGE)), ("offset", str(page * _PAGE))]
            if venue is not None:
                params.append(("venue", venue))
            envelope = await self._http.get_envelope(
                INSTRUMENT_LIST_PATH, params, deadline=deadline
            )
            batch = _decoded(envelope, decode_instruments, "a list of instruments")
            fresh = [i for i in batch if i.instrument_id not in seen]
            seen.update(i.instrument_id for i in fresh)
            found += fresh
            more = envelope.pagination.has_next if envelope.pagination else None
            if not fresh or more is False or (more is None and len(batch) < _PAGE):
                break
        return found

    async def venues(self, *, timeout: float | None = None) -> list[MarketVenue]:
        envelope = await self._http.get_envelope(VENUE_LIST_PATH, deadline=self._deadline(timeout))
        return _decoded(envelope, decode_venues, "a list of venues")

    async def order_book(
        self, instrument_id: str, depth: int = 10, *, timeout: float | None = None
    ) -> OrderBook:
        check_instrument_id(instrument_id)
        params = [("instrumentId", instrument_id), ("depth", str(_check_depth(depth)))]
        envelope = await self._http.get_envelope(
            ORDER_BOOK_PATH, params, deadline=self._deadline(timeout)
        )
        return _decoded(envelope, decode_order_book, "an order book")

    async def order_books(
        self, instrument_ids: Iterable[str], depth: int = 10, *, timeout: float | None = None
    ) -> list[OrderBook]:
        ids = _ids(instrument_ids)
        params = [("instrumentIds", i) for i in ids] + [("depth", str(_check_depth(depth)))]
        envelope = await self._http.get_envelope(
            ORDER_BOOK_LIST_PATH, params, deadline=self._deadline(timeout)
        )
        return _decoded(envelope, decode_order_books, "a list of order books")

    async def ticker(self, instrument_id: str, *, timeout: float | None = None) -> Ticker:
        check_instrument_id(instrument_id)
        envelope = await self._http.get_envelope(
            TICKER_PATH, [("instrumentId", instrument_id)], deadline=self._deadline(timeout)
        )
        return _decoded(envelope, decode_ticker, "a ticker")

    async def tickers(
        self, instrument_ids: Iterable[str] | None = None, *, timeout: float | None = None
    ) -> list[Ticker]:
        params = [("instrumentIds", i) for i in _ids(instrument_ids or ())]
        params.append(("limit", str(_PAGE)))
        envelope = await self._http.get_envelope(
            TICKER_LIST_PATH, params, deadline=self._deadline(timeout)
        )
        return _decoded(envelope, decode_tickers, "a list of tickers")

    async def klines(
        self,
        instrument_id: str,
        interval: str = "1m",
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> list[Candle]:
        """Candles ascending by open time (the last one ``closed=False`` while it forms)."""
        check_instrument_id(instrument_id)
        if interval not in KLINE_INTERVALS:
            raise ValueError(f"interval must be one of {sorted(KLINE_INTERVALS)}, not {interval!r}")
        params = [("instrumentId", instrument_id), ("interval", interval)]
        for key, value in (("from", start), ("to", end), ("limit", limit)):
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{key} must be a non-negative int, not {value!r}")
            params.append((key, str(value)))
        envelope = await self._http.get_envelope(
            KLINE_PATH, params, deadline=self._deadline(timeout)
        )
        klines: list[Kline] = _decoded(envelope, decode_klines, "klines")
        candles: dict[int, Candle] = {}
        for kline in klines:
            for candle in _decoded_candles(kline, envelope):
                candles[candle.open_time] = candle
        return [candles[t] for t in sorted(candles)]


def _decoded_candles(kline: Kline, envelope: Envelope) -> list[Candle]:
    return _decoded(envelope, lambda _raw: kline.candle_list(), "candles")


def _ids(instrument_ids: Iterable[str]) -> list[str]:
    if isinstance(instrument_ids, str):
        raise TypeError("instrument_ids must be an iterable of ids, not one str")
    ids = list(instrument_ids)
    for instrument_id in ids:
        check_instrument_id(instrument_id)
    return ids
