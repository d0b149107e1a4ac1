"""The simulator's Centrifugo endpoint driven by a raw aiohttp WebSocket client.

Close codes on misuse, ping/pong, token expiry, subscribe permissions,
history recovery, RPC cancel, batching, and the publication faults.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from cadenza_async.testing import CadenzaSimulator


class Raw:
    """A bare WebSocket client: send commands, read messages (frames split on newlines)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.buffer: list[dict] = []
        self.frames: list[str] = []
        OPEN_SOCKETS.append(ws)

    async def send(self, *commands: dict) -> None:
        await self.ws.send_str("\n".join(json.dumps(c) for c in commands))

    async def next(self, timeout: float = 5.0) -> dict:
        while not self.buffer:
            msg = await self.ws.receive(timeout=timeout)
            assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
            self.frames.append(msg.data)
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


# WebSocket responses leave the session's pool: closing the session does not
# close them (Python 3.12 then warns "Unclosed connection" at collection).
OPEN_SOCKETS: list[aiohttp.ClientWebSocketResponse] = []


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


async def open_raw(http, sim, *, connect: bool = True, token: str | None = None) -> Raw:
    raw = Raw(await http.ws_connect(sim.ws_url, autoping=True))
    if connect:
        await raw.send({"id": 1, "connect": {"token": token or sim.token}})
        reply = await raw.reply(1)
        assert "connect" in reply, reply
    return raw


def channel(sim, account=None):
    return f"tradingAccount:{account or sim.trading_account_id}"


# ---- connect and misuse ---------------------------------------------------


async def test_connect_result_announces_ping_and_pong(http):
    async with CadenzaSimulator(ping_interval=10) as sim:
        raw = await open_raw(http, sim, connect=False)
        await raw.send({"id": 1, "connect": {"token": sim.token, "name": "x", "unknownField": [1]}})
        result = (await raw.reply(1))["connect"]
        assert result["ping"] == 10
        assert result["pong"] is True
        assert result["client"]
        assert "expires" not in result


async def test_empty_websocket_subprotocol_header_is_accepted(http, sim, caplog):
    ws = await http.ws_connect(sim.ws_url, headers={"Sec-WebSocket-Protocol": ""})
    assert ws.protocol is None
    raw = Raw(ws)
    await raw.send({"id": 1, "connect": {"token": sim.token}})
    assert "connect" in await raw.reply(1)
    await ws.close()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


async def test_invalid_token_closes_3500(http, sim):
    raw = await open_raw(http, sim, connect=False)
    await raw.send({"id": 1, "connect": {"token": "sim-wrong"}})
    assert (await raw.closed())[0] == 3500


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "",
        "\n",
        '{"id": 1, "subscribe": {"channel": "x"}}',  # before connect
        "{}",  # a pong before connect
        "null",
        '{"id": "one", "connect": {}}',
    ],
)
async def test_bad_frames_and_commands_before_connect_close_3501(http, sim, frame):
    raw = await open_raw(http, sim, connect=False)
    await raw.ws.send_str(frame)
    assert (await raw.closed())[0] == 3501


@pytest.mark.parametrize(
    "command",
    [
        {"id": 2, "connect": {}},  # second connect
        {"id": 2, "ping": {}},  # legacy ping command
        {"id": 2},  # no method
        {},  # a pong when no ping was sent
    ],
)
async def test_misuse_after_connect_closes_3501(http, sim, command):
    raw = await open_raw(http, sim)
    await raw.send(command)
    assert (await raw.closed())[0] == 3501
    await sim.wait_for(lambda: sim.connections == 0)


async def test_empty_line_inside_a_frame_closes_3501(http, sim):
    raw = await open_raw(http, sim)
    await raw.ws.send_str(
        '{"id":2,"unsubscribe":{"channel":"x"}}\n\n{"id":3,"unsubscribe":{"channel":"y"}}'
    )
    assert (await raw.reply(2))["unsubscribe"] == {}
    assert (await raw.closed())[0] == 3501


async def test_message_over_the_inbound_limit_is_refused(http, sim):
    raw = await open_raw(http, sim)
    await raw.ws.send_str(json.dumps({"id": 2, "rpc": {"method": "x", "data": "a" * 70000}}))
    assert (await raw.closed())[0] == 1009


