"""Fuzzing the frame and payload decoders: every input is accepted or rejected as documented.

* ``CentrifugoProtocol.receive_frame`` documents that it never raises on peer
  input: a frame yields events, and bad input ends the list with one
  ``ProtocolViolation`` after which the connection is BROKEN (later frames
  yield nothing).
* ``models.decode_envelope`` documents ``msgspec.DecodeError``;
  ``models.decode_order_event`` documents ``msgspec.DecodeError`` and
  ``msgspec.ValidationError`` (both ``msgspec.DecodeError`` subclasses) and
  never resolves anything from bad data: what it returns is a ``TradeOrder``
  or ``None``.

Inputs: random bytes, random JSON-ish text, deeply nested JSON, huge numbers,
wrong types in known fields, and valid frames with random mutations (byte
flips, truncation, splicing, duplication). Anything else escaping is a bug.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadenza_async.models import (
    Envelope,
    TradeOrder,
    decode_envelope,
    decode_order_event,
)
from cadenza_async.protocol.centrifugo import (
    CentrifugoProtocol,
    Connected,
    Event,
    ProtocolViolation,
    Subscribed,
)

CHANNEL = "tradingAccount:550e8400-e29b-41d4-a716-446655440000"

ORDER: dict[str, Any] = {
    "tradeOrderId": "770e8400-e29b-41d4-a716-446655440002",
    "tradingAccountId": "550e8400-e29b-41d4-a716-446655440000",
    "venue": "BINANCE",
    "instrumentId": "BINANCE:BTC/USDT",
    "orderSide": "BUY",
    "orderType": "LIMIT",
    "status": "CANCELLED",
    "quantity": "0.001",
    "executedQuantity": "0",
    "createdAt": 1703052635110,
    "updatedAt": 1703052700000,
}

VALID_FRAMES: list[str] = [
    "{}",
    json.dumps({"push": {"channel": CHANNEL, "pub": {"data": ORDER, "offset": 3}}}),
    json.dumps(
        {
            "push": {
                "channel": CHANNEL,
                "pub": {
                    "data": {
                        "metadata": {"eventType": "event.trade_order.updated"},
                        "data": ORDER,
                    },
                    "offset": 4,
                },
            }
        }
    ),
    json.dumps({"push": {"channel": CHANNEL, "unsubscribe": {"code": 2500, "reason": "x"}}}),
    json.dumps({"push": {"disconnect": {"code": 3001, "reason": "shutdown", "reconnect": True}}}),
    json.dumps({"id": 2, "rpc": {"data": {"data": ORDER}}}),
    json.dumps({"id": 2, "error": {"code": 109, "message": "token expired"}}),
    json.dumps({"id": 99, "subscribe": {"recoverable": True, "epoch": "e", "offset": 1}}),
    "{}\n{}",
]

VALID_PAYLOADS: list[bytes] = [
    json.dumps(ORDER).encode(),
    json.dumps({"metadata": {"eventType": "event.trade_order.updated"}, "data": ORDER}).encode(),
    json.dumps(
        {
            "metadata": {"eventType": "event.trade_order.updated"},
            "data": {"order": ORDER, "previousStatus": "OPEN", "newStatus": "CANCELLED"},
        }
    ).encode(),
    json.dumps({"data": [ORDER], "success": True, "errno": 0, "error": None}).encode(),
    json.dumps({"data": None, "success": False, "errno": 40001, "error": "Cannot"}).encode(),
]

# -------------------------------------------------------------------------- strategies

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**200), max_value=2**200),  # far beyond int64
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=20,
)
# Known field names of the frames and of the order, to put wrong types where they matter.
KNOWN_KEYS = [
    "id",
    "push",
    "pub",
    "channel",
    "data",
    "offset",
    "epoch",
    "error",
    "code",
    "message",
    "connect",
    "subscribe",
    "publications",
    "recovered",
    "disconnect",
    "unsubscribe",
    "rpc",
    "metadata",
    "eventType",
    "order",
    "newStatus",
    *ORDER,
]


@st.composite
def wrong_types(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with random known fields, at any depth, replaced by values of any type."""

    def replace(value: Any, depth: int) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, inner in value.items():
                if draw(st.integers(0, 3)) == 0:
                    out[key] = draw(json_values)
                else:
                    out[key] = replace(inner, depth + 1)
            if draw(st.booleans()):
                out[draw(st.sampled_from(KNOWN_KEYS))] = draw(json_values)
            return out
        return value

    return replace(base, 0)


def deep(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    if kind == "dict":
        return '{"a":' * depth + "1" + "}" * depth
    return '{"push":{"channel":"%s","pub":{"data":%s,"offset":5}}}' % (  # noqa: UP031
        CHANNEL,
        "[" * depth + "]" * depth,
    )


@st.composite
def mutated(draw: st.DrawFn, samples: list[bytes]) -> bytes:
    """A valid sample with a few random byte flips, cuts, insertions or splices."""
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "splice", "dup"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "splice":
            other = draw(st.sampled_from(samples))
            data[pos:] = other[draw(st.integers(0, len(other) - 1)) :]
        else:
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


frame_bytes = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(deep, st.integers(1, 30_000), st.sampled_from(["list", "dict", "pub"])).map(
        str.encode
    ),
    mutated([f.encode() for f in VALID_FRAMES]),
    wrong_types(json.loads(VALID_FRAMES[1])).map(lambda v: json.dumps(v).encode()),
    wrong_types(json.loads(VALID_FRAMES[7])).map(lambda v: json.dumps(v).encode()),
    st.lists(st.sampled_from(VALID_FRAMES), min_size=2, max_size=4).map(
        lambda fs: "\n".join(fs).encode()
    ),
)
payload_bytes = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(deep, st.integers(1, 30_000), st.sampled_from(["list", "dict"])).map(str.encode),
    mutated(VALID_PAYLOADS),
    wrong_types(json.loads(VALID_PAYLOADS[0])).map(lambda v: json.dumps(v).encode()),
    wrong_types(json.loads(VALID_PAYLOADS[2])).map(lambda v: json.dumps(v).encode()),
    wrong_types(json.loads(VALID_PAYLOADS[3])).map(lambda v: json.dumps(v).encode()),
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -------------------------------------------------------------------------- protocol


