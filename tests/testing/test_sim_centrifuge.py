"""Conformance: the real centrifuge-python client against the simulator.

Connect, subscribe with recovery (positioned + recoverable), order events,
server pings answered for many intervals, recovery of missed publications
across a 3001 disconnect, ``recovered`` false after the history is lost,
RPC cancel, and the terminal close on a bad token.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from centrifuge import (
    Client,
    ClientEventHandler,
    ClientState,
    DisconnectedContext,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
)

from cadenza_async.models import decode_order_event, encoder
from cadenza_async.testing import CadenzaSimulator


class ClientEvents(ClientEventHandler):
    def __init__(self) -> None:
        self.disconnected: asyncio.Queue[DisconnectedContext] = asyncio.Queue()
        self.connected = 0

    async def on_connected(self, ctx) -> None:
        self.connected += 1

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.disconnected.put_nowait(ctx)


class SubEvents(SubscriptionEventHandler):
    def __init__(self) -> None:
        self.subscribed: asyncio.Queue[SubscribedContext] = asyncio.Queue()
        self.publications: asyncio.Queue[PublicationContext] = asyncio.Queue()

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.put_nowait(ctx)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.publications.put_nowait(ctx)

    async def next_subscribed(self) -> SubscribedContext:
        return await asyncio.wait_for(self.subscribed.get(), 5)

    async def next_order(self):
        ctx = await asyncio.wait_for(self.publications.get(), 5)
        return ctx.pub.offset, decode_order_event(encoder.encode(ctx.pub.data))


@contextlib.asynccontextmanager
async def centrifuge_client(sim: CadenzaSimulator, token: str | None = None):
    events = ClientEvents()
    client = Client(sim.ws_url, events=events, token=token or sim.token, proxy=None, timeout=5.0)
    try:
        yield client, events
    finally:
        await client.disconnect()


async def subscribe(client: Client, sim: CadenzaSimulator) -> tuple[SubEvents, SubscribedContext]:
    events = SubEvents()
    sub = client.new_subscription(
        f"tradingAccount:{sim.trading_account_id}", events=events, positioned=True, recoverable=True
    )
    await client.connect()
    await sub.subscribe()
    first = await events.next_subscribed()
    return events, first


async def test_client_subscribes_and_receives_order_events():
    async with CadenzaSimulator(cancel_delay=0.02) as sim, centrifuge_client(sim) as (client, _):
        events, subscribed = await subscribe(client, sim)
        assert subscribed.recoverable
        assert subscribed.positioned
        assert subscribed.stream_position.epoch == sim.channel_position()[0]
        assert not subscribed.was_recovering
        order = sim.create_order()
        sim.fill(order.trade_order_id, "0.25")
        sim.set_status(order.trade_order_id, "CANCELLED")
        received = [await events.next_order() for _ in range(2)]
        assert [offset for offset, _ in received] == [1, 2]
        assert [(o.trade_order_id, o.status) for _, o in received] == [
            (order.trade_order_id, "PARTIALLY_FILLED"),
            (order.trade_order_id, "CANCELLED"),
        ]
        assert received[1][1].executed_quantity == "0.25"


async def test_client_answers_pings_for_many_intervals_without_being_dropped():
    async with (
        CadenzaSimulator(ping_interval=0.2, pong_timeout=0.3) as sim,
        centrifuge_client(sim) as (client, client_events),
    ):
        await subscribe(client, sim)
        await sim.wait_for(lambda: sim.pongs_received >= 6, timeout=10)
        assert client.state == ClientState.CONNECTED
        assert sim.connect_count == 1
        assert sim.connections == 1
        assert client_events.connected == 1


async def test_client_recovers_missed_publications_across_a_3001_disconnect():
    async with CadenzaSimulator() as sim, centrifuge_client(sim) as (client, client_events):
        events, _ = await subscribe(client, sim)
        order = sim.create_order(quantity="4")
        sim.fill(order.trade_order_id, "1")
        assert (await events.next_order())[0] == 1
        # Published while the client cannot get them live: only recovery can.
        sim.pause_publications()
        sim.fill(order.trade_order_id, "1")
        sim.fill(order.trade_order_id, "1")
        sim.set_status(order.trade_order_id, "CANCELLED")
        await sim.disconnect_all(code=3001, reason="shutdown")
        sim.resume_publications()
        resubscribed = await events.next_subscribed()
        assert resubscribed.was_recovering is True
        assert resubscribed.recovered is True
        missed = [await events.next_order() for _ in range(3)]
        assert [offset for offset, _ in missed] == [2, 3, 4]
        assert [o.status for _, o in missed] == [
            "PARTIALLY_FILLED",
            "PARTIALLY_FILLED",
            "CANCELLED",
        ]
        assert missed[-1][1].executed_quantity == "3"
        assert sim.connect_count == 2
        assert client_events.disconnected.empty()  # 3001 means reconnect, not a terminal disconnect


async def test_client_gets_recovered_false_after_history_is_lost():
    async with CadenzaSimulator() as sim, centrifuge_client(sim) as (client, _):
        events, first = await subscribe(client, sim)
        order = sim.create_order()
        sim.set_status(order.trade_order_id, "ACCEPTED")
        await events.next_order()
        sim.pause_publications()
        sim.set_status(order.trade_order_id, "CANCELLED")
        sim.lose_history()
        await sim.disconnect_all(code=3001)
        sim.resume_publications()
        resubscribed = await events.next_subscribed()
        assert resubscribed.was_recovering is True
        assert resubscribed.recovered is False
        assert events.publications.empty()
        assert resubscribed.stream_position.epoch != first.stream_position.epoch
        # Live publications continue from the new position.
        sim.set_status(order.trade_order_id, "EXPIRED")
        offset, live = await events.next_order()
        assert (offset, live.status) == (1, "EXPIRED")


async def test_client_rpc_cancel_returns_the_cancelled_order():
    async with CadenzaSimulator() as sim, centrifuge_client(sim) as (client, _):
        events, _ = await subscribe(client, sim)
        order = sim.create_order()
        result = await client.rpc(
            "command.trade_order.cancel",
            {"tradingAccountId": sim.trading_account_id, "tradeOrderId": order.trade_order_id},
        )
        assert result.data["data"]["status"] == "CANCELLED"
        _, event = await events.next_order()
        assert event.status == "CANCELLED"


@pytest.mark.parametrize("code", [3500, 3501])
async def test_client_stops_for_good_on_terminal_close_codes(code):
    async with CadenzaSimulator() as sim:
        token = "sim-not-a-token" if code == 3500 else sim.token
        async with centrifuge_client(sim, token=token) as (client, client_events):
            await client.connect()
            if code == 3501:
                await sim.wait_for(lambda: sim.connections == 1)
                await sim.disconnect_all(code=3501, reason="bad request")
            ctx = await asyncio.wait_for(client_events.disconnected.get(), 5)
            assert ctx.code == code
            assert client.state == ClientState.DISCONNECTED


async def test_stopping_the_simulator_under_a_connected_client_is_clean():
    sim = CadenzaSimulator(ping_interval=0.2, cancel_delay=30)
    await sim.start()
    try:
        async with centrifuge_client(sim) as (client, client_events):
            events, _ = await subscribe(client, sim)
            order = sim.create_order()
            sim.delay_publications(30)
            sim.set_status(order.trade_order_id, "ACCEPTED")
            await sim.stop()
            # The server is gone: the client got 3001 (reconnect), not a terminal close.
            assert sim.connections == 0
            assert client_events.disconnected.empty()
            assert events.publications.empty()
    finally:
        await sim.stop()
