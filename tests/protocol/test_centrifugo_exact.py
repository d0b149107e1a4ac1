"""The Centrifugo core's small print, exactly: its usage errors and violation reasons, its
defaults, its backoff formula, close-code and error-code boundaries, and what a publication
event carries. The protocol's rules are in test_centrifugo.py; these pin the details an
application or a log reader sees.
"""

from __future__ import annotations

import json

import pytest
from test_centrifugo import CH, connected, pub, reply, sent, subscribed

from cadenza_async.protocol.centrifugo import (
    MAX_DATA_DEPTH,
    UNDECODABLE_DATA,
    CentrifugoProtocol,
    CentrifugoUsageError,
    Connected,
    ProtocolViolation,
    Publication,
    Reply,
    StreamPosition,
    Subscribed,
    close_code_reconnects,
    error_is_temporary,
    reconnect_delays,
)

# ------------------------------------------------------------------ usage errors


def test_a_frame_size_under_one_is_refused_by_name() -> None:
    with pytest.raises(CentrifugoUsageError, match=r"^max_frame_size must be >= 1$"):
        CentrifugoProtocol(max_frame_size=0)


def test_connect_twice_is_refused_with_its_reason() -> None:
    proto = CentrifugoProtocol()
    proto.send_connect("tok", 0.0)
    with pytest.raises(
        CentrifugoUsageError, match=r"^connect may only be sent once per connection$"
    ):
        proto.send_connect("tok", 0.0)


@pytest.mark.parametrize("channel", ["", None, 7])
def test_a_channel_that_is_no_name_is_refused(channel: object) -> None:
    proto = connected()
    with pytest.raises(CentrifugoUsageError, match=r"^channel must be a non-empty str$"):
        proto.send_subscribe(channel, 0.0)  # type: ignore[arg-type]


def test_subscribing_twice_names_the_channel() -> None:
    proto = connected()
    proto.send_subscribe(CH, 0.0)
    with pytest.raises(
        CentrifugoUsageError, match=rf"^channel '{CH}' is already subscribed or subscribing$"
    ):
        proto.send_subscribe(CH, 0.0)


def test_rpc_data_that_is_not_json_is_refused() -> None:
    proto = connected()
    with pytest.raises(CentrifugoUsageError, match=r"^rpc data must be valid JSON$"):
        proto.send_rpc("m", b"{not json", 0.0)


def test_a_command_before_the_connect_reply_says_what_to_wait_for() -> None:
    proto = CentrifugoProtocol()
    proto.send_connect("tok", 0.0)
    with pytest.raises(
        CentrifugoUsageError, match=r"^not connected: wait for the Connected event$"
    ):
        proto.send_rpc("m", b"{}", 0.0)


# ------------------------------------------------------------------ what goes out


def test_the_connect_command_names_the_client_and_its_version() -> None:
    proto = CentrifugoProtocol()
    proto.send_connect("tok", 0.0)  # (the default name, no version)
    assert sent(proto) == [{"id": 1, "connect": {"token": "tok", "name": "cadenza-async"}}]
    other = CentrifugoProtocol()
    other.send_connect("tok", 0.0, name="probe", version="1.2")
    assert sent(other) == [
        {"id": 1, "connect": {"token": "tok", "name": "probe", "version": "1.2"}}
    ]


def test_commands_are_numbered_from_one_and_an_unsubscribe_forgets_the_channel() -> None:
    proto = connected()  # the connect was 1
    proto.data_to_send()
    subscribed(proto)  # 2
    assert proto.send_unsubscribe(CH) == 3
    assert sent(proto) == [{"id": 3, "unsubscribe": {"channel": CH}}]
    assert not proto.is_subscribed(CH)
    assert CH not in proto.positions
    assert proto.send_refresh("tok2", 0.0) == 4
    assert proto.send_rpc("m", b"{}", 0.0) == 5


def test_an_unsubscribe_reply_is_a_reply_named_unsubscribe() -> None:
    proto = connected()
    subscribed(proto)
    cid = proto.send_unsubscribe(CH, 1.0)
    (event,) = proto.receive_frame(reply(cid, "unsubscribe", {}), 1.0)
    assert event == Reply(cid, "unsubscribe", event.data)
    assert bytes(event.data) == b"null"


