"""The live order book against the simulator over real sockets: kept equal to the true book."""

from __future__ import annotations

from conftest import BTC, ETH, as_dict, market_client, until


def equal_to_sim(book, sim, instrument_id=BTC) -> bool:
    bids, asks = sim.market.book(instrument_id)
    return as_dict(book.bids()) == bids and as_dict(book.asks()) == asks


async def test_a_live_book_loads_by_rest_then_follows_every_diff():
    async with market_client() as (sim, client):
        async with client.order_book(BTC) as book:
            await book.wait_ready(5.0)
            assert book.usable
            assert equal_to_sim(book, sim)
            sim.market.step(50)
            await until(lambda: equal_to_sim(book, sim))
            assert book.resyncs == {}
            assert book.best_bid.price < book.best_ask.price
            assert book.spread == book.best_ask.price - book.best_bid.price


async def test_a_dropped_publication_is_a_gap_healed_by_one_snapshot():
    async with market_client() as (sim, client):
        async with client.order_book(BTC) as book:
            await book.wait_ready(5.0)
            sim.market.drop_next(BTC, 1)
            sim.market.step(3, BTC)
            await until(lambda: book.resyncs.get("gap") == 1 and book.usable)
            assert equal_to_sim(book, sim)


async def test_a_delta_and_a_crossed_book_are_never_applied_and_heal():
    async with market_client() as (sim, client):
        async with client.order_book(BTC) as book:
            await book.wait_ready(5.0)
            sim.market.send_delta(BTC)
            sim.market.step(1, BTC)
            await until(lambda: book.resyncs.get("delta") == 1 and book.usable)
            sim.market.cross_book(BTC)
            await until(lambda: book.resyncs.get("crossed") == 1 and book.usable)
            sim.market.step(5, BTC)
            await until(lambda: equal_to_sim(book, sim))


async def test_lost_history_resubscribes_with_a_new_epoch_and_resyncs():
    async with market_client() as (sim, client):
        async with client.order_book(BTC) as book:
            await book.wait_ready(5.0)
            sim.market.lose_history(BTC)
            sim.market.step(2, BTC)
            await until(lambda: sum(book.resyncs.values()) >= 1 and book.usable)
            sim.market.step(2, BTC)
            await until(lambda: equal_to_sim(book, sim))


async def test_a_reconnect_with_recovery_keeps_the_book_without_a_resync():
    async with market_client() as (sim, client):
        async with client.order_book(BTC) as book:
            await book.wait_ready(5.0)
            await sim.disconnect_all(code=3001)
            sim.market.step(5, BTC)  # in history: replayed by the recovery
            await until(lambda: book.usable and equal_to_sim(book, sim))
            assert book.resyncs == {}


async def test_two_holders_share_one_subscription_released_by_the_last():
    async with market_client() as (_sim, client):
        channel = "market:orderbook:BINANCE:BTC/USDT"
        async with client.order_book(BTC) as one:
            async with client.order_book(BTC) as two:
                await two.wait_ready(5.0)
                assert one.usable
                assert channel in client._stream.channels
            assert channel in client._stream.channels
        assert channel not in client._stream.channels


async def test_many_books_share_the_one_socket():
    async with market_client() as (sim, client):
        async with client.order_book(BTC) as btc, client.order_book(ETH) as eth:
            await btc.wait_ready(5.0)
            await eth.wait_ready(5.0)
            sim.market.step(20)
            await until(lambda: equal_to_sim(btc, sim, BTC) and equal_to_sim(eth, sim, ETH))
        assert sim.connect_count == 1


async def test_every_wire_form_is_read():
    for form in ("bare", "data", "metadata"):
        async with market_client() as (sim, client):
            sim.market.set_wire_form(form)
            async with client.order_book(BTC) as book:
                await book.wait_ready(5.0)
                sim.market.step(10, BTC)
                await until(lambda: equal_to_sim(book, sim))
                assert book.resyncs == {}


async def test_changes_yield_each_applied_update():
    async with market_client() as (sim, client):
        async with client.order_book(BTC) as book:
            await book.wait_ready(5.0)
            changes = book.changes()
            sim.market.step(3, BTC)
            kinds = [(await anext(changes)).kind for _ in range(3)]
            assert kinds == ["diff", "diff", "diff"]
            await changes.aclose()


async def test_a_book_opened_on_a_channel_already_live_loads_at_once():
    """Another owner (a raw subscription here; an account's channel for the portfolio)
    already holds the channel live: the new view is told so, and loads by REST."""
    async with market_client() as (sim, client):
        channel = "market:orderbook:BINANCE:BTC/USDT"
        stream = client._stream
        stream.want(channel)
        await until(lambda: stream.is_live(channel))
        async with client.order_book(BTC) as book:
            await book.wait_ready(5.0)
            assert equal_to_sim(book, sim)
            sim.market.step(5, BTC)
            await until(lambda: equal_to_sim(book, sim))
        stream.release(channel)
