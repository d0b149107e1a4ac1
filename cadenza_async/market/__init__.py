"""Market data: instruments and their rules, order books (REST and live), tickers and candles.

The client's methods (:meth:`CadenzaClient.instruments
<cadenza_async.CadenzaClient.instruments>`, ``instrument``,
``get_order_book``, ``order_book``, ``get_ticker``, ``ticker``,
``get_klines``, ``klines``, ...) are the way in; this package holds the
models, the rules and the live views they return.
"""

from __future__ import annotations

from ..protocol.book import BookChange, Level
from .models import Candle, Instrument, Kline, MarketVenue, OrderBook, Ticker
from .rules import InstrumentRuleError

__all__ = [
    "BookChange",
    "Candle",
    "Instrument",
    "InstrumentRuleError",
    "Kline",
    "Level",
    "MarketVenue",
    "OrderBook",
    "Ticker",
]