def test_forget_drops_a_channel_without_a_command() -> None:
    proto = connected()
    subscribed(proto)
    proto.data_to_send()
    proto.forget(CH)
    assert proto.data_to_send() == []
    assert not proto.is_subscribed(CH)
    assert proto.positions == {}
    proto.forget("tradingAccount:never")  # unknown: nothing happens


# ------------------------------------------------------------------ what comes in


def test_violation_reasons_say_what_was_wrong() -> None:
    cases = [
        (b"\xff\xfe", "frame is not valid UTF-8"),
        ("{}\n\n{}", "blank message in frame"),
        ("   ", "blank message in frame"),
        ('{"id": 1', "undecodable message (DecodeError)"),
        ('{"id": "x"}', "undecodable message (ValidationError)"),
    ]
    for frame, reason in cases:
        proto = connected()
        events = proto.receive_frame(frame, 1.0)
        assert events[-1] == ProtocolViolation(reason), frame
        assert "broken" in repr(proto)


def test_a_frame_ending_in_a_newline_is_its_messages_alone() -> None:
    proto = connected()
    subscribed(proto)
    events = proto.receive_frame(pub(CH, 11) + "\n", 1.0)
    assert events == [Publication(CH, events[0].data, 11)]


def test_a_publication_without_an_offset_carries_its_channel_and_data() -> None:
    proto = connected()
    subscribed(proto)
    (event,) = proto.receive_frame(pub(CH, None, {"k": 1}), 1.0)
    assert event.channel == CH
    assert event.offset is None
    assert json.loads(bytes(event.data)) == {"k": 1}


def test_an_error_without_an_id_is_skipped_and_what_follows_it_is_read() -> None:
    proto = connected()
    subscribed(proto)
    frame = json.dumps({"error": {"code": 100, "message": "x"}}) + "\n" + pub(CH, 11)
    events = proto.receive_frame(frame, 1.0)
    assert [e.offset for e in events if isinstance(e, Publication)] == [11]
    assert proto.connected


def test_a_publication_on_a_channel_not_subscribed_is_skipped_and_the_rest_read() -> None:
    proto = connected()
    subscribed(proto)
    frame = pub("tradingAccount:other", 5) + "\n" + pub(CH, 11)
    events = proto.receive_frame(frame, 1.0)
    assert [(e.channel, e.offset) for e in events] == [(CH, 11)]


def test_undecodable_publications_are_counted_each_time() -> None:
    proto = connected()
    subscribed(proto)
    deep = "[" * 30_000 + "]" * 30_000  # past the decoder's own limit
    frame = "\n".join(
        json.dumps({"push": {"channel": CH, "pub": {"offset": n, "data": 0}}}).replace(
            '"data": 0', f'"data": {deep}'
        )
        for n in (11, 12)
    )
    events = proto.receive_frame(frame, 1.0)
    assert [e.offset for e in events] == [11, 12]
    assert proto.undecodable_publications == 2


def test_the_protocols_repr_names_its_state_and_channel_count() -> None:
    proto = CentrifugoProtocol()
    assert repr(proto) == "<CentrifugoProtocol idle channels=0>"
    proto.send_connect("tok", 0.0)
    assert repr(proto) == "<CentrifugoProtocol connecting channels=0>"
    proto = connected()
    subscribed(proto)
    assert repr(proto) == "<CentrifugoProtocol connected channels=1>"
    proto.receive_frame("   ", 1.0)
    assert repr(proto) == "<CentrifugoProtocol broken channels=1>"


def test_a_new_protocol_has_no_client_id_and_counts_nothing() -> None:
    proto = CentrifugoProtocol()
    assert (proto.client_id, proto.pings_received, proto.duplicates_dropped) == ("", 0, 0)
    assert proto.undecodable_publications == 0
    assert proto.command_timeout == 10.0
    assert proto.next_deadline() is None
    assert not proto.connected


