"""BlockingCadenzaClient's market data: the same names, no await; live views read on the loop."""

from __future__ import annotations

import asyncio
import threading

from conftest import BTC

from cadenza_async import BlockingCadenzaClient
from cadenza_async.testing import CadenzaSimulator


def test_blocking_market_calls_and_a_live_book_from_a_thread():
    ready = threading.Event()
    stop = threading.Event()
    box = {}

    async def serve() -> None:
        async with CadenzaSimulator() as sim:
            box["sim"] = sim
            box["loop"] = asyncio.get_running_loop()
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.01)

    server = threading.Thread(target=lambda: asyncio.run(serve()))
    server.start()
    try:
        assert ready.wait(10)
        sim = box["sim"]
        with BlockingCadenzaClient(token=sim.token, api_url=sim.api_url, ws_url=sim.ws_url) as c:
            assert c.instrument(BTC).pip_size == "0.01"
            assert c.get_order_book(BTC, depth=3).best_bid is not None
            assert c.get_ticker(BTC).symbol == "BTC/USDT"
            with c.order_book(BTC) as book:
                book.wait_ready(5.0)
                assert book.usable
                assert len(book.bids(3)) == 3
                bids, _ = sim.market.book(BTC)
                assert book.best_bid.price == max(bids)
    finally:
        stop.set()
        server.join(10)
