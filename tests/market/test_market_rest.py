"""REST market data and the tolerant decoders: every documented form, exact decimals, checks first."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from conftest import BTC, ETH, market_client, until

from cadenza_async.errors import UnexpectedResponseError
from cadenza_async.market.models import (
    decode_book_update,
    decode_kline,
    decode_order_book,
    decode_ticker,
    decode_venues,
    timestamp_ms,
)

D = Decimal
BOOK = {
    "updateType": "SNAPSHOT",
    "venue": "BINANCE",
    "symbol": "BTC/USDT",
    "orderBookType": "L2",
    "columns": ["price", "quantity"],
    "bids": [["50000.00", "1.5"]],
    "asks": [["50000.50", "1.2"]],
    "timestamp": 1703052635110,
}


FORMS = [
    BOOK,
    {"data": BOOK},
    {"metadata": {"eventType": "event.orderbook.updated", "eventId": "x"}, "data": BOOK},
    BOOK | {"timestamp": "2023-12-20T06:10:35.110Z"},
    BOOK
    | {
        "bids": [{"price": "50000.00", "quantity": "1.5"}],
        "asks": [{"price": "50000.50", "quantity": "1.2"}],
        "sequenceNumber": 7,
    },
    BOOK
    | {
        "columns": ["quantity", "price"],
        "bids": [["1.5", "50000.00"]],
        "asks": [["1.2", "50000.50"]],
    },
    BOOK
    | {
        "orderBookType": "L2",
        "columns": ["price", "quantity", "orderCount"],
        "bids": [["50000.00", "1.5", "3"]],
    },
]


@pytest.mark.parametrize("wire", FORMS)
def test_every_documented_book_form_decodes_to_the_same_levels(wire):
    book = decode_order_book(msgspec.json.encode(wire))
    assert book.best_bid.price == D("50000.00")
    assert book.best_bid.quantity == D("1.5")
    assert book.best_ask.price == D("50000.50")
    assert book.timestamp == 1703052635110


def test_an_l3_snapshot_is_summed_per_price():
    wire = BOOK | {"orderBookType": "L3", "bids": [["1", "2"], ["1", "3"]], "asks": []}
    assert decode_order_book(msgspec.json.encode(wire)).bid_levels() == [(D("1"), D("5"))]


@pytest.mark.parametrize(
    "wire",
    [
        *FORMS,
        BOOK | {"updateType": "DIFF", "asks": []},
        {"data": BOOK | {"updateType": "DIFF", "bids": [{"price": "1", "quantity": "0"}]}},
        {"updateType": "DIFF", "bids": [["1", "2"]], "timestamp": 5},  # no asks at all
        {"asks": [["1", "2"]]},  # nothing but asks: a SNAPSHOT of an L2 book at time 0
        BOOK | {"orderBookType": "L3", "bids": [["1", "2"], ["1", "3"]]},
        BOOK | {"orderBookType": "L3", "updateType": "DIFF", "bids": [["1", "2"], ["1", "3"]]},
        BOOK | {"columns": ["quantity", "price", "count"], "bids": [["1.5", "50000", "2"]]},
        BOOK | {"columns": None},
    ],
)
def test_the_publication_decoder_reads_every_form_as_the_book_decoder_does(wire):
    raw = msgspec.json.encode(wire)
    book = decode_order_book(raw)
    expected = (book.update_type, book.order_book_type, book.bids, book.asks, book.timestamp)
    assert decode_book_update(raw) == expected


@pytest.mark.parametrize(
    "bad",
    [
        b"[]",
        b'{"data": 5}',
        b'{"bids": [["1"]]}',
        b'{"bids": [["1", 2]]}',
        b'{"bids": [], "timestamp": 1.5}',
        b'{"data": {"bids": [[]]}}',
        b"{}",
        b"{",
    ],
)
def test_a_payload_that_is_not_a_book_is_refused(bad):
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_order_book(bad)
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_book_update(bad)


def test_tickers_klines_venues_and_times_in_their_forms():
    ticker = {"venue": "BINANCE", "symbol": "BTC/USDT", "bidPrice": "1.10", "timestamp": 5}
    assert decode_ticker(msgspec.json.encode({"data": ticker})).bid_price_decimal == D("1.10")
    kline = {
        "venue": "B",
        "symbol": "S",
        "interval": "1m",
        "isClosed": False,
        "timestamp": 1,
        "candles": [[60000, "1", "2", "0.5", "1.5", None], [120000, "1", "1", "1", "1", "3"]],
    }
    candles = decode_kline(msgspec.json.encode({"metadata": {}, "data": kline})).candle_list()
    assert [c.closed for c in candles] == [True, False]
    assert candles[0].volume is None
    assert candles[1].volume == D("3")
    assert decode_venues(b'["BINANCE"]')[0].venue == "BINANCE"
    assert decode_venues(b'[{"venue":"OKX","status":"ONLINE"}]')[0].status == "ONLINE"
    assert timestamp_ms("2023-12-20T06:10:35.110123456+00:00") == 1703052635110
    assert timestamp_ms(12) == 12


async def test_rest_book_ticker_klines_and_venues_from_the_simulator():
    async with market_client() as (sim, client):
        book = await client.get_order_book(BTC, depth=5)
        bids, _asks = sim.market.book(BTC)
        assert len(book.bids) == 5
        assert all(bids[lv.price] == lv.quantity for lv in book.bid_levels())
        assert book.best_bid.price == max(bids)
        books = await client.get_order_books([BTC, ETH], depth=2)
        assert [b.instrument_id for b in books] == [BTC, ETH]
        ticker = await client.get_ticker(BTC)
        assert ticker.bid_price_decimal == max(bids)
        assert len(await client.get_tickers()) == 3
        candles = await client.get_klines(BTC, "1m")
        assert candles[-1].closed is False
        assert candles[0].closed is True
        assert [v.venue for v in await client.get_venues()] == ["BINANCE"]


async def test_bad_arguments_are_refused_before_any_request():
    async with market_client() as (sim, client):
        before = len(sim.rest_requests)
        for call in (
            lambda: client.get_order_book("BTCUSDT"),
            lambda: client.get_order_book(BTC, depth=0),
            lambda: client.get_order_book(BTC, depth=True),
            lambda: client.get_klines(BTC, "2m"),
            lambda: client.get_klines(BTC, "1m", start=-1),
            lambda: client.get_order_books("BINANCE:BTC/USDT"),
            lambda: client.get_ticker(BTC, timeout=0),
            lambda: client.instruments("BINANCE:X"),
        ):
            with pytest.raises((ValueError, TypeError)):
                await call()
        assert len(sim.rest_requests) == before


async def test_market_rest_faults_are_retried_and_a_bad_payload_is_an_error():
    async with market_client() as (sim, client):
        sim.fail_next_rest(1, 503, endpoint="market")
        assert (await client.get_ticker(BTC)).symbol == "BTC/USDT"
        with pytest.raises(Exception) as info:
            await client.get_order_book("BINANCE:NOPE/USDT")
        assert getattr(info.value, "status", None) == 404


async def test_an_undecodable_answer_is_an_unexpected_response(monkeypatch):
    async with market_client() as (sim, client):
        monkeypatch.setattr(sim.market, "ticker", lambda _id: {"bids": "no"})
        with pytest.raises(UnexpectedResponseError):
            await client.get_ticker(BTC)


async def test_a_live_ticker_and_live_candles_follow_their_channels():
    async with market_client() as (sim, client):
        async with client.ticker(BTC) as ticker, client.klines(BTC, "1m") as klines:
            await ticker.wait_ready(5.0)
            await klines.wait_ready(5.0)
            sim.market.step(3, BTC)
            bids, _ = sim.market.book(BTC)
            await until(lambda: ticker.latest.bid_price_decimal == max(bids))
            await until(lambda: klines.last is not None and not klines.last.closed)
            assert len({c.open_time for c in klines.candles()}) == len(klines.candles())


@pytest.mark.parametrize("wire", [BOOK, {"data": BOOK}, BOOK | {"columns": None}])
def test_the_usual_publication_form_takes_the_one_pass_decoder(wire):
    # (what the fallback to decode_order_book would also read, only slower)
    from cadenza_async.market.models import _book_update

    fast = _book_update(msgspec.json.encode(wire))
    if fast.data:
        fast = _book_update(fast.data)
    assert fast.bids == BOOK["bids"]
    assert fast.timestamp == BOOK["timestamp"]
