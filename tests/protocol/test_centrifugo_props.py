"""Property tests of the Centrifugo core: arbitrary input never escapes as an exception."""

from __future__ import annotations

import itertools
import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza_async.protocol.centrifugo import (
    CentrifugoProtocol,
    ProtocolViolation,
    Publication,
    reconnect_delays,
)

CH = "tradingAccount:acc"


def ready() -> CentrifugoProtocol:
    proto = CentrifugoProtocol()
    cid = proto.send_connect("t", 0.0)
    proto.receive_frame(json.dumps({"id": cid, "connect": {"ping": 25, "pong": True}}), 0.0)
    sid = proto.send_subscribe(CH, 0.0)
    proto.receive_frame(
        json.dumps({"id": sid, "subscribe": {"epoch": "e", "offset": 0, "recoverable": True}}), 0.0
    )
    proto.data_to_send()
    return proto


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "push",
                    "pub",
                    "channel",
                    "offset",
                    "data",
                    "error",
                    "code",
                    "connect",
                    "subscribe",
                    "rpc",
                    "unsubscribe",
                    "disconnect",
                    "publications",
                    "recovered",
                    "epoch",
                    "x",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(frame):
    proto = ready()
    events = proto.receive_frame(frame, 1.0)
    assert isinstance(events, list)
    proto.check_timeouts(2.0)
    proto.data_to_send()


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_random_text_never_raises(frame):
    proto = ready()
    proto.receive_frame(frame, 1.0)
    proto.data_to_send()


@settings(max_examples=400, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=4))
def test_random_json_messages_either_parse_or_violate(messages):
    proto = ready()
    frame = "\n".join(json.dumps(m) for m in messages)
    events = proto.receive_frame(frame, 1.0)
    violations = [e for e in events if isinstance(e, ProtocolViolation)]
    assert len(violations) <= 1
    if violations:
        assert events[-1] is violations[0]
    for e in events:
        if isinstance(e, Publication):
            assert e.channel == CH


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), max_size=60))
def test_delivered_offsets_strictly_increase_whatever_arrives(arrivals):
    proto = ready()
    delivered = []
    for off in arrivals:
        frame = json.dumps({"push": {"channel": CH, "pub": {"data": {}, "offset": off}}})
        delivered.extend(
            e.offset for e in proto.receive_frame(frame, 1.0) if isinstance(e, Publication)
        )
    assert delivered == sorted(set(delivered))
    if delivered:
        assert proto.positions[CH].offset == delivered[-1]


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=0.001, max_value=5),
    st.floats(min_value=0.001, max_value=60),
    st.integers(0, 2**32),
)
def test_reconnect_delays_stay_within_min_and_max(lo, hi, seed):
    gen = reconnect_delays(lo, hi, random.Random(seed))
    for _ in range(80):
        d = next(gen)
        assert d <= hi
        assert d >= min(lo, hi)


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=120), min_size=2, max_size=60),
    limit=st.integers(min_value=1, max_value=400),
)
def test_outbound_batches_keep_every_command_in_order_within_the_frame_size(lengths, limit):
    proto = CentrifugoProtocol(max_frame_size=limit)
    cid = proto.send_connect("t", 0.0)
    proto.receive_frame(json.dumps({"id": cid, "connect": {"ping": 25}}), 0.0)
    proto.data_to_send()
    payloads = [json.dumps({"p": "x" * n}).encode() for n in lengths]
    for payload in payloads:
        proto.send_rpc("m", payload, 0.0)
    frames = proto.data_to_send()
    commands = [json.loads(line) for frame in frames for line in frame.split("\n")]
    assert [json.dumps(c["rpc"]["data"]).encode() for c in commands] == payloads
    for frame in frames:
        assert len(frame.encode()) <= limit or "\n" not in frame  # only a lone command is over
    for frame, following in itertools.pairwise(frames):  # as few frames as possible
        assert len(frame.encode()) + 1 + len(following.split("\n")[0].encode()) > limit
