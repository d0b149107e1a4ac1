"""The simulator speaks each wire generation as the corpus writes it.

Raw frames, read off the simulator with a plain aiohttp client (REST) and a
plain WebSocket speaking the Centrifugo JSON protocol by hand, are compared
by shape with the corpus fixtures (``tests/wire/{legacy,current}``): every
key the simulator writes is a key of the corpus payload, with the same JSON
type (an integer time stays an integer, an RFC 3339 one a string), and the
keys the current official models require are all there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cadenza_async.testing import CadenzaSimulator

HERE = Path(__file__).parent
ORDER_WIRE = ("legacy", "current")

#: Keys the official client 3.5.4 requires on a REST TradeOrder.
CURRENT_REST_ORDER_REQUIRED = {
    "tradeOrderId",
    "tradingAccountId",
    "venue",
    "instrumentId",
    "baseAsset",
    "quoteAsset",
    "orderSide",
    "orderType",
    "timeInForce",
    "status",
    "quantity",
    "orderQuantityType",
    "executedPrice",
    "executedQuantity",
    "executedCost",
    "fees",
    "createdAt",
    "updatedAt",
}


def corpus(wire: str, name: str) -> Any:
    return json.loads((HERE / wire / f"{name}.json").read_text())["payload"]


def _orders_in(fixture: dict[str, Any]) -> list[dict[str, Any]]:
    """The order objects a corpus fixture holds, wherever its kind puts them."""
    payload, kind = fixture["payload"], fixture["kind"]
    if kind in ("rest_order", "rpc_result"):
        return [payload["data"]]
    if kind == "rest_orders":
        return list(payload["data"])
    if kind == "event":
        data = payload.get("data", payload)
        if "order" in data:
            return [data["order"]]
        return [data] if "tradeOrderId" in data else []
    return []


def order_keys(wire: str, family: str) -> dict[str, set[str]]:
    """Every order key the corpus of ``wire`` shows for ``family`` (REST, or events and RPC),
    with the JSON types it takes there (null aside)."""
    kinds = {"rest": ("rest_order", "rest_orders"), "rpc": ("event", "rpc_result")}[family]
    if wire == "legacy":
        kinds = ("rest_order", "rest_orders", "event", "rpc_result")  # one TradeOrder for all
    keys: dict[str, set[str]] = {}
    for path in sorted((HERE / wire).glob("*.json")):
        fixture = json.loads(path.read_text())
        if fixture["kind"] not in kinds:
            continue
        for order in _orders_in(fixture):
            for key, value in order.items():
                types = keys.setdefault(key, set())
                if value is not None:
                    types.add(type(value).__name__)
    return keys


def assert_order_fits(order: dict[str, Any], wire: str, family: str) -> None:
    known = order_keys(wire, family)
    for key, value in order.items():
        assert key in known, f"{wire} {family} order: {key} is not in the corpus"
        if value is not None and known[key]:
            assert type(value).__name__ in known[key], f"{wire} {family} order: {key} type"


def shape(value: object) -> object:
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def assert_fits(frame: Any, example: Any, wire: str, family: str) -> None:
    """The frame's envelope has the example's keys and types; its order(s) fit the corpus."""
    for key, value in frame.items():
        assert key in example, f"{key}: not in the corpus example"
        inner = example[key]
        if key == "data" and isinstance(value, dict) and "tradeOrderId" in value:
            assert_order_fits(value, wire, family)
        elif key == "data" and isinstance(value, list):
            for order in value:
                assert_order_fits(order, wire, family)
        elif value is not None and inner is not None:
            assert shape(value) == shape(inner) or isinstance(value, dict), key
            if isinstance(value, dict):
                assert set(value) <= set(inner), key


class Frames:
    """A raw client of the simulator: REST calls and a hand-spoken Centrifugo connection."""

    def __init__(self, sim: CadenzaSimulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session
        self.headers = {"Authorization": f"Bearer {sim.token}"}
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.next_id = 0

    async def rest(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.request(
            method, self.sim.api_url + path, headers=self.headers, **kw
        ) as resp:
            return resp.status, await resp.json()

    async def command(self, **command: Any) -> dict[str, Any]:
        assert self.ws is not None
        self.next_id += 1
        await self.ws.send_str(json.dumps({"id": self.next_id, **command}))
        while True:
            for line in (await self.ws.receive_str(timeout=5)).splitlines():
                message = json.loads(line)
                if message.get("id") == self.next_id:
                    return message
                self.pushes.append(message)

    async def connect(self) -> None:
        self.pushes: list[dict[str, Any]] = []
        self.ws = await self.session.ws_connect(self.sim.ws_url)
        await self.command(connect={"token": self.sim.token})
        channel = f"tradingAccount:{self.sim.trading_account_id}"
        await self.command(subscribe={"channel": channel})

    async def next_publication(self) -> Any:
        assert self.ws is not None
        while not self.pushes:
            for line in (await self.ws.receive_str(timeout=5)).splitlines():
                message = json.loads(line)
                if "push" in message:
                    self.pushes.append(message)
        return self.pushes.pop(0)["push"]["pub"]["data"]


@pytest.fixture(params=ORDER_WIRE)
async def frames(request):
    async with (
        CadenzaSimulator(wire=request.param, cancel_delay=0.0) as sim,
        aiohttp.ClientSession() as session,
    ):
        reader = Frames(sim, session)
        await reader.connect()
        yield reader
        assert reader.ws is not None
        await reader.ws.close()


async def test_rest_cancel_reply_fits_the_corpus(frames):
    sim = frames.sim
    order = sim.create_order(publish=False)
    status, body = await frames.rest(
        "POST",
        "/api/v3/tradeOrder/cancel",
        json={"tradeOrderId": order.trade_order_id, "tradingAccountId": sim.trading_account_id},
    )
    assert status == 200
    assert_fits(body, corpus(sim.wire, "rest_cancel_reply"), sim.wire, "rest")
    if sim.wire == "current":
        assert set(body["data"]) >= CURRENT_REST_ORDER_REQUIRED
        assert "cancelledAt" not in body["data"]  # the current spelling only
        assert isinstance(body["data"]["canceledAt"], int)
        assert isinstance(body["data"]["canceledAtDateTime"], str)
    else:
        assert isinstance(body["data"]["cancelledAt"], int)


async def test_rest_listing_and_submit_fit_the_corpus(frames):
    sim = frames.sim
    sim.create_order(publish=False)
    status, listing = await frames.rest(
        "GET", "/api/v3/tradeOrder/list", params={"tradingAccountId": sim.trading_account_id}
    )
    assert status == 200
    assert_fits(listing, corpus(sim.wire, "rest_list_reply"), sim.wire, "rest")
    status, placed = await frames.rest(
        "POST",
        "/api/v3/tradeOrder/submit",
        json={
            "tradingAccountId": sim.trading_account_id,
            "instrumentId": "BINANCE:BTC/USDT",
            "orderSide": "BUY",
            "orderType": "LIMIT",
            "quantity": "0.01",
            "limitPrice": "50000",
            "timeInForce": "GTC",
            "clientOrderId": "c-1",
        },
    )
    assert status == 200
    assert_fits(placed, corpus(sim.wire, "rest_submit_reply"), sim.wire, "rest")
    if sim.wire == "current":
        assert set(placed["data"]) >= CURRENT_REST_ORDER_REQUIRED


async def test_the_current_rest_cancel_refuses_a_body_without_the_account(frames):
    sim = frames.sim
    order = sim.create_order(publish=False)
    status, body = await frames.rest(
        "POST", "/api/v3/tradeOrder/cancel", json={"tradeOrderId": order.trade_order_id}
    )
    if sim.wire == "current":
        assert status == 400
        assert "tradingAccountId" in body["error"]
    else:
        assert status == 200  # the seed's body: the account was optional


async def test_order_events_fit_the_corpus(frames):
    sim = frames.sim
    order = sim.create_order(publish=False)
    sim.set_status(order.trade_order_id, "CANCELLED")
    event = await frames.next_publication()
    assert_fits(event, corpus(sim.wire, "event_order_updated"), sim.wire, "rpc")
    if sim.wire == "current":
        assert set(event) == {"data"}  # no metadata, no eventType
        assert isinstance(event["data"]["updatedAt"], str)
    else:
        assert event["metadata"]["eventType"] == "event.trade_order.updated"
        assert isinstance(event["data"]["updatedAt"], int)


async def test_rpc_cancel_results_and_errors_fit_the_corpus(frames):
    sim = frames.sim
    order = sim.create_order(publish=False)
    params = {"tradeOrderId": order.trade_order_id, "tradingAccountId": sim.trading_account_id}
    reply = await frames.command(rpc={"method": "command.trade_order.cancel", "data": params})
    assert_fits(reply["rpc"]["data"], corpus(sim.wire, "rpc_cancel_result"), sim.wire, "rpc")
    again = await frames.command(rpc={"method": "command.trade_order.cancel", "data": params})
    error_example = corpus(sim.wire, "rpc_cancel_error" if sim.wire == "current" else "rpc_error")
    result = again["rpc"]["data"]
    if sim.wire == "legacy":
        result = {"error": {k: v for k, v in result["error"].items() if k != "status"}}
    assert_fits(result, error_example, sim.wire, "rpc")
    assert result["error"]["code"] != 0


async def test_rpc_submit_takes_the_params_of_its_generation_only(frames):
    sim = frames.sim
    current = corpus("current", "rpc_submit_params") | {"tradingAccountId": sim.trading_account_id}
    legacy = corpus("legacy", "rpc_submit_params") | {"tradingAccountId": sim.trading_account_id}
    right, wrong = (current, legacy) if sim.wire == "current" else (legacy, current)
    accepted = await frames.command(rpc={"method": "command.trade_order.submit", "data": right})
    refused = await frames.command(rpc={"method": "command.trade_order.submit", "data": wrong})
    example = "rpc_submit_result" if sim.wire == "current" else "rpc_cancel_result"
    assert_fits(accepted["rpc"]["data"], corpus(sim.wire, example), sim.wire, "rpc")
    assert accepted["rpc"]["data"]["data"]["clientOrderId"] == "c-1"
    assert refused["rpc"]["data"]["error"]["code"] != 0
    assert sim.submits_applied == 1
