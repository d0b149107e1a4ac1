"""Wire models: the seed's example decodes, unknown data is tolerated, bad events are refused."""

from __future__ import annotations

import gc
from decimal import Decimal

import msgspec
import pytest
from oracle import FINAL
from support import ORDER_ID, SEED_ORDER

from cadenza_async.models import (
    TERMINAL_STATUSES,
    CancelResult,
    OrderStatus,
    SubmitResult,
    TradeOrder,
    decode_envelope,
    decode_order,
    decode_order_event,
    decode_order_list,
    to_builtins,
)

SEED_RESPONSE = msgspec.json.encode(
    {"data": SEED_ORDER, "success": True, "errno": 0, "error": None}
)


def test_seed_example_response_decodes_to_a_cancelled_order():
    envelope = decode_envelope(SEED_RESPONSE)
    order = decode_order(envelope.data)

    assert envelope.success is True
    assert envelope.errno == 0
    assert order.trade_order_id == ORDER_ID
    assert order.status == OrderStatus.CANCELLED
    assert order.is_terminal
    assert order.instrument_id == "BINANCE:BTC/USDT"
    assert order.created_at == 1703052635110
    assert order.cancellation_time == 1703052700000


def test_unknown_fields_are_ignored():
    order = decode_order(msgspec.json.encode({**SEED_ORDER, "newField": {"x": 1}, "zz": None}))
    assert order.trade_order_id == ORDER_ID


def test_unknown_status_is_kept_as_string_and_not_terminal():
    order = decode_order(msgspec.json.encode({**SEED_ORDER, "status": "HIBERNATING"}))

    assert order.status == "HIBERNATING"
    assert not order.is_terminal
    assert not OrderStatus.is_terminal("HIBERNATING")


@pytest.mark.parametrize("status", sorted(FINAL))
def test_terminal_statuses_are_terminal(status):
    assert OrderStatus.is_terminal(status)


def test_the_terminal_set_is_the_specifications():
    assert TERMINAL_STATUSES == FINAL


@pytest.mark.parametrize(
    "status",
    ["OPEN", "PENDING", "CREATED", "SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "PENDING_CANCEL",
     "PENDING_REPLACE", "UNKNOWN"],
)  # fmt: skip
def test_open_statuses_are_not_terminal(status):
    assert not OrderStatus.is_terminal(status)


@pytest.mark.parametrize("key", ["cancelledAt", "canceledAt"])
def test_cancellation_time_reads_both_spellings(key):
    fields = {k: v for k, v in SEED_ORDER.items() if k != "cancelledAt"}
    order = decode_order(msgspec.json.encode({**fields, key: 42}))
    assert order.cancellation_time == 42


def test_only_the_order_id_is_required():
    order = decode_order(b'{"tradeOrderId":"o","tradingAccountId":"a","status":"OPEN"}')
    assert order.quantity is None
    assert order.quantity_decimal is None
    # The current RPC models make the account and the status optional (filled from the
    # channel or the request; a missing status is no terminal state).
    bare = decode_order(b'{"tradeOrderId":"o"}')
    assert (bare.trading_account_id, bare.status, bare.is_terminal) == ("", None, False)
    with pytest.raises(msgspec.ValidationError):
        decode_order(b'{"tradingAccountId":"a","status":"OPEN"}')


def test_decimal_accessors_are_exact():
    order = decode_order(
        msgspec.json.encode(
            {
                **SEED_ORDER,
                "quantity": "0.1",
                "executedQuantity": "0.30000000000000000001",
                "limitPrice": "50000.00",
                "executedCost": "1e-30",
                "executedPrice": "123.456",
                "stopPrice": "0.000000001",
                "fees": [{"asset": "BNB", "quantity": "0.00000001"}],
            }
        )
    )
    assert order.quantity_decimal == Decimal("0.1")
    assert order.executed_quantity_decimal == Decimal("0.30000000000000000001")
    assert order.limit_price_decimal == Decimal("50000.00")
    assert order.executed_cost_decimal == Decimal("1e-30")
    assert order.executed_price_decimal == Decimal("123.456")
    assert order.stop_price_decimal == Decimal("0.000000001")
    assert order.fees is not None
    assert order.fees[0].quantity_decimal == Decimal("0.00000001")
    assert isinstance(order.quantity_decimal, Decimal)


def test_order_encodes_back_to_camel_case():
    order = decode_order(msgspec.json.encode(SEED_ORDER))
    wire = to_builtins(order)
    assert wire["tradeOrderId"] == ORDER_ID
    assert wire["cancelledAt"] == 1703052700000


def test_order_list_decodes():
    orders = decode_order_list(msgspec.json.encode([SEED_ORDER, SEED_ORDER]))
    assert [o.trade_order_id for o in orders] == [ORDER_ID, ORDER_ID]


def test_envelope_keeps_error_details_and_pagination():
    env = decode_envelope(
        b'{"data":null,"success":false,"errno":-111001,"error":"cannot be cancelled",'
        b'"details":{"code":"X","requestId":"r-1"},'
        b'"pagination":{"offset":0,"limit":50,"total":1,"hasNext":false}}'
    )
    assert (env.errno, env.error) == (-111001, "cannot be cancelled")
    assert env.details is not None
    assert env.details.request_id == "r-1"
    assert env.pagination is not None
    assert env.pagination.has_next is False


def test_envelope_refuses_a_body_that_is_not_an_object():
    with pytest.raises(msgspec.DecodeError):
        decode_envelope(b"<html></html>")
    with pytest.raises(msgspec.ValidationError):
        decode_envelope(b"[1,2]")


# -- order events ---------------------------------------------------------------------


def _event(data, event_type="event.trade_order.updated"):
    return msgspec.json.encode(
        {"metadata": {"eventId": "e1", "eventType": event_type, "timestamp": "t"}, "data": data}
    )