async def test_commands_in_one_frame_are_answered_in_one_frame(http, sim):
    raw = await open_raw(http, sim, connect=False)
    await raw.send(
        {"id": 1, "connect": {"token": sim.token}},
        {"id": 2, "subscribe": {"channel": channel(sim)}},
        {"id": 3, "rpc": {"method": "nope"}},
    )
    first = await raw.next()
    assert first["id"] == 1
    assert len(raw.buffer) == 2
    assert raw.frames[0].count("\n") == 2
    assert raw.buffer[0]["subscribe"]["epoch"]
    assert raw.buffer[1]["error"]["code"] == 104


# ---- ping / pong ------------------------------------------------------------


async def test_answered_pings_keep_the_connection_for_many_intervals(http):
    async with CadenzaSimulator(ping_interval=0.05, pong_timeout=0.1) as sim:
        raw = await open_raw(http, sim)
        for _ in range(8):
            assert await raw.next() == {}
            await raw.send({})
        assert sim.connections == 1
        assert not raw.ws.closed


async def test_unanswered_ping_closes_3012(http):
    async with CadenzaSimulator(ping_interval=0.05, pong_timeout=0.1) as sim:
        raw = await open_raw(http, sim)
        assert await raw.next() == {}
        assert await raw.closed() == (3012, "no pong")


async def test_extra_pong_closes_3501(http):
    async with CadenzaSimulator(ping_interval=0.05, pong_timeout=1) as sim:
        raw = await open_raw(http, sim)
        assert await raw.next() == {}
        await raw.send({})
        await raw.send({})
        assert (await raw.closed())[0] == 3501


async def test_stop_pinging_sends_no_pings_until_resumed(http):
    async with CadenzaSimulator(ping_interval=0.05, pong_timeout=1) as sim:
        sim.stop_pinging()
        raw = await open_raw(http, sim)
        # The rpc answer proves the connection is alive; no ping came before it.
        for command_id in range(2, 6):
            await raw.send({"id": command_id, "rpc": {"method": "nope"}})
            assert (await raw.next())["id"] == command_id
        sim.resume_pinging()
        assert await raw.next() == {}


# ---- tokens --------------------------------------------------------------------


async def test_token_with_ttl_gives_expires_and_ttl(http, sim):
    token = sim.issue_token(ttl=120)
    raw = await open_raw(http, sim, connect=False)
    await raw.send({"id": 1, "connect": {"token": token}})
    result = (await raw.reply(1))["connect"]
    assert result["expires"] is True
    assert 110 <= result["ttl"] <= 120


async def test_expired_token_gets_error_109_on_connect(http, sim):
    token = sim.issue_token(ttl=60)
    sim.expire_token(token)
    raw = await open_raw(http, sim, connect=False)
    await raw.send({"id": 1, "connect": {"token": token}})
    assert (await raw.reply(1))["error"]["code"] == 109


async def test_live_connection_closes_3005_when_its_token_expires(http, sim):
    token = sim.issue_token(ttl=0.1)
    raw = await open_raw(http, sim, token=token)
    assert await raw.closed() == (3005, "connection expired")


async def test_refresh_with_a_fresh_token_keeps_the_connection(http):
    async with CadenzaSimulator(ping_interval=0.05, pong_timeout=1) as sim:
        short = sim.issue_token(ttl=0.2)
        raw = await open_raw(http, sim, token=short)
        longer = sim.issue_token(ttl=600)
        await raw.send({"id": 2, "refresh": {"token": longer}})
        assert (await raw.reply(2))["refresh"]["expires"] is True
        sim.expire_token(short)
        # Ten pings (0.5 s) after the short token died, the connection is still up.
        for _ in range(10):
            assert await raw.next() == {}
            await raw.send({})
        assert sim.connections == 1


# ---- subscriptions and recovery -------------------------------------------------