def test_a_connect_reply_sets_the_client_id() -> None:
    proto = connected()
    assert proto.client_id == "c1"


def test_the_connect_command_expires_after_ten_seconds_by_default() -> None:
    proto = CentrifugoProtocol()
    proto.send_connect("tok", 100.0)
    assert proto.next_deadline() == 110.0


# ------------------------------------------------------------------ subscribe replies


def test_a_subscribe_reply_gives_its_channel_position_and_flags() -> None:
    proto = connected()
    cid = proto.send_subscribe(CH, 0.0)
    (event,) = proto.receive_frame(
        reply(cid, "subscribe", {"recoverable": True, "epoch": "e9", "offset": 4}), 0.0
    )
    assert isinstance(event, Subscribed)
    assert (event.channel, event.recoverable, event.positioned, event.epoch, event.offset) == (
        CH,
        True,
        False,
        "e9",
        4,
    )
    assert proto.positions == {CH: StreamPosition("e9", 4)}


def test_a_subscribe_reply_with_only_an_epoch_positions_the_channel() -> None:
    proto = connected()
    cid = proto.send_subscribe(CH, 0.0)
    proto.receive_frame(reply(cid, "subscribe", {"epoch": "e9"}), 0.0)
    assert proto.positions == {CH: StreamPosition("e9", 0)}


def test_a_subscribe_reply_without_position_leaves_the_channel_unpositioned() -> None:
    proto = connected()
    cid = proto.send_subscribe(CH, 0.0)
    proto.receive_frame(reply(cid, "subscribe", {}), 0.0)
    assert proto.positions == {}
    assert proto.is_subscribed(CH)
    # its first publication with an offset positions it
    proto.receive_frame(pub(CH, 7), 1.0)
    assert proto.positions == {CH: StreamPosition("", 7)}


# ------------------------------------------------------------------ pure rules


@pytest.mark.parametrize(
    ("code", "reconnects"),
    [(None, True), (3499, True), (3500, False), (3999, False), (4000, True), (4499, True),
     (4500, False), (4999, False), (5000, True), (5001, True)],
)  # fmt: skip
def test_close_codes_reconnect_or_not_at_their_boundaries(
    code: int | None, reconnects: bool
) -> None:
    assert close_code_reconnects(code) is reconnects


def test_an_error_is_temporary_when_flagged_or_by_its_code_only() -> None:
    assert error_is_temporary(101) is False
    assert error_is_temporary(101, True) is True
    assert error_is_temporary(100) is True


