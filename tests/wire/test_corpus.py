"""The wire corpus: one JSON fixture per payload shape of both API generations, each read by the SDK.

Each fixture under ``tests/wire/legacy`` and ``tests/wire/current`` was
written from the spec's tables (``spec/cadenza-api.md``, "two wire
generations") and the official client's models, never captured from the
simulator: it holds ``kind`` (what it is), ``payload`` (the JSON on the
wire), and ``expect`` (what the SDK must read from it). The simulator's
own frames are checked against these shapes in ``test_simulator_forms.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cadenza_async import errors
from cadenza_async._auth import TokenSource
from cadenza_async._ratelimit import RateGate
from cadenza_async.config import ClientConfig
from cadenza_async.errors import error_for_rpc
from cadenza_async.http import HttpApi
from cadenza_async.models import (
    AccountEvent,
    TradeOrder,
    decode_channel_event,
    decode_envelope,
    decode_order,
    decode_order_list,
    decode_rpc_result,
)

HERE = Path(__file__).parent
FIXTURES = sorted((HERE / "legacy").glob("*.json")) + sorted((HERE / "current").glob("*.json"))
#: Terminal statuses as the spec lists them (spelled out here: the oracle is the spec, not the SDK).
TERMINAL = {"CANCELLED", "FILLED", "REJECTED", "EXPIRED", "REVOKED", "REPLACED"}
ORDER = "770e8400-e29b-41d4-a716-446655440002"
ACCOUNT = "550e8400-e29b-41d4-a716-446655440000"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def by_kind(*kinds: str) -> list[Path]:
    return [p for p in FIXTURES if load(p)["kind"] in kinds]


def ids(paths: list[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.stem}" for p in paths]


def raw(value: object) -> bytes:
    return json.dumps(value).encode()


def check_order(order: TradeOrder, expect: dict[str, Any]) -> None:
    """The order's fields against the fixture's expectations (times in integer ms)."""
    names = {
        "tradeOrderId": order.trade_order_id,
        "tradingAccountId": order.trading_account_id,
        "status": order.status,
        "clientOrderId": order.client_order_id,
        "createdAt": order.created_at,
        "updatedAt": order.updated_at,
        "cancellationTime": order.cancellation_time,
        "terminal": order.status in TERMINAL,
    }
    for key, wanted in expect.items():
        if key in names:
            assert names[key] == wanted, key
    for value in (order.created_at, order.updated_at, order.cancellation_time, order.expire_at):
        assert value is None or type(value) is int  # one Python type for every time


def test_the_corpus_covers_every_kind_in_both_generations():
    kinds = {(p.parent.name, load(p)["kind"]) for p in FIXTURES}
    for generation in ("legacy", "current"):
        for kind in ("rest_order", "rest_orders", "event", "rpc_result", "rpc_error"):
            assert (generation, kind) in kinds
    assert ("legacy", "rest_error") in kinds
    assert ("current", "rest_error") in kinds


@pytest.mark.parametrize("path", by_kind("rest_order"), ids=ids(by_kind("rest_order")))
def test_rest_order_replies_decode(path):
    fixture = load(path)
    envelope = decode_envelope(raw(fixture["payload"]))
    assert envelope.success is True
    check_order(decode_order(envelope.data), fixture["expect"])


@pytest.mark.parametrize("path", by_kind("rest_orders"), ids=ids(by_kind("rest_orders")))
def test_rest_listings_decode(path):
    fixture = load(path)
    envelope = decode_envelope(raw(fixture["payload"]))
    orders = decode_order_list(envelope.data)
    expect = fixture["expect"]
    assert len(orders) == expect["count"]
    check_order(orders[0], expect)
    assert envelope.pagination is not None
    assert envelope.pagination.has_next is expect["hasNext"]


@pytest.mark.parametrize("path", by_kind("rest_error"), ids=ids(by_kind("rest_error")))
async def test_rest_errors_reach_the_caller_as_the_sdk_error_with_their_errno(path, api):
    # Through the HTTP layer itself, from a scripted server on loopback.
    fixture = load(path)
    api.reply(fixture["status"], raw(fixture["payload"]))
    config = ClientConfig(token="tok", api_url=api.url, ws_url="ws://127.0.0.1:9/c")
    http = HttpApi(config, TokenSource(config.token), RateGate(None))
    try:
        with pytest.raises(errors.ApiError) as caught:
            await http.cancel_order(ORDER, ACCOUNT)
    finally:
        await http.aclose()
    assert type(caught.value).__name__ == fixture["expect"]["error"]
    assert caught.value.errno == fixture["expect"]["errno"]  # kept as sent, whatever its style


@pytest.mark.parametrize("path", by_kind("event"), ids=ids(by_kind("event")))
def test_channel_events_decode_as_orders_or_as_other_events(path):
    fixture = load(path)
    expect = fixture["expect"]
    event = decode_channel_event(raw(fixture["payload"]))
    if expect["event"] == "order":
        assert isinstance(event, TradeOrder)
        check_order(event, expect)
    else:
        assert isinstance(event, AccountEvent)
        assert event.event_type == expect["eventType"]
        assert event.kind == expect["accountKind"]


@pytest.mark.parametrize("path", by_kind("rpc_result"), ids=ids(by_kind("rpc_result")))
def test_rpc_results_decode(path):
    fixture = load(path)
    order, error = decode_rpc_result(raw(fixture["payload"]))
    assert error is None
    assert order is not None
    check_order(order, fixture["expect"])


@pytest.mark.parametrize("path", by_kind("rpc_error"), ids=ids(by_kind("rpc_error")))
def test_rpc_errors_decode_to_the_sdk_error_of_the_same_meaning(path):
    fixture = load(path)
    order, error = decode_rpc_result(raw(fixture["payload"]))
    assert order is None
    assert error is not None
    sdk_error = error_for_rpc(
        error.code, error.message, status=error.status, temporary=bool(error.temporary)
    )
    assert type(sdk_error).__name__ == fixture["expect"]["error"]
    assert sdk_error.errno == fixture["expect"]["errno"]


def test_an_rpc_error_code_sent_as_a_digit_string_is_read_as_its_integer():
    _, error = decode_rpc_result(b'{"data":null,"error":{"code":"11002","message":"not found"}}')
    assert error is not None
    assert error.code == 11002


def test_an_empty_rpc_error_is_no_error():
    order, error = decode_rpc_result(
        b'{"data":{"tradeOrderId":"o","status":"OPEN"},"error":{"code":0,"message":""}}'
    )
    assert error is None
    assert order is not None


# --------------------------------------------------------------------------- what is written


def shape(value: object) -> object:
    """A JSON value's shape: the keys of objects, the JSON type of everything else."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def test_the_sdk_writes_the_current_rpc_submit_params_nested():
    from cadenza_async.models import NewOrder
    from cadenza_async.transports import rpc_submit_params

    order = NewOrder(
        instrument_id="BINANCE:BTC/USDT",
        order_side="BUY",
        order_type="LIMIT",
        quantity="0.01",
        limit_price="50000",
        time_in_force="GTC",
        client_order_id="c-1",
        trading_account_id="550e8400-e29b-41d4-a716-446655440000",
    )
    for generation, nested in (("current", True), ("legacy", False)):
        written = msgspec.json.decode(rpc_submit_params(order, nested=nested))
        corpus = load(HERE / generation / "rpc_submit_params.json")["payload"]
        assert written == corpus, generation


def test_the_sdk_writes_the_rest_cancel_body_with_both_required_fields():
    from cadenza_async.http import _CancelBody

    corpus = load(HERE / "current" / "rest_cancel_body.json")["payload"]
    written = msgspec.json.decode(
        msgspec.json.encode(_CancelBody(corpus["tradeOrderId"], corpus["tradingAccountId"]))
    )
    assert written == corpus
