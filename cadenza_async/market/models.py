"""Market data wire models: instruments, order books, tickers, candles, venues; tolerant decoders.

Every documented form decodes (``spec/cadenza-market-account.md``): REST
``Instrument`` and the RPC ``RpcInstrument`` (all fields optional), book
rows as ``[price, quantity, ...]`` string arrays or as the older
``{price, quantity}`` objects, ``timestamp`` as Unix ms or an RFC 3339
string, a publication bare, as ``{data}`` or as ``{metadata, data}``, the
venue list as ``[{venue, status}]`` or as plain names. Unknown fields are
ignored and unknown enum values kept as strings. Decimals stay the exact
strings the server sent; ``*_decimal`` accessors give :class:`~decimal.Decimal`.
Decoders are built once, at import.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

from ..protocol.book import Level

__all__ = [
    "Candle",
    "Instrument",
    "Kline",
    "Level",
    "MarketVenue",
    "OrderBook",
    "Ticker",
    "decode_book_update",
    "decode_instruments",
    "decode_kline",
    "decode_order_book",
    "decode_order_books",
    "decode_ticker",
    "decode_tickers",
    "decode_venues",
    "timestamp_ms",
]

_PriceUniqueType = Literal["L2", "L2_COUNTED", "VWAP"]
#: Book types whose rows are one per price (a DIFF row replaces that price's level).
PRICE_UNIQUE_TYPES: Final = frozenset(get_args(_PriceUniqueType))


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def timestamp_ms(value: int | float | str | None) -> int | None:
    """A wire time as Unix milliseconds: ms numbers as they are, RFC 3339 strings converted."""
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    text = value.strip()
    if text.isdigit():
        return int(text)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.10's fromisoformat takes at most 6 fractional digits
    head, dot, tail = text.partition(".")
    if dot:
        digits = len(tail) - len(tail.lstrip("0123456789"))
        tail = tail[: min(digits, 6)] + tail[digits:]
        text = head + "." + tail
    when = datetime.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return round(when.timestamp() * 1000)


# --------------------------------------------------------------------------- instruments


class Instrument(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True):
    """A tradable instrument and its order rules (REST ``Instrument`` or ``RpcInstrument``).

    ``lot_size`` is the quantity step and ``pip_size`` the price tick (the
    spec gives no description: our reading). The rule helpers live in
    :mod:`cadenza_async.market.rules` and are methods here:
    :meth:`round_quantity`, :meth:`round_price`, :meth:`check_order`.
    """

    instrument_id: str
    venue: str | None = None
    symbol: str | None = None
    external_symbol: str | None = None
    description: str | None = None
    instrument_type: str | None = None
    status: str | None = None
    base_asset: str | None = None
    quote_asset: str | None = None
    base_security_type: str | None = None
    quote_security_type: str | None = None
    base_precision: int | None = None
    quote_precision: int | None = None
    base_max_significant: int | None = None
    quote_max_significant: int | None = None
    lot_size: str | None = None
    pip_size: str | None = None
    base_scale: int | None = None
    quote_scale: int | None = None
    min_quantity: str | None = None
    max_quantity: str | None = None
    min_notional: str | None = None
    max_notional: str | None = None
    order_types: list[str | None] = []
    time_in_force_options: list[str | None] = []
    is_iceberg_allowed: bool | None = None
    iceberg_min_quantity: str | None = None
    contract_size: str | None = None
    fee: str | None = None
    delivery_date: int | str | None = None
    strike_price: str | None = None
    updated_at: int | str | None = None

    @property
    def lot_size_decimal(self) -> Decimal | None:
        return _dec(self.lot_size)

    @property
    def pip_size_decimal(self) -> Decimal | None:
        return _dec(self.pip_size)

    @property
    def min_quantity_decimal(self) -> Decimal | None:
        return _dec(self.min_quantity)

    @property
    def max_quantity_decimal(self) -> Decimal | None:
        return _dec(self.max_quantity)

    @property
    def min_notional_decimal(self) -> Decimal | None:
        return _dec(self.min_notional)

    @property
    def max_notional_decimal(self) -> Decimal | None:
        return _dec(self.max_notional)

    @property
    def allowed_order_types(self) -> frozenset[str]:
        """The order types the instrument takes (empty: not stated; ``null`` items dropped)."""
        return frozenset(t for t in self.order_types if t)

    @property
    def allowed_time_in_force(self) -> frozenset[str]:
        """The time-in-force values the instrument takes (empty: not stated)."""
        return frozenset(t for t in self.time_in_force_options if t)

    def round_quantity(self, quantity: Decimal | str, rounding: str) -> Decimal:
        """``quantity`` on the lot size, rounded ``"down"``, ``"up"`` or ``"nearest"`` (exact)."""
        from .rules import round_to_step

        return round_to_step(quantity, self.lot_size_decimal, rounding, "quantity")

    def round_price(self, price: Decimal | str, rounding: str) -> Decimal:
        """``price`` on the pip size, rounded ``"down"``, ``"up"`` or ``"nearest"`` (exact)."""
        from .rules import round_to_step

        return round_to_step(price, self.pip_size_decimal, rounding, "price")

    def check_order(
        self,
        *,
        order_type: str,
        quantity: Decimal | str,
        limit_price: Decimal | str | None = None,
        stop_price: Decimal | str | None = None,
        time_in_force: str | None = None,
    ) -> None:
        """Raise :class:`~cadenza_async.market.rules.InstrumentRuleError` if an order breaks a rule."""
        from .rules import check_order

        check_order(
            self,
            order_type=order_type,
            quantity=quantity,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
        )


class MarketVenue(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True):
    """A venue and its status (``ONLINE``, ``OFFLINE``, ``MAINTENANCE``; None from the RPC form)."""

    venue: str
    status: str | None = None


# --------------------------------------------------------------------------- order books


class _LevelObject(msgspec.Struct, rename="camel"):
    """The older level form ``{price, quantity}`` (``RpcOrderBookLevel``)."""

    price: str
    quantity: str


_Rows = list[list[str] | _LevelObject]


class OrderBook(msgspec.Struct, rename="camel", omit_defaults=True):
    """An order book message: a SNAPSHOT (REST, RPC, channel), DIFF or DELTA (channel only).

    ``bids``/``asks`` are rows ``[price, quantity, ...]`` of decimal strings
    in the order of ``columns`` (``price`` first, ``quantity`` second once
    decoded); :meth:`bid_levels` and :meth:`ask_levels` give exact
    :class:`Level` values. ``timestamp`` is Unix ms.
    """

    update_type: str = "SNAPSHOT"
    instrument_id: str | None = None
    venue: str | None = None
    symbol: str | None = None
    order_book_type: str = "L2"
    columns: list[str] = []
    bids: list[list[str]] = []
    asks: list[list[str]] = []
    timestamp: int = 0

    def bid_levels(self, n: int | None = None) -> list[Level]:
        """The bids as exact levels, best first (the server sorts them), at most ``n``."""
        return [Level(Decimal(r[0]), Decimal(r[1])) for r in self.bids[:n]]

    def ask_levels(self, n: int | None = None) -> list[Level]:
        """The asks as exact levels, best first, at most ``n``."""
        return [Level(Decimal(r[0]), Decimal(r[1])) for r in self.asks[:n]]

    @property
    def best_bid(self) -> Level | None:
        levels = self.bid_levels(1)
        return levels[0] if levels else None

    @property
    def best_ask(self) -> Level | None:
        levels = self.ask_levels(1)
        return levels[0] if levels else None


class _WireBook(msgspec.Struct, rename="camel"):
    """Every book form in one pass: the bare book, or a wrapper with ``data``."""

    update_type: str | None = None
    instrument_id: str | None = None
    venue: str | None = None
    symbol: str | None = None
    order_book_type: str | None = None
    columns: list[str] | None = None
    bids: _Rows | None = None
    asks: _Rows | None = None
    timestamp: int | str | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty: not a wrapper


def _rows(
    rows: Sequence[list[str] | _LevelObject] | None, columns: list[str] | None
) -> list[list[str]]:
    """Rows as ``[price, quantity, ...]`` whatever their wire form and column order."""
    if not rows:
        return []
    out: list[Any] = rows if isinstance(rows, list) else list(rows)
    if type(rows[0]) is not list or any(type(r) is not list for r in rows):
        out = [[r.price, r.quantity] if isinstance(r, _LevelObject) else r for r in rows]
    if columns and columns[:2] != ["price", "quantity"] and "price" in columns:
        p = columns.index("price")
        q = columns.index("quantity") if "quantity" in columns else 1
        out = [[r[p], r[q], *r] for r in out]
    for row in out:
        if len(row) < 2:
            raise msgspec.ValidationError("a book row has fewer than two cells")
    return out


def _aggregated(rows: list[list[str]]) -> list[list[str]]:
    """Rows of a book whose prices repeat (L3, per exchange): summed per price."""
    total: dict[Decimal, Decimal] = {}
    for row in rows:
        price = Decimal(row[0])
        total[price] = total.get(price, Decimal(0)) + Decimal(row[1])
    return [[str(p), str(q)] for p, q in total.items()]


def _book_from(wire: _WireBook) -> OrderBook:
    kind = wire.order_book_type or "L2"
    bids = _rows(wire.bids, wire.columns)
    asks = _rows(wire.asks, wire.columns)
    update = wire.update_type or "SNAPSHOT"
    if kind not in PRICE_UNIQUE_TYPES and update == "SNAPSHOT":
        bids, asks = _aggregated(bids), _aggregated(asks)
    return OrderBook(
        update_type=update,
        instrument_id=wire.instrument_id,
        venue=wire.venue,
        symbol=wire.symbol,
        order_book_type=kind,
        columns=wire.columns or ["price", "quantity"],
        bids=bids,
        asks=asks,
        timestamp=timestamp_ms(wire.timestamp) or 0,
    )


_wire_book: Final = msgspec.json.Decoder(_WireBook)
_wire_books: Final = msgspec.json.Decoder(list[_WireBook])


def decode_order_book(raw: bytes | msgspec.Raw) -> OrderBook:
    """One book from any documented form (bare, ``{data}``, ``{metadata, data}``).

    Raises ``msgspec.ValidationError``/``DecodeError`` (``ValueError``) when it is not a book.
    """
    wire = _wire_book.decode(raw)
    if wire.bids is None and wire.asks is None and wire.data:
        wire = _wire_book.decode(wire.data)
    if wire.bids is None and wire.asks is None:
        raise msgspec.ValidationError("not an order book: no bids and no asks")
    return _book_from(wire)


class _BookUpdate(msgspec.Struct, rename="camel", gc=False):
    """The usual form of a book publication, and nothing else (anything else fails to decode).

    Rows are arrays of two or more strings; ``columns``, when present, is
    ``["price", "quantity"]``; ``timestamp`` is Unix ms; the book type is one
    whose rows are one per price.
    """

    update_type: str = "SNAPSHOT"
    order_book_type: _PriceUniqueType = "L2"
    columns: tuple[Literal["price"], Literal["quantity"]] | None = None
    bids: list[Annotated[list[str], msgspec.Meta(min_length=2)]] | None = None
    asks: list[Annotated[list[str], msgspec.Meta(min_length=2)]] | None = None
    timestamp: int = 0
    data: msgspec.Raw = msgspec.Raw()  # empty: not a wrapper


_book_update: Final = msgspec.json.Decoder(_BookUpdate).decode

#: ``(update type, book type, bids, asks, timestamp ms)`` of one publication.
BookUpdate = tuple[str, str, list[list[str]], list[list[str]], int]


def decode_book_update(raw: bytes | msgspec.Raw) -> BookUpdate:
    """A publication of a book channel as ``(update type, book type, bids, asks, timestamp)``.

    The same reading as :func:`decode_order_book` (every documented form,
    rows as ``[price, quantity, ...]``), without building an
    :class:`OrderBook`: the usual form (both sides as rows of strings,
    ``columns`` absent or ``["price", "quantity"]``, ``timestamp`` in ms, a
    book type with one row per price) is decoded in one pass with no work
    per row; any other form takes :func:`decode_order_book`'s way. Raises
    ``msgspec.ValidationError`` or ``DecodeError`` (``ValueError``) when it
    is not a book.
    """
    try:
        wire: _BookUpdate | None = _book_update(raw)
        if wire is not None and wire.data and wire.bids is None and wire.asks is None:
            wire = _book_update(wire.data)
    except msgspec.ValidationError:  # another form, or not a book: decode_order_book says
        wire = None
    if wire is None or wire.bids is None or wire.asks is None:
        book = decode_order_book(raw)
        return (book.update_type, book.order_book_type, book.bids, book.asks, book.timestamp)
    return (wire.update_type, wire.order_book_type, wire.bids, wire.asks, wire.timestamp)


def decode_order_books(raw: bytes | msgspec.Raw) -> list[OrderBook]:
    """A list of books (``orderBook/list``)."""
    return [_book_from(w) for w in _wire_books.decode(raw)]


# --------------------------------------------------------------------------- tickers


class Ticker(msgspec.Struct, rename="camel", omit_defaults=True):
    """The unified ticker (REST, RPC, ``market:ticker:*`` channels); ``timestamp`` in Unix ms."""

    venue: str | None = None
    symbol: str | None = None
    instrument_id: str | None = None
    last_price: str | None = None
    last_quantity: str | None = None
    bid_price: str | None = None
    bid_quantity: str | None = None
    ask_price: str | None = None
    ask_quantity: str | None = None
    price_change_percent: str | None = None
    timestamp: int | str | None = None

    @property
    def timestamp_ms(self) -> int | None:
        return timestamp_ms(self.timestamp)

    @property
    def last_price_decimal(self) -> Decimal | None:
        return _dec(self.last_price)

    @property
    def bid_price_decimal(self) -> Decimal | None:
        return _dec(self.bid_price)

    @property
    def ask_price_decimal(self) -> Decimal | None:
        return _dec(self.ask_price)

    @property
    def bid_quantity_decimal(self) -> Decimal | None:
        return _dec(self.bid_quantity)

    @property
    def ask_quantity_decimal(self) -> Decimal | None:
        return _dec(self.ask_quantity)

    @property
    def price_change_percent_decimal(self) -> Decimal | None:
        return _dec(self.price_change_percent)


class _WrappedTicker(Ticker, omit_defaults=True):
    data: msgspec.Raw = msgspec.Raw()


_ticker: Final = msgspec.json.Decoder(_WrappedTicker)
_tickers: Final = msgspec.json.Decoder(list[Ticker])


def _plain_ticker(wrapped: _WrappedTicker) -> Ticker:
    fields = msgspec.structs.asdict(wrapped)
    fields.pop("data", None)
    return Ticker(**fields)


def decode_ticker(raw: bytes | msgspec.Raw) -> Ticker:
    """One ticker from any documented form (bare, ``{data}``, ``{metadata, data}``)."""
    wrapped = _ticker.decode(raw)
    if wrapped.venue is None and wrapped.symbol is None and wrapped.data:
        wrapped = _ticker.decode(wrapped.data)
    if wrapped.timestamp is None and wrapped.symbol is None and wrapped.instrument_id is None:
        raise msgspec.ValidationError("not a ticker: no symbol, instrument or timestamp")
    return _plain_ticker(wrapped)


def decode_tickers(raw: bytes | msgspec.Raw) -> list[Ticker]:
    return _tickers.decode(raw)


# --------------------------------------------------------------------------- candles


class Candle(msgspec.Struct, frozen=True):
    """One OHLCV candle: ``[openTime, open, high, low, close, volume]`` on the wire."""

    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None
    closed: bool = True


class Kline(msgspec.Struct, rename="camel", omit_defaults=True):
    """Candles of one instrument and interval, ascending by open time.

    ``is_closed`` says whether the **last** candle is final (the ones before
    it always are).
    """

    interval: str
    venue: str | None = None
    symbol: str | None = None
    instrument_id: str | None = None
    candles: list[list[Any]] = []
    is_closed: bool = True
    timestamp: int | str | None = None

    def candle_list(self) -> list[Candle]:
        """The candles as exact :class:`Candle` values (the last one ``closed`` per ``is_closed``)."""
        out = [candle_of(row, True) for row in self.candles]
        if out and not self.is_closed:
            out[-1] = msgspec.structs.replace(out[-1], closed=False)
        return out


def candle_of(row: Sequence[Any], closed: bool) -> Candle:
    """One candle row; raises ``ValueError`` when it is not ``[time, o, h, l, c, volume]``."""
    if len(row) < 5:
        raise ValueError(f"a candle has {len(row)} items, not 6")
    open_time = timestamp_ms(row[0])
    if open_time is None:
        raise ValueError("a candle without an open time")
    volume = row[5] if len(row) > 5 else None
    return Candle(
        open_time,
        Decimal(str(row[1])),
        Decimal(str(row[2])),
        Decimal(str(row[3])),
        Decimal(str(row[4])),
        None if volume is None else Decimal(str(volume)),
        closed,
    )


class _WrappedKline(msgspec.Struct, rename="camel"):
    interval: str | None = None
    candles: list[list[Any]] | None = None
    data: msgspec.Raw = msgspec.Raw()


_kline_probe: Final = msgspec.json.Decoder(_WrappedKline)
_kline: Final = msgspec.json.Decoder(Kline)
_klines: Final = msgspec.json.Decoder(list[Kline])


def decode_kline(raw: bytes | msgspec.Raw) -> Kline:
    """One kline from any documented form (bare, ``{data}``, ``{metadata, data}``)."""
    probe = _kline_probe.decode(raw)
    if probe.candles is None and probe.data:
        raw = probe.data
    kline = _kline.decode(raw)
    kline.candle_list()  # every candle readable, or ValueError now
    return kline


def decode_klines(raw: bytes | msgspec.Raw) -> list[Kline]:
    """A kline or a list of them (``kline/get`` answers one; the RPC list answers many)."""
    if bytes(raw).lstrip()[:1] == b"[":
        return _klines.decode(raw)
    return [decode_kline(raw)]


# --------------------------------------------------------------------------- lists


_instruments: Final = msgspec.json.Decoder(list[Instrument])
_venues: Final = msgspec.json.Decoder(list[MarketVenue | str])


def decode_instruments(raw: bytes | msgspec.Raw) -> list[Instrument]:
    return _instruments.decode(raw)


def decode_venues(raw: bytes | msgspec.Raw) -> list[MarketVenue]:
    """``[{venue, status}]`` (REST) or ``[name, ...]`` (RPC) as :class:`MarketVenue` values."""
    return [MarketVenue(v) if isinstance(v, str) else v for v in _venues.decode(raw)]