class Highest:
    """An rng whose uniform(a, b) is always b, recording each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return b


def test_the_reconnect_backoff_doubles_from_a_tenth_up_to_twenty_seconds() -> None:
    rng = Highest()
    delays = reconnect_delays(rng=rng)  # type: ignore[arg-type]
    got = [round(next(delays), 6) for _ in range(12)]
    assert got == [0.2, 0.3, 0.5, 0.9, 1.7, 3.3, 6.5, 12.9, 20.0, 20.0, 20.0, 20.0]
    assert rng.calls[:3] == [(0.0, 0.1), (0.0, 0.2), (0.0, 0.4)]
    assert len(rng.calls) == 12  # every delay drew from the rng given


def test_the_reconnect_backoff_keeps_its_cap_however_long_it_runs() -> None:
    delays = reconnect_delays(0.5, 3.0, rng=Highest())  # type: ignore[arg-type]
    got = [next(delays) for _ in range(200)]
    assert got[0] == 1.0
    assert got[-1] == 3.0
    assert max(got) == 3.0


def test_connected_carries_the_servers_values() -> None:
    proto = CentrifugoProtocol()
    cid = proto.send_connect("tok", 0.0)
    (event,) = proto.receive_frame(
        reply(cid, "connect", {"client": "c9", "version": "6.1", "ping": 25, "pong": True}), 0.0
    )
    assert isinstance(event, Connected)
    assert event.client_id == "c9"


def test_only_data_deeper_than_max_data_depth_is_replaced_in_a_too_deep_message() -> None:
    """A message too deep to decode keeps the data of each publication up to MAX_DATA_DEPTH
    levels deep and replaces what is deeper (one publication of 30,000 levels makes the
    whole message too deep for the decoder)."""
    proto = connected()
    subscribed(proto, offset=10)
    proto.connection_lost(3001)
    connect_id = proto.send_connect("tok", 1.0)
    proto.data_to_send()
    proto.receive_frame(reply(connect_id, "connect", {"ping": 25}), 1.0)
    cid = proto.send_subscribe(CH, 1.0)
    proto.data_to_send()
    depths = {11: MAX_DATA_DEPTH, 12: MAX_DATA_DEPTH + 1, 13: 30_000, 14: 1}
    result = {
        "recovered": True,
        "recoverable": True,
        "epoch": "e1",
        "offset": 14,
        "publications": [{"offset": n, "data": f"@{n}"} for n in depths],
    }
    frame = reply(cid, "subscribe", result)
    for n, depth in depths.items():
        frame = frame.replace(f'"@{n}"', "[" * depth + "]" * depth)
    (event,) = proto.receive_frame(frame, 1.0)

    assert isinstance(event, Subscribed)
    data = {p.offset: bytes(p.data) for p in event.publications}
    assert data[11] == ("[" * MAX_DATA_DEPTH + "]" * MAX_DATA_DEPTH).encode()
    assert data[12] == UNDECODABLE_DATA
    assert data[13] == UNDECODABLE_DATA
    assert data[14] == b"[]"
    assert proto.undecodable_publications == 2


def test_an_unsubscribe_without_a_time_expires_ten_seconds_after_zero() -> None:
    proto = connected()  # (pings every 25 s: the ping check is due at 35)
    subscribed(proto)
    proto.send_unsubscribe(CH)
    assert proto.next_deadline() == 10.0
    proto.send_unsubscribe("tradingAccount:never-subscribed")  # no error either


def test_an_unsubscribe_push_that_asks_to_resubscribe_lets_the_channel_be_subscribed_again() -> (
    None
):
    proto = connected()
    subscribed(proto)
    push = json.dumps({"push": {"channel": CH, "unsubscribe": {"code": 2500, "reason": "x"}}})
    (event,) = proto.receive_frame(push, 1.0)
    assert event.resubscribe
    assert not proto.is_subscribed(CH)
    proto.send_subscribe(CH, 1.0)  # allowed: it is not subscribed or subscribing


def test_after_a_disconnect_push_nothing_more_is_read() -> None:
    proto = connected()
    subscribed(proto)
    push = json.dumps({"push": {"disconnect": {"code": 3001, "reason": "shutdown"}}})
    proto.receive_frame(push, 1.0)
    assert proto.receive_frame(pub(CH, 11), 2.0) == []
    assert "broken" in repr(proto)


def test_an_error_reply_to_a_subscribe_of_a_channel_forgotten_meanwhile_changes_nothing() -> None:
    proto = connected()
    cid = proto.send_subscribe(CH, 0.0)
    proto.forget(CH)
    again = proto.send_subscribe(CH, 0.5)  # the channel is wanted anew meanwhile
    error = json.dumps({"id": cid, "error": {"code": 103, "message": "permission denied"}})
    assert proto.receive_frame(error, 1.0) == []  # stale: the new subscribe is not refused
    assert proto.awaiting_reply(again)


@pytest.mark.parametrize(
    "message",
    [
        # a "data" five levels down that is not a publication's
        '{"id": 7, "rpc": {"data": {"a": {"data": @}}}}',
        # five levels down in a subscribe reply, but not in its publications
        '{"id": 7, "subscribe": {"x": {"y": {"data": @}}}}',
    ],
)
def test_deep_data_outside_a_publication_is_a_violation_not_replaced(message: str) -> None:
    proto = connected()
    deep = "[" * 30_000 + "]" * 30_000
    events = proto.receive_frame(message.replace("@", deep), 1.0)
    assert events == [ProtocolViolation("undecodable message (nested too deep)")]
    assert proto.undecodable_publications == 0