async def test_subscribe_is_limited_to_the_tokens_accounts(http, sim):
    raw = await open_raw(http, sim)
    await raw.send(
        {"id": 2, "subscribe": {"channel": channel(sim, "e15e0000-0000-4000-8000-000000000001")}},
        {"id": 3, "subscribe": {"channel": "news:all"}},
        {"id": 4, "subscribe": {"channel": channel(sim)}},
        {"id": 5, "subscribe": {"channel": channel(sim)}},
    )
    assert (await raw.reply(2))["error"]["code"] == 103
    assert (await raw.reply(3))["error"]["code"] == 102
    assert "subscribe" in await raw.reply(4)
    assert (await raw.reply(5))["error"]["code"] == 105


async def test_publications_follow_the_subscribe_reply_with_increasing_offsets(http, sim):
    raw = await open_raw(http, sim)
    await raw.send({"id": 2, "subscribe": {"channel": channel(sim), "recoverable": True}})
    result = (await raw.reply(2))["subscribe"]
    assert result["recoverable"] is True
    assert "offset" not in result  # zero is omitted
    orders = sim.create_orders(3)
    for order in orders:
        sim.set_status(order.trade_order_id, "CANCELLED")
    pushes = [await raw.next() for _ in range(3)]
    assert [p["push"]["pub"]["offset"] for p in pushes] == [1, 2, 3]
    assert [p["push"]["pub"]["data"]["data"]["tradeOrderId"] for p in pushes] == [
        o.trade_order_id for o in orders
    ]
    assert pushes[0]["push"]["channel"] == channel(sim)


async def subscribe_at(raw: Raw, sim, command_id: int, **extra) -> dict:
    await raw.send(
        {"id": command_id, "subscribe": {"channel": channel(sim), "recoverable": True, **extra}}
    )
    reply = await raw.reply(command_id)
    return reply.get("subscribe") or reply


async def test_recovery_returns_missed_publications_in_order(http, sim):
    raw = await open_raw(http, sim)
    first = await subscribe_at(raw, sim, 2)
    order = sim.create_order()
    sim.set_status(order.trade_order_id, "ACCEPTED")
    await raw.next()
    await raw.ws.close()
    for status in ("PARTIALLY_FILLED", "PENDING_CANCEL", "CANCELLED"):
        sim.set_status(order.trade_order_id, status)
    again = await open_raw(http, sim)
    result = await subscribe_at(again, sim, 2, recover=True, epoch=first["epoch"], offset=1)
    assert result["recovered"] is True
    assert result["was_recovering"] is True
    assert [p["offset"] for p in result["publications"]] == [2, 3, 4]
    assert [p["data"]["data"]["status"] for p in result["publications"]] == [
        "PARTIALLY_FILLED",
        "PENDING_CANCEL",
        "CANCELLED",
    ]
    assert (result["epoch"], result["offset"]) == (first["epoch"], 4)


async def test_recovery_at_the_top_is_recovered_with_no_publications(http, sim):
    raw = await open_raw(http, sim)
    first = await subscribe_at(raw, sim, 2, recover=True, epoch="whatever", offset=0)
    assert "recovered" not in first
    again = await open_raw(http, sim)
    result = await subscribe_at(again, sim, 2, recover=True, epoch=first["epoch"], offset=0)
    assert result["recovered"] is True
    assert "publications" not in result


@pytest.mark.parametrize("case", ["lost_history", "wrong_epoch", "future_offset", "beyond_window"])
async def test_unrecoverable_position_gives_new_position_and_no_publications(http, case):
    async with CadenzaSimulator(history_size=3) as sim:
        order = sim.create_order()
        raw = await open_raw(http, sim)
        first = await subscribe_at(raw, sim, 2)
        epoch, offset = first["epoch"], 0
        for status in ("ACCEPTED", "PARTIALLY_FILLED"):
            sim.set_status(order.trade_order_id, status)
        if case == "lost_history":
            sim.lose_history()
        elif case == "wrong_epoch":
            epoch = "other"
        elif case == "future_offset":
            offset = 99
        else:
            for status in ("ACCEPTED", "PARTIALLY_FILLED", "ACCEPTED"):
                sim.set_status(order.trade_order_id, status)  # offsets 3..5, window holds 3..5
        again = await open_raw(http, sim)
        result = await subscribe_at(again, sim, 2, recover=True, epoch=epoch, offset=offset)
        assert result["was_recovering"] is True
        assert "recovered" not in result
        assert "publications" not in result
        assert (result["epoch"], result.get("offset", 0)) == sim.channel_position()
        if case == "lost_history":
            assert result["epoch"] != first["epoch"]


