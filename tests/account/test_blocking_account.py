"""BlockingCadenzaClient's account methods: the same names, no await; the live portfolio from a thread."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import msgspec
import pytest
from account_support import BTC, ETH

from cadenza_async import BlockingCadenzaClient
from cadenza_async.account import QuoteExpiredError
from cadenza_async.testing import CadenzaSimulator


@pytest.fixture
def threaded_sim():
    ready = threading.Event()
    stop = threading.Event()
    box = {}

    async def serve() -> None:
        async with CadenzaSimulator(portfolio_updates="SNAPSHOT") as sim:
            box["sim"] = sim
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.01)

    server = threading.Thread(target=lambda: asyncio.run(serve()))
    server.start()
    try:
        assert ready.wait(10)
        yield box["sim"]
    finally:
        stop.set()
        server.join(10)


def test_blocking_portfolio_reflects_quotes_and_health(threaded_sim):
    sim = threaded_sim
    with BlockingCadenzaClient(
        token=sim.token,
        api_url=sim.api_url,
        ws_url=sim.ws_url,
        trading_account_id=sim.trading_account_id,
    ) as client:
        assert client.health().healthy
        (portfolio,) = client.get_portfolio(sim.trading_account_id)
        assert portfolio.balance("USDT").free == Decimal("1000000")
        assert client.get_trading_accounts()[0].status == "ACTIVE"
        with client.portfolio(sim.trading_account_id) as live:
            live.wait_ready(5.0)
            result = client.submit_and_confirm(
                instrument_id=BTC, order_side="BUY", order_type="MARKET", quantity="1"
            )
            assert live.reflects(result, timeout=5.0).source == "stream"
            assert live.balance("BTC").total == Decimal("11")
            assert live.usable
        quote = client.request_quote(
            dealer_account_id=sim.trading_account_id,
            order_side="SELL",
            instrument_id=ETH,
            quantity="1",
        )
        executed = client.execute_quote(quote, timeout=5.0)
        assert executed.accepted
        with pytest.raises(QuoteExpiredError):
            client.execute_quote(msgspec.structs.replace(quote, expire_at=1), timeout=5.0)
