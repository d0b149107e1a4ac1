"""The simulator's WebSocket fault switches over real sockets: late and refused subscribes,
refused handshakes, terminal close codes (with the real centrifuge-python client), and a
clean stop with replies still held."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time

import aiohttp
import pytest
from centrifuge import Client, ClientEventHandler, ClientState, DisconnectedContext

from cadenza_async.testing import CadenzaSimulator

RPC_CANCEL = "command.trade_order.cancel"
OPEN_SOCKETS: list[aiohttp.ClientWebSocketResponse] = []


class Raw:
    """A bare WebSocket client: send commands, read messages (frames split on newlines)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.buffer: list[dict] = []
        OPEN_SOCKETS.append(ws)

    async def send(self, *commands: dict) -> None:
        await self.ws.send_str("\n".join(json.dumps(c) for c in commands))

    async def next(self, timeout: float = 5.0) -> dict:
        while not self.buffer:
            msg = await self.ws.receive(timeout=timeout)
            assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
            self.buffer += [json.loads(line) for line in msg.data.split("\n")]
        return self.buffer.pop(0)

    async def reply(self, command_id: int) -> dict:
        while True:
            message = await self.next()
            if message.get("id") == command_id:
                return message

    async def closed(self, timeout: float = 5.0) -> tuple[int, str]:
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type == aiohttp.WSMsgType.CLOSE:
                return msg.data, msg.extra
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return self.ws.close_code, ""


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        try:
            yield session
        finally:
            while OPEN_SOCKETS:
                await OPEN_SOCKETS.pop().close()


@pytest.fixture
async def sim():
    async with CadenzaSimulator() as simulator:
        yield simulator


async def open_raw(http, sim) -> Raw:
    raw = Raw(await http.ws_connect(sim.ws_url))
    await raw.send({"id": 1, "connect": {"token": sim.token}})
    assert "connect" in await raw.reply(1)
    return raw


def channel(sim, account=None) -> str:
    return f"tradingAccount:{account or sim.trading_account_id}"


def subscribe(command_id: int, name: str, **extra) -> dict:
    return {"id": command_id, "subscribe": {"channel": name, "recoverable": True, **extra}}


# ---- delay_subscribe_replies -----------------------------------------------------------


async def test_late_subscribe_reply_comes_after_other_replies_and_pushes_follow_it(http, sim):
    raw = await open_raw(http, sim)
    sim.delay_subscribe_replies(0.3)
    started = time.monotonic()
    await raw.send(subscribe(2, channel(sim)), {"id": 3, "rpc": {"method": "nope"}})
    assert (await raw.next())["id"] == 3  # answered at once
    sim.publish_raw_order_update(None, {"n": 1})  # before the subscribe is handled: no push
    result = await raw.next()
    assert time.monotonic() - started >= 0.29
    assert result["id"] == 2
    assert result["subscribe"]["offset"] == 1
    sim.publish_raw_order_update(None, {"n": 2})
    assert (await raw.next())["push"]["pub"]["offset"] == 2
    sim.delay_subscribe_replies(0)
    await raw.send(subscribe(4, channel(sim, "other")))
    assert (await raw.next())["id"] == 4


async def test_hung_subscribe_is_answered_when_the_delay_turns_finite(http, sim):
    raw = await open_raw(http, sim)
    sim.delay_subscribe_replies(math.inf)
    await raw.send(subscribe(2, channel(sim)))
    with pytest.raises(asyncio.TimeoutError):
        await raw.next(timeout=0.2)
    sim.delay_subscribe_replies(0)
    assert "subscribe" in await raw.reply(2)


# ---- refuse_subscribe ----------------------------------------------------------------------