async def test_reject_unrecovered_flag_gives_error_112(http, sim):
    raw = await open_raw(http, sim)
    result = await subscribe_at(raw, sim, 2, recover=True, epoch="gone", offset=3, flag=2)
    assert result["error"]["code"] == 112


async def test_history_ttl_drops_old_publications_from_recovery(http):
    async with CadenzaSimulator(history_ttl=0.05) as sim:
        order = sim.create_order()
        raw = await open_raw(http, sim)
        first = await subscribe_at(raw, sim, 2)
        sim.set_status(order.trade_order_id, "ACCEPTED")
        kept = await subscribe_at(
            await open_raw(http, sim), sim, 2, recover=True, epoch=first["epoch"], offset=0
        )
        assert kept["recovered"] is True
        # The TTL is the behaviour under test: let it run out (monotonic clock).
        await asyncio.sleep(0.08)
        result = await subscribe_at(
            await open_raw(http, sim), sim, 2, recover=True, epoch=first["epoch"], offset=0
        )
        assert "recovered" not in result


async def test_history_command_returns_publications_and_position(http, sim):
    order = sim.create_order()
    for status in ("ACCEPTED", "CANCELLED"):
        sim.set_status(order.trade_order_id, status)
    raw = await open_raw(http, sim)
    await raw.send(
        {"id": 2, "history": {"channel": channel(sim), "limit": 10, "since": {"offset": 1}}}
    )
    result = (await raw.reply(2))["history"]
    assert [p["offset"] for p in result["publications"]] == [2]
    assert result["offset"] == 2
    await raw.send({"id": 3, "history": {"channel": channel(sim, "foreign")}})
    assert (await raw.reply(3))["error"]["code"] == 103


async def test_unsubscribe_stops_publications(http, sim):
    raw = await open_raw(http, sim)
    await subscribe_at(raw, sim, 2)
    await raw.send({"id": 3, "unsubscribe": {"channel": channel(sim)}})
    assert (await raw.reply(3))["unsubscribe"] == {}
    sim.publish_raw_order_update(None, {"n": 1})
    await raw.send({"id": 4, "rpc": {"method": "nope"}})
    assert (await raw.next())["id"] == 4


# ---- rpc cancel -----------------------------------------------------------------


async def test_rpc_cancel_returns_the_order_and_publishes(http, sim):
    order = sim.create_order()
    raw = await open_raw(http, sim)
    await subscribe_at(raw, sim, 2)
    data = {"tradingAccountId": sim.trading_account_id, "tradeOrderId": order.trade_order_id}
    await raw.send({"id": 3, "rpc": {"method": "command.trade_order.cancel", "data": data}})
    push = await raw.next()
    reply = await raw.next()
    assert push["push"]["pub"]["data"]["data"]["status"] == "CANCELLED"
    assert reply["rpc"]["data"]["data"]["status"] == "CANCELLED"
    assert sim.cancel_requests == [(order.trade_order_id, "ws")]


@pytest.mark.parametrize(
    ("wire", "codes", "statuses"),
    [
        # the current models: "AABBB" codes, no HTTP status; the legacy form: the seed's errno
        ("current", [11001, 11002, 400], [None, None, None]),
        ("legacy", [-111001, -111002, -100400], [400, 404, 400]),
    ],
)
async def test_rpc_cancel_errors_carry_code_and_message(http, sim, wire, codes, statuses):
    sim.wire = wire
    filled = sim.create_order(status="FILLED")
    raw = await open_raw(http, sim)
    for command_id, data in enumerate(
        [
            {"tradeOrderId": filled.trade_order_id},
            {"tradeOrderId": "00000000-0000-4000-8000-00000000dead"},
            {},
        ],
        start=2,
    ):
        await raw.send(
            {"id": command_id, "rpc": {"method": "command.trade_order.cancel", "data": data}}
        )
    errors = [(await raw.reply(i))["rpc"]["data"]["error"] for i in (2, 3, 4)]
    assert [e["code"] for e in errors] == codes
    assert [e.get("status") for e in errors] == statuses
    assert errors[0]["message"] == "Order is already filled and cannot be cancelled"
    assert all("temporary" not in e for e in errors)