def connected_protocol(state: str) -> CentrifugoProtocol:
    """A protocol in ``state``: idle, connecting (connect sent) or subscribed (a channel live)."""
    proto = CentrifugoProtocol()
    if state == "idle":
        return proto
    proto.send_connect("fuzz-token", 0.0)
    proto.data_to_send()
    if state == "connecting":
        return proto
    events = proto.receive_frame('{"id":1,"connect":{"client":"c","ping":25,"pong":true}}', 0.0)
    assert any(isinstance(e, Connected) for e in events)
    proto.send_subscribe(CHANNEL, 0.0)
    proto.data_to_send()
    events = proto.receive_frame(
        '{"id":2,"subscribe":{"recoverable":true,"positioned":true,"epoch":"e","offset":2}}', 0.0
    )
    assert any(isinstance(e, Subscribed) for e in events)
    return proto


def check_events(events: list[Event]) -> bool:
    """The documented shape of a result; True when the frame was rejected."""
    assert isinstance(events, list)
    violations = [i for i, e in enumerate(events) if isinstance(e, ProtocolViolation)]
    assert violations in ([], [len(events) - 1]), "a ProtocolViolation must be the last event"
    return bool(violations)


@FUZZ
@given(
    state=st.sampled_from(["idle", "connecting", "subscribed"]),
    frame=frame_bytes,
    as_text=st.booleans(),
)
def test_receive_frame_yields_events_or_a_final_violation_never_raises(
    state: str, frame: bytes, as_text: bool
) -> None:
    proto = connected_protocol(state)
    data: str | bytes = frame
    if as_text:
        data = frame.decode("utf-8", errors="replace")
    rejected = check_events(proto.receive_frame(data, 1.0))
    if rejected:
        # BROKEN: the connection must be dropped; later frames are ignored.
        assert proto.receive_frame("{}", 2.0) == []


@settings(max_examples=150, deadline=None)
@given(frames=st.lists(frame_bytes, min_size=1, max_size=6))
def test_a_sequence_of_fuzzed_frames_never_raises(frames: list[bytes]) -> None:
    proto = connected_protocol("subscribed")
    for i, frame in enumerate(frames):
        check_events(proto.receive_frame(frame, float(i)))
        proto.check_timeouts(float(i))
        proto.data_to_send()


def test_receive_frame_rejects_the_classic_bad_frames() -> None:
    # Rows 22/23 of the reliability matrix, as fixed examples the fuzzer must also pass.
    for frame in [b"\xff\xfe", b"", b"\n", b"null", b"not json", b"[" * 100_000, b'{"id":"x"}']:
        proto = connected_protocol("subscribed")
        events = proto.receive_frame(frame, 1.0)
        assert events, frame[:20]
        assert isinstance(events[-1], ProtocolViolation), frame[:20]


# -------------------------------------------------------------------------- models


@pytest.mark.parametrize("decode", [decode_envelope, decode_order_event])
def test_deeply_nested_json_is_rejected_with_the_documented_error(decode: Any) -> None:
    body = ('{"a":' * 30_000 + "1" + "}" * 30_000).encode()
    with pytest.raises(msgspec.DecodeError):
        decode(body)


@FUZZ
@given(body=payload_bytes)
def test_decode_envelope_accepts_or_raises_decode_error(body: bytes) -> None:
    try:
        envelope = decode_envelope(body)
    except msgspec.DecodeError:
        return
    assert isinstance(envelope, Envelope)


@FUZZ
@given(payload=payload_bytes, raw=st.booleans())
def test_decode_order_event_accepts_or_raises_decode_error(payload: bytes, raw: bool) -> None:
    data: bytes | msgspec.Raw = msgspec.Raw(payload) if raw else payload
    try:
        order = decode_order_event(data)
    except msgspec.DecodeError:  # ValidationError is a DecodeError subclass
        return
    assert order is None or isinstance(order, TradeOrder)
    if order is not None:
        # Nothing half-built: the fields a waiter relies on have their declared types.
        assert isinstance(order.trade_order_id, str)
        assert order.status is None or isinstance(order.status, str)
        assert isinstance(order.trading_account_id, str)
        for time in (order.created_at, order.updated_at, order.cancellation_time):
            assert time is None or type(time) is int


def test_the_valid_samples_decode() -> None:
    # The mutation strategies start from these: they must be valid to begin with.
    bare = decode_order_event(VALID_PAYLOADS[0])  # a bare order is an order event too
    assert bare is not None
    assert bare.status == "CANCELLED"
    for payload in VALID_PAYLOADS[1:3]:
        order = decode_order_event(payload)
        assert order is not None
        assert order.status == "CANCELLED"
    assert decode_envelope(VALID_PAYLOADS[3]).success is True
    proto = connected_protocol("subscribed")
    assert not check_events(proto.receive_frame(VALID_FRAMES[1], 1.0))