async def test_refused_subscribe_gets_the_centrifugo_error_then_the_next_one_succeeds(http, sim):
    other = sim.add_account()
    sim.refuse_subscribe(code=103, times=2)
    raw = await open_raw(http, sim)
    await raw.send(subscribe(2, channel(sim)), subscribe(3, channel(sim, other)))
    assert (await raw.reply(2))["error"] == {"code": 103, "message": "permission denied"}
    assert "subscribe" in await raw.reply(3)  # another account's channel is not refused
    await raw.send(subscribe(4, channel(sim)))
    assert (await raw.reply(4))["error"]["code"] == 103
    await raw.send(subscribe(5, channel(sim)))
    assert "subscribe" in await raw.reply(5)


async def test_refused_resubscribe_only_refuses_subscribes_that_ask_recovery(http, sim):
    sim.refuse_subscribe(sim.trading_account_id, code=112, resubscribe_only=True, times=2)
    first = await open_raw(http, sim)
    await first.send(subscribe(2, channel(sim)))
    position = (await first.reply(2))["subscribe"]
    again = await open_raw(http, sim)
    recover = {"recover": True, "epoch": position["epoch"], "offset": 0}
    await again.send(subscribe(2, channel(sim), **recover))
    assert (await again.reply(2))["error"] == {"code": 112, "message": "unrecoverable position"}
    await again.send(subscribe(3, channel(sim), **recover))
    assert (await again.reply(3))["error"]["code"] == 112
    await again.send(subscribe(4, channel(sim), **recover))
    assert (await again.reply(4))["subscribe"]["recovered"] is True


async def test_refused_subscribe_with_a_temporary_code_or_a_custom_message(http, sim):
    sim.refuse_subscribe(code=111)
    sim.refuse_subscribe(code=4001, message="maintenance")
    raw = await open_raw(http, sim)
    await raw.send(subscribe(2, channel(sim)))
    assert (await raw.reply(2))["error"] == {
        "code": 111,
        "message": "too many requests",
        "temporary": True,
    }
    await raw.send(subscribe(3, channel(sim)))
    assert (await raw.reply(3))["error"] == {"code": 4001, "message": "maintenance"}
    with pytest.raises(ValueError):
        sim.refuse_subscribe(code=4001)
    with pytest.raises(ValueError):
        sim.refuse_subscribe(code=103, times=0)


async def test_refused_and_late_subscribe_is_refused_late(http, sim):
    sim.refuse_subscribe(code=103)
    sim.delay_subscribe_replies(0.2)
    raw = await open_raw(http, sim)
    started = time.monotonic()
    await raw.send(subscribe(2, channel(sim)))
    assert (await raw.reply(2))["error"]["code"] == 103
    assert time.monotonic() - started >= 0.19


# ---- refuse_websocket / accept_websocket ---------------------------------------------------


async def test_refused_handshake_answers_the_status_while_rest_keeps_working(http, sim):
    raw = await open_raw(http, sim)
    closing = sim.refuse_websocket(503)
    assert await raw.closed() == (3001, "shutdown")
    await asyncio.wait_for(closing, 5)
    assert sim.connections == 0
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(sim.ws_url)
    assert info.value.status == 503
    assert sim.websocket_refusals == 1
    headers = {"Authorization": f"Bearer {sim.token}"}
    async with http.get(sim.api_url + "/api/v3/tradeOrder/list", headers=headers) as resp:
        assert resp.status == 200
    sim.accept_websocket()
    await open_raw(http, sim)
    assert sim.connect_count == 2


async def test_refused_handshake_without_status_closes_the_tcp_connection(http, sim):
    sim.refuse_websocket(None)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await http.ws_connect(sim.ws_url)
    assert sim.websocket_refusals >= 1
    assert sim.connect_count == 0
    with pytest.raises(ValueError):
        sim.refuse_websocket(42)


# ---- terminal close codes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (3500, "invalid token"),
        (3501, "bad request"),
        (3503, "force disconnect"),
        (3507, "permission denied"),
    ],
)
async def test_terminal_codes_are_sent_as_close_frames(http, sim, code, reason):
    raw = await open_raw(http, sim)
    await sim.disconnect_all(code, reason)
    assert await raw.closed() == (code, reason)


