"""RFQ over the simulator: a quote executed with proof within its expiry, once, never expired."""

from __future__ import annotations

import time
from decimal import Decimal

import msgspec
import pytest
from account_support import ETH, account_client

from cadenza_async.account import Quote, QuoteExpiredError

SUBMIT = "/api/v3/tradeOrder/submit"


async def request(sim, client, **options):
    fields = {"instrument_id": ETH, "quantity": "2"}
    fields.update(options)
    return await client.request_quote(
        dealer_account_id=sim.trading_account_id, order_side="BUY", **fields
    )


async def test_a_quote_is_typed_with_its_price_quantity_and_expiry():
    async with account_client() as (sim, client):
        sim.accounts.set_quote_price(ETH, "2999.5")
        before = time.time_ns() // 1_000_000
        quote = await request(sim, client, ttl=30)
        assert isinstance(quote, Quote)
        assert quote.price == Decimal("2999.5")
        assert quote.quantity == Decimal("2")
        assert quote.quote_quantity == Decimal("5999")
        assert before + 29_000 <= quote.expire_at <= before + 31_000
        (body,) = [b for _m, p, b in sim.rest_requests if p == "/api/v3/quote/rfq"]
        assert body["quoteRequestId"]
        assert body["ttl"] == 30


async def test_a_quote_executes_within_its_expiry_with_proof_at_its_price():
    for wire in ("current", "legacy"):
        async with account_client(wire=wire) as (sim, client):
            sim.accounts.set_quote_price(ETH, "2999.5")
            quote = await request(sim, client)
            result = await client.execute_quote(quote, timeout=5.0)
            assert result.accepted
            assert result.status == "FILLED"
            assert result.order.quote_id == quote.quote_id
            assert result.order.order_type == "QUOTED"
            assert Decimal(result.order.executed_price) == Decimal("2999.5")
            assert result.client_order_id == f"quote-{quote.quote_id}"
            (body,) = [b for _m, p, b in sim.rest_requests if p == SUBMIT]
            assert body["quoteId"] == quote.quote_id
            assert body["orderType"] == "QUOTED"
            assert sim.accounts.quotes_executed == 1


async def test_a_quote_executed_over_the_websocket_client_still_goes_by_http():
    async with account_client(client_options={"submit_via": "ws"}) as (sim, client):
        quote = await request(sim, client)
        result = await client.execute_quote(quote, timeout=5.0)
        assert result.accepted
        assert sim.submit_requests == [(result.client_order_id, "http")]


async def test_an_expired_quote_is_refused_before_any_io():
    async with account_client() as (sim, client):
        quote = await request(sim, client)
        expired = msgspec.structs.replace(quote, expire_at=time.time_ns() // 1_000_000 - 5)
        sim.rest_requests = []
        with pytest.raises(QuoteExpiredError) as caught:
            await client.execute_quote(expired, timeout=5.0)
        assert caught.value.quote_id == quote.quote_id
        assert sim.rest_requests == []
        assert sim.submit_requests == []


async def test_a_quote_executed_twice_with_the_same_key_places_one_order():
    async with account_client() as (sim, client):
        quote = await request(sim, client)
        first = await client.execute_quote(quote, timeout=5.0)
        again = await client.execute_quote(quote, timeout=5.0)
        assert again.order_id == first.order_id
        assert sim.submits_applied == 1
        assert sim.accounts.quotes_executed == 1
        keyed = await request(sim, client)
        one = await client.execute_quote(keyed, client_order_id="desk-7", timeout=5.0)
        two = await client.execute_quote(keyed, client_order_id="desk-7", timeout=5.0)
        assert one.order_id == two.order_id
        assert sim.submits_applied == 2


async def test_the_call_is_bounded_by_the_quote_expiry_before_the_timeout():
    async with account_client(accept_delay=30.0) as (sim, client):
        quote = await request(sim, client, ttl=1)
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            await client.execute_quote(quote, timeout=20.0)
        assert type(caught.value).__name__ == "SubmitConfirmationTimeout"
        assert time.monotonic() - started < 2.5  # the quote's second, not the 20 s timeout


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"instrument_id": None}, "instrument_id"),
        ({"quantity": None}, "quantity"),
        ({"quote_quantity": "10"}, "one of the two"),
        ({"ttl": 0}, "ttl"),
        ({"quantity": "-1"}, "quantity"),
        ({"instrument_id": ETH, "base_asset": "ETH", "quote_asset": "USDT"}, "instrument_id"),
    ],
)
async def test_a_bad_request_is_refused_before_any_io(options, words):
    async with account_client() as (sim, client):
        sim.rest_requests = []
        with pytest.raises(ValueError, match=words):
            await request(sim, client, **options)
        assert sim.rest_requests == []