# ---- faults --------------------------------------------------------------------


async def subscribed(http, sim) -> Raw:
    raw = await open_raw(http, sim)
    await subscribe_at(raw, sim, 2)
    return raw


async def test_disconnect_all_closes_with_the_given_code(http, sim):
    a, b = await subscribed(http, sim), await subscribed(http, sim)
    assert sim.connections == 2
    await sim.disconnect_all(code=3011, reason="force reconnect")
    assert await a.closed() == (3011, "force reconnect")
    assert await b.closed() == (3011, "force reconnect")
    assert sim.connections == 0
    assert sim.connect_count == 2


async def test_duplicated_publications_arrive_twice_with_the_same_offset(http, sim):
    raw = await subscribed(http, sim)
    sim.duplicate_next_publications(1)
    sim.publish_raw_order_update(None, {"n": 1})
    sim.publish_raw_order_update(None, {"n": 2})
    offsets = [(await raw.next())["push"]["pub"]["offset"] for _ in range(3)]
    assert offsets == [1, 1, 2]


async def test_reordered_publications_arrive_reversed(http, sim):
    raw = await subscribed(http, sim)
    sim.reorder_next_publications(3)
    for n in range(4):
        sim.publish_raw_order_update(None, {"n": n})
    offsets = [(await raw.next())["push"]["pub"]["offset"] for _ in range(4)]
    assert offsets == [3, 2, 1, 4]


async def test_paused_publications_are_recorded_but_not_delivered(http, sim):
    raw = await subscribed(http, sim)
    sim.pause_publications()
    sim.publish_raw_order_update(None, {"n": 1})
    sim.resume_publications()
    sim.publish_raw_order_update(None, {"n": 2})
    assert (await raw.next())["push"]["pub"]["offset"] == 2
    assert sim.channel_position()[1] == 2


async def test_delayed_publications_keep_their_order(http, sim):
    raw = await subscribed(http, sim)
    sim.delay_publications(0.05)
    for n in range(3):
        sim.publish_raw_order_update(None, {"n": n})
    await raw.send({"id": 9, "rpc": {"method": "nope"}})
    assert (await raw.next())["id"] == 9  # the reply overtakes the delayed publications
    offsets = [(await raw.next())["push"]["pub"]["offset"] for _ in range(3)]
    assert offsets == [1, 2, 3]


async def test_send_raw_delivers_text_and_binary_frames_as_is(http, sim):
    raw = await subscribed(http, sim)
    await sim.send_raw("garbage{")
    await sim.send_raw(b"\x00\x01")
    text = await raw.ws.receive(timeout=5)
    binary = await raw.ws.receive(timeout=5)
    assert (text.type, text.data) == (aiohttp.WSMsgType.TEXT, "garbage{")
    assert (binary.type, binary.data) == (aiohttp.WSMsgType.BINARY, b"\x00\x01")


async def test_restart_drops_connections_and_history_but_keeps_orders(http, sim):
    order = sim.create_order()
    raw = await subscribed(http, sim)
    sim.set_status(order.trade_order_id, "ACCEPTED")
    epoch_before = sim.channel_position()[0]
    await sim.restart()
    assert (await raw.closed())[0] == 3001
    assert sim.channel_position()[0] != epoch_before
    assert sim.get_order(order.trade_order_id).status == "ACCEPTED"
    again = await open_raw(http, sim)
    result = await subscribe_at(again, sim, 2, recover=True, epoch=epoch_before, offset=0)
    assert "recovered" not in result


async def test_stopping_with_clients_connected_closes_them_with_3001(http):
    sim = CadenzaSimulator(ping_interval=0.05, cancel_delay=30)
    async with sim:
        raw = await subscribed(http, sim)
        sim.create_order()
        sim.delay_publications(10)
        sim.publish_raw_order_update(None, {"n": 1})
    assert (await raw.closed())[0] == 3001
    assert repr(sim).find(sim.token) == -1