class Events(ClientEventHandler):
    def __init__(self) -> None:
        self.disconnected: asyncio.Queue[DisconnectedContext] = asyncio.Queue()
        self.connected = 0

    async def on_connected(self, ctx) -> None:
        self.connected += 1

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.disconnected.put_nowait(ctx)


@contextlib.asynccontextmanager
async def centrifuge_client(sim: CadenzaSimulator):
    events = Events()
    client = Client(
        sim.ws_url,
        events=events,
        token=sim.token,
        proxy=None,
        timeout=5.0,
        min_reconnect_delay=0.02,
        max_reconnect_delay=0.1,
    )
    try:
        yield client, events
    finally:
        await client.disconnect()


async def test_centrifuge_client_does_not_reconnect_after_3503(sim):
    async with centrifuge_client(sim) as (client, events):
        await client.connect()
        await sim.wait_for(lambda: sim.connections == 1)
        await sim.disconnect_all(3503, "force disconnect")
        ctx = await asyncio.wait_for(events.disconnected.get(), 5)
        assert (ctx.code, ctx.reason) == (3503, "force disconnect")
        # A control with the same reconnect delays, dropped with a code that reconnects:
        # once it is back, the first client would have been back too.
        async with centrifuge_client(sim) as (control, control_events):
            await control.connect()
            await sim.wait_for(lambda: control_events.connected == 1)
            await sim.disconnect_all(3001, "shutdown")
            await sim.wait_for(lambda: control_events.connected == 2)
        assert client.state == ClientState.DISCONNECTED
        assert sim.connect_count == 3  # the first client's one, the control's two
        assert events.connected == 1


async def test_centrifuge_client_keeps_trying_while_refused_and_reconnects_once_accepted(sim):
    async with centrifuge_client(sim) as (client, events):
        await client.connect()
        await sim.wait_for(lambda: sim.connections == 1)
        await sim.refuse_websocket(503)
        await sim.wait_for(lambda: sim.websocket_refusals >= 3)
        assert client.state == ClientState.CONNECTING
        sim.accept_websocket()
        await sim.wait_for(lambda: sim.connections == 1 and events.connected == 2)
        assert sim.connect_count == 2
        assert events.disconnected.empty()


# ---- stopping with answers held ------------------------------------------------------------------


async def test_stop_with_held_subscribe_rpc_and_rest_answers_is_quick_and_leaves_no_task(http):
    sim = CadenzaSimulator(cancel_delay=30)
    async with sim:
        order = sim.create_order()
        raw = await open_raw(http, sim)
        sim.delay_subscribe_replies(math.inf)
        sim.delay_cancel_reply(math.inf)
        await raw.send(
            subscribe(2, channel(sim)),
            {
                "id": 3,
                "rpc": {"method": RPC_CANCEL, "data": {"tradeOrderId": order.trade_order_id}},
            },
        )
        headers = {"Authorization": f"Bearer {sim.token}"}
        held_cancel = asyncio.ensure_future(
            http.post(
                sim.api_url + "/api/v3/tradeOrder/cancel",
                json={
                    "tradeOrderId": order.trade_order_id,
                    "tradingAccountId": sim.trading_account_id,
                },
                headers=headers,
            )
        )
        await sim.wait_for(lambda: len(sim.cancel_requests) == 2)
        sim.delay_rest(math.inf)
        held_list = asyncio.ensure_future(
            http.get(sim.api_url + "/api/v3/tradeOrder/list", headers=headers)
        )
        await sim.wait_for(lambda: len(sim.rest_requests) == 2)
        started = time.monotonic()
    assert time.monotonic() - started < 0.9  # not the server's 1 s shutdown timeout
    async with await asyncio.wait_for(held_cancel, 2) as resp:
        assert resp.status == 200  # the cancel was applied: its answer is let go
    async with await asyncio.wait_for(held_list, 2) as resp:
        assert resp.status == 503  # never got past its delay
    assert (await raw.closed())[0] == 3001
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
