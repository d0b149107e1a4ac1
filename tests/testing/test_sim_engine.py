"""The simulated exchange's behaviour: cancel delay, immediate mode, fills racing cancels, events."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from cadenza_async.models import OrderStatus, decode_envelope, decode_order, decode_order_event
from cadenza_async.testing import ERRNO_NOT_CANCELLABLE, CadenzaSimulator

CANCEL = "/api/v3/tradeOrder/cancel"


class Events:
    """One raw WebSocket subscription to the default account, collecting order events."""

    def __init__(self, sim: CadenzaSimulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session
        self.raw: list[dict] = []
        self.queue: asyncio.Queue = asyncio.Queue()

    async def __aenter__(self) -> Events:
        self.ws = await self.session.ws_connect(self.sim.ws_url)
        channel = f"tradingAccount:{self.sim.trading_account_id}"
        await self.ws.send_str(
            json.dumps({"id": 1, "connect": {"token": self.sim.token}})
            + "\n"
            + json.dumps({"id": 2, "subscribe": {"channel": channel}})
        )
        replies = []
        while len(replies) < 2:
            msg = await self.ws.receive(timeout=5)
            replies += [json.loads(line) for line in msg.data.split("\n")]
        assert "subscribe" in replies[1], replies
        self.reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        async for msg in self.ws:
            for line in msg.data.split("\n"):
                message = json.loads(line)
                if "push" in message:
                    self.raw.append(message["push"]["pub"])
                    self.queue.put_nowait(
                        decode_order_event(json.dumps(message["push"]["pub"]["data"]).encode())
                    )

    async def next(self):
        return await asyncio.wait_for(self.queue.get(), 5)

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        await self.reader


async def cancel(session, sim, order_id):
    async with session.post(
        sim.api_url + CANCEL,
        json={"tradeOrderId": order_id, "tradingAccountId": sim.trading_account_id},
        headers={"Authorization": f"Bearer {sim.token}"},
    ) as resp:
        return resp.status, decode_envelope(await resp.read())


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def test_immediate_mode_answers_cancelled_and_publishes_one_event(http):
    async with CadenzaSimulator() as sim, Events(sim, http) as events:
        order = sim.create_order()
        status, env = await cancel(http, sim, order.trade_order_id)
        assert status == 200
        assert decode_order(env.data).status == OrderStatus.CANCELLED
        event = await events.next()
        assert (event.trade_order_id, event.status) == (order.trade_order_id, OrderStatus.CANCELLED)
        assert event.cancellation_time is not None
        assert sim.pending_cancels == 0
        assert events.queue.empty()


async def test_delayed_cancel_answers_pending_then_event_says_cancelled(http):
    async with CadenzaSimulator(cancel_delay=0.05) as sim, Events(sim, http) as events:
        order = sim.create_order()
        status, env = await cancel(http, sim, order.trade_order_id)
        assert status == 200
        assert decode_order(env.data).status == OrderStatus.PENDING_CANCEL
        assert (await events.next()).status == OrderStatus.PENDING_CANCEL
        final = await events.next()
        assert final.status == OrderStatus.CANCELLED
        assert sim.get_order(order.trade_order_id).status == OrderStatus.CANCELLED
        assert [pub["offset"] for pub in events.raw] == [1, 2]


async def test_repeated_cancel_while_pending_is_answered_but_applied_once(http):
    async with CadenzaSimulator(cancel_delay=30) as sim:
        order = sim.create_order()
        first = await cancel(http, sim, order.trade_order_id)
        second = await cancel(http, sim, order.trade_order_id)
        assert first[0] == second[0] == 200
        assert decode_order(second[1].data).status == OrderStatus.PENDING_CANCEL
        assert sim.cancels_applied[order.trade_order_id] == 1
        assert sim.pending_cancels == 1
    # leaving the block cancelled the 30 s exchange timer: no pending handle, no warning


async def test_fill_during_pending_cancel_wins_and_drops_the_cancel(http):
    async with CadenzaSimulator(cancel_delay=30) as sim, Events(sim, http) as events:
        order = sim.create_order()
        await cancel(http, sim, order.trade_order_id)
        assert (await events.next()).status == OrderStatus.PENDING_CANCEL
        filled = sim.fill(order.trade_order_id)
        assert filled.status == OrderStatus.FILLED
        assert (await events.next()).status == OrderStatus.FILLED
        assert sim.pending_cancels == 0
        status, env = await cancel(http, sim, order.trade_order_id)
        assert status == 400
        assert env.errno == ERRNO_NOT_CANCELLABLE


async def test_fill_on_next_cancel_fills_first_then_cancel_cannot_cancel(http):
    async with CadenzaSimulator() as sim, Events(sim, http) as events:
        order = sim.create_order(quantity="3")
        sim.fill_on_next_cancel(order.trade_order_id)
        status, env = await cancel(http, sim, order.trade_order_id)
        assert status == 400
        assert env.errno == ERRNO_NOT_CANCELLABLE
        assert env.error == "Order is already filled and cannot be cancelled"
        event = await events.next()
        assert (event.status, event.executed_quantity) == (OrderStatus.FILLED, "3")
        assert sim.cancels_applied[order.trade_order_id] == 0


async def test_partial_fill_then_cancel_keeps_executed_quantity(http):
    async with CadenzaSimulator(cancel_delay=0.02) as sim, Events(sim, http) as events:
        order = sim.create_order(quantity="2", limit_price="100")
        part = sim.fill(order.trade_order_id, "0.5")
        assert (part.status, part.executed_quantity, part.executed_cost) == (
            "PARTIALLY_FILLED",
            "0.5",
            "50",
        )
        await cancel(http, sim, order.trade_order_id)
        statuses = [(await events.next()).status for _ in range(3)]
        assert statuses == ["PARTIALLY_FILLED", "PENDING_CANCEL", "CANCELLED"]
        final = sim.get_order(order.trade_order_id)
        assert (final.status, final.executed_quantity, final.quantity) == ("CANCELLED", "0.5", "2")


async def test_partial_fill_during_pending_cancel_keeps_the_cancel_going():
    async with CadenzaSimulator(cancel_delay=0.02) as sim:
        order = sim.create_order(quantity="2")
        async with aiohttp.ClientSession() as http:
            await cancel(http, sim, order.trade_order_id)
        sim.fill(order.trade_order_id, "1")
        assert sim.get_order(order.trade_order_id).status == OrderStatus.PENDING_CANCEL
        final = await sim.wait_for(
            lambda: (o := sim.get_order(order.trade_order_id)).status == "CANCELLED" and o
        )
        assert final.executed_quantity == "1"


async def test_fill_rejects_final_orders_and_overfills():
    async with CadenzaSimulator() as sim:
        order = sim.create_order(quantity="1")
        with pytest.raises(ValueError, match="does not fit"):
            sim.fill(order.trade_order_id, "2")
        sim.fill(order.trade_order_id)
        with pytest.raises(ValueError, match="FILLED"):
            sim.fill(order.trade_order_id)
        with pytest.raises(KeyError):
            sim.fill("00000000-0000-4000-8000-00000000dead")


async def test_updated_at_strictly_increases_with_every_change():
    async with CadenzaSimulator(cancel_delay=30) as sim:
        order = sim.create_order(quantity="3")
        stamps = [order.updated_at]
        for qty in ("1", "1"):
            stamps.append(sim.fill(order.trade_order_id, qty).updated_at)
        stamps.append(sim.set_status(order.trade_order_id, "CANCELLED").updated_at)
        assert stamps == sorted(set(stamps))


async def test_status_change_event_shape_carries_previous_and_new_status(http):
    async with (
        CadenzaSimulator(event_shape="status_change", wire="legacy") as sim,
        Events(sim, http) as events,
    ):
        order = sim.create_order()
        await cancel(http, sim, order.trade_order_id)
        await events.next()
        data = events.raw[0]["data"]
        assert data["metadata"]["eventType"] == "event.trade_order.updated"
        assert data["data"]["previousStatus"] == "OPEN"
        assert data["data"]["newStatus"] == "CANCELLED"
        assert data["data"]["order"]["tradeOrderId"] == order.trade_order_id


async def test_set_status_publishes_unless_told_not_to(http):
    async with CadenzaSimulator() as sim, Events(sim, http) as events:
        order = sim.create_order()
        sim.set_status(order.trade_order_id, "ACCEPTED", publish=False)
        sim.set_status(order.trade_order_id, "EXPIRED")
        event = await events.next()
        assert event.status == "EXPIRED"
        assert sim.channel_position()[1] == 1


async def test_publish_raw_order_update_sends_arbitrary_data(http):
    async with CadenzaSimulator() as sim, Events(sim, http) as events:
        offset = sim.publish_raw_order_update(
            None, {"metadata": {"eventType": "event.portfolio.updated"}}
        )
        assert offset == 1
        assert await events.next() is None
        assert events.raw[0]["data"]["metadata"]["eventType"] == "event.portfolio.updated"


async def test_create_order_options_and_duplicates():
    async with CadenzaSimulator() as sim:
        order = sim.create_order(
            account_id="acc00000-0000-4000-8000-000000000002",
            status="PENDING",
            trade_order_id="f1ced000-0000-4000-8000-000000000001",
            order_side="SELL",
        )
        assert (order.trading_account_id, order.status, order.order_side) == (
            "acc00000-0000-4000-8000-000000000002",
            "PENDING",
            "SELL",
        )
        with pytest.raises(ValueError, match="exists"):
            sim.create_order(trade_order_id="f1ced000-0000-4000-8000-000000000001")
        copy = sim.get_order("f1ced000-0000-4000-8000-000000000001")
        copy.status = "MUTATED"
        assert sim.get_order("f1ced000-0000-4000-8000-000000000001").status == "PENDING"
        assert len(sim.create_orders(5)) == 5
        assert len(sim.orders) == 6