def test_order_updated_event_carries_the_order():
    order = decode_order_event(_event(SEED_ORDER))
    assert order is not None
    assert order.status == "CANCELLED"


def test_status_change_event_shape_uses_the_new_status():
    data = {"order": {**SEED_ORDER, "status": "PENDING_CANCEL"}, "previousStatus": "OPEN",
            "newStatus": "CANCELLED"}  # fmt: skip
    order = decode_order_event(_event(data))
    assert order is not None
    assert order.trade_order_id == ORDER_ID
    assert order.status == "CANCELLED"


def test_event_without_metadata_is_read_by_its_shape():
    order = decode_order_event(msgspec.json.encode({"data": SEED_ORDER}))
    assert order is not None
    assert order.trade_order_id == ORDER_ID


def test_other_event_types_are_ignored():
    assert decode_order_event(_event({"balance": "1"}, "event.portfolio.updated")) is None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"status": "CANCELLED", "tradingAccountId": "a"}, id="missing-id"),
        pytest.param({**SEED_ORDER, "status": 7}, id="wrong-type"),
        pytest.param("CANCELLED", id="string"),
        pytest.param([SEED_ORDER], id="list"),
        pytest.param({"order": {"status": "OPEN"}, "newStatus": "CANCELLED"}, id="bad-change"),
        pytest.param(None, id="null-data"),
    ],
)
def test_malformed_order_event_raises_instead_of_resolving(data):
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_order_event(_event(data))


def test_other_event_type_carrying_an_order_shaped_payload_is_ignored():
    assert decode_order_event(_event(SEED_ORDER, "event.portfolio.updated")) is None


def test_every_trade_order_event_type_is_an_order_update():
    order = decode_order_event(_event(SEED_ORDER, "event.trade_order.status_changed"))
    assert order is not None
    assert order.status == "CANCELLED"


def test_payload_with_both_an_order_id_and_an_order_key_is_the_top_level_order():
    data = {**SEED_ORDER, "order": {**SEED_ORDER, "tradeOrderId": "inner"}}
    order = decode_order_event(_event(data))
    assert order is not None
    assert order.trade_order_id == ORDER_ID


def test_event_without_data_is_an_error_only_when_it_says_it_is_an_order_update():
    assert decode_order_event(b"{}") is None
    assert decode_order_event(msgspec.json.encode({"data": None})) is None
    assert decode_order_event(msgspec.json.encode({"metadata": {"eventId": "e1"}})) is None
    with pytest.raises(msgspec.ValidationError):
        decode_order_event(
            msgspec.json.encode({"metadata": {"eventType": "event.trade_order.updated"}})
        )


def test_malformed_metadata_raises_even_when_the_order_is_fine():
    data = msgspec.json.encode({"metadata": {"eventType": 5}, "data": SEED_ORDER})
    with pytest.raises(msgspec.ValidationError):
        decode_order_event(data)


def test_order_event_decodes_from_a_raw_slice_of_a_larger_frame():
    frame = msgspec.json.encode({"pub": {"data": msgspec.json.decode(_event(SEED_ORDER))}})
    raw = msgspec.json.decode(frame, type=dict[str, dict[str, msgspec.Raw]])["pub"]["data"]
    order = decode_order_event(raw)
    assert order is not None
    assert order.trade_order_id == ORDER_ID


def test_event_that_is_not_json_raises():
    with pytest.raises(msgspec.DecodeError):
        decode_order_event(b"{not json")


def test_cancel_result_exposes_order_id_and_status():
    order = TradeOrder(trade_order_id="o", trading_account_id="a", status="FILLED")
    result = CancelResult(order=order, cancelled=False, source="rest", latency=0.5)
    assert (result.order_id, result.status, result.acked_after) == ("o", "FILLED", None)


def test_results_are_not_tracked_by_the_cyclic_collector():
    """A bulk returns thousands of results: they hold an order and scalars, no cycle,
    and must not count towards the collector's thresholds (benchmarks/PROFILE.md)."""
    order = decode_order(msgspec.json.encode(SEED_ORDER))
    order.fees = [*(order.fees or [])]  # even with a list inside the order
    cancel = CancelResult(order=order, cancelled=True, source="ws", latency=0.01)
    submit = SubmitResult(
        order=order,
        accepted=True,
        source="http",
        latency=0.01,
        acked_after=None,
        client_order_id="c-1",
    )
    assert not gc.is_tracked(cancel)
    assert not gc.is_tracked(submit)
    assert cancel == CancelResult(order=order, cancelled=True, source="ws", latency=0.01)


def test_decoded_models_do_not_count_towards_the_collector():
    """Every cancel decodes an order twice (its reply, its event) and a bulk keeps one
    per result: allocations the cyclic collector would count towards its thresholds
    (with gc=True, a bulk of 10,000 ran about 20 collections more; benchmarks/PROFILE.md).
    They hold strings, numbers and lists of fees: no cycle can run through them."""
    order_json = msgspec.json.encode({**SEED_ORDER, "fees": [{"asset": "BTC", "quantity": "1"}]})
    reply = b'{"success":true,"data":' + order_json + b"}"
    event = b'{"metadata":{"eventType":"event.trade_order.updated"},"data":' + order_json + b"}"
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        kept = [
            (
                decode_envelope(reply),
                decode_order(decode_envelope(reply).data),
                decode_order_event(event),
            )
            for _ in range(500)
        ]
        grown = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert kept[0][1].fees is not None
    assert kept[0][1] == kept[0][2]
    # the list, its 500 tuples and the list of fees of each of the 1,000 orders kept
    assert grown <= 500 + 1_000 + 10, grown
    assert not gc.is_tracked(kept[0][1])
